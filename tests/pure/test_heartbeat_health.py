"""The heartbeats function's flow-health rules: which flows heartbeats cross, the newest heartbeat, source lag."""

from __future__ import annotations

from typing import Any

from functions.heartbeats import health
from shared.mm2 import config
from shared.mm2.formats import Heartbeat


def parse(**props: str) -> config.MirrorConfig:
    base = {
        "clusters": "A, B, C",
        "A.bootstrap.servers": "a:9092",
        "B.bootstrap.servers": "b:9092",
        "C.bootstrap.servers": "c:9092",
        "A->B.enabled": "true",
        "B->C.enabled": "true",
    }
    return config.parse({**base, **{k.replace("__", "."): v for k, v in props.items()}})


def names(flows: list[Any]) -> list[str]:
    return [f.name for f in flows]


def test_heartbeats_cross_enabled_flows_whose_source_some_pair_emits_into() -> None:
    cfg = parse()
    assert names(health.measured_flows(cfg)) == ["A->B", "B->C"]
    # A receives heartbeats from B->A and C->A (MM2: every pair emits, enabled or not)
    assert names(health.heartbeat_sources(cfg, cfg.flow("A", "B"))) == ["B->A", "C->A"]
    assert health.remote_heartbeats_topic(cfg.flow("A", "B")) == "A.heartbeats"


def test_no_heartbeat_age_where_none_would_cross() -> None:
    # nothing emits into A: A->B carries no heartbeat, so its age would always be missing
    quiet = parse(**{"B->A.emit.heartbeats.enabled": "false", "C->A.emit.heartbeats.enabled": "false"})
    assert names(health.measured_flows(quiet)) == ["B->C"]
    # B->C does not mirror heartbeats ...
    off = parse(**{"B->C.heartbeats.replication.enabled": "false", "B->C.topics": "orders"})
    assert names(health.measured_flows(off)) == ["A->B"]
    # ... unless its topic filter selects them anyway (MM2's TopicSelector; the default .* does)
    for topics in ("heartbeats", ".*"):
        listed = parse(**{"B->C.heartbeats.replication.enabled": "false", "B->C.topics": topics})
        assert names(health.measured_flows(listed)) == ["A->B", "B->C"], topics
    # a disabled flow carries nothing
    assert names(health.measured_flows(parse(**{"A->B.enabled": "false"}))) == ["B->C"]


def test_the_remote_heartbeats_topic_follows_the_replication_policy() -> None:
    cfg = parse(**{"replication.policy.separator": "_"})
    assert health.remote_heartbeats_topic(cfg.flow("A", "B")) == "A_heartbeats"
    identity = parse(**{"replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"})
    assert health.remote_heartbeats_topic(identity.flow("A", "B")) == "A.heartbeats"


def test_the_newest_heartbeat_is_the_latest_stamp_not_the_last_record() -> None:
    records = [
        (Heartbeat("B", "A", 1_000).record_key(), Heartbeat("B", "A", 1_000).record_value()),
        (Heartbeat("C", "A", 3_000).record_key(), Heartbeat("C", "A", 3_000).record_value()),
        (Heartbeat("B", "A", 2_000).record_key(), Heartbeat("B", "A", 2_000).record_value()),
        (b"not a heartbeat", b"\x00"),
        (None, None),
    ]
    assert health.newest_heartbeat_ms(records) == 3_000
    assert health.newest_heartbeat_ms([]) is None
    assert health.newest_heartbeat_ms([(b"junk", b"junk")]) is None


def test_source_lag_counts_what_the_mappings_have_not_consumed() -> None:
    ends = {"t-0": 100, "t-1": 50, "t-2": 30}
    starts = {"t-0": 0, "t-1": 20, "t-2": 0}
    committed = {"t-0": 90, "t-1": 10}  # t-1's commit is below its log start (retention deleted 10..19)
    # t-0: 10 behind; t-1: only what is still on the source (50 - 20); t-2: no commit, read from the log start
    assert health.source_lag(ends, starts, committed, from_log_start=True) == 10 + 30 + 30
    # LATEST: an uncommitted partition is read from its end, nothing before it ever will be
    assert health.source_lag(ends, starts, committed, from_log_start=False) == 10 + 30 + 0
    # caught up, and a commit never makes lag negative
    assert health.source_lag({"t-0": 5}, {"t-0": 0}, {"t-0": 5}, from_log_start=True) == 0
    assert health.source_lag({}, {}, {}, from_log_start=True) == 0
