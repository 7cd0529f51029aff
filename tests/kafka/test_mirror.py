"""The data path on real brokers: the mirror function driven by the local ESM emulator (scenarios 1-6, 11, 19)."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest
from kafka import KafkaAdminClient

from shared.kafka.clients import KafkaClients
from shared.kafka.producers import Delivery, send_record
from shared.mm2.config import MirrorConfig
from shared.mm2.formats import OffsetSync
from shared.mm2.provenance import PROVENANCE_HEADER
from tests.kafka.support import (
    SEND_METHODS,
    LiveRuntime,
    Record,
    end_offsets,
    keeps_holding,
    make_config,
    read_all,
    run_flows,
    running,
    wait_until,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 3
PER_PARTITION = 1000


def _create(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        admin.close()


def _awkward_record(i: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Keys, values and headers that break naive mirrors: nulls, tombstones, binary, repeated header keys."""
    key = None if i % 11 == 0 else f"k{i % 37}".encode()
    if i % 13 == 0:
        value = None  # tombstone, with or without a key
    elif i % 5 == 0:
        value = bytes(range(256))[i % 7 :] + b"\xff\xfe\x00"  # not UTF-8
    else:
        value = f"value-{i}".encode()
    headers = [("h", b"1"), ("h", bytes([i % 256, 0x80])), ("trace", f"{i}".encode())] if i % 3 else []
    return key, value, headers


def _produce(bootstrap: str, topic: str, per_partition: int, partitions: int = PARTITIONS) -> list[Record]:
    """Produce an awkward workload; returns what the source holds, per record."""
    config = make_config({"X": bootstrap}, {})
    clients = KafkaClients(config)
    base = int(time.time() * 1000) - 10_000
    try:
        producer = clients.producer("X")
        futures = []
        for i in range(per_partition * partitions):
            key, value, headers = _awkward_record(i)
            p = i % partitions
            futures.append(send_record(producer, topic, key, value, headers, p, base + i))
        producer.flush()
        assert all(f.succeeded() for f in futures)
    finally:
        clients.close()
    return read_all(bootstrap, topic, per_partition * partitions)


def _by_partition(records: list[Record]) -> dict[int, list[Record]]:
    grouped: dict[int, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        grouped[r.partition].append(r)
    return grouped


def _is_subsequence(items: list[tuple[object, ...]], within: list[tuple[object, ...]]) -> bool:
    """Every item of ``items`` is in ``within``, in the same order (other items may come between)."""
    rest = iter(within)
    return all(any(item == other for other in rest) for item in items)


def _content(r: Record) -> tuple[object, ...]:
    return (r.key, r.value, tuple(r.headers), r.timestamp)


def _count(clusters: Mapping[str, str], alias: str, topic: str) -> int | None:
    """Records in ``topic`` on ``alias`` (the sum of its end offsets); None while the topic does not exist."""
    ends = end_offsets(clusters[alias], topic)
    return sum(ends.values()) if ends else None


def _landed(clusters: Mapping[str, str], alias: str, topic: str, count: int) -> bool:
    return (_count(clusters, alias, topic) or 0) >= count


def _offset_syncs(mirror_config: MirrorConfig, alias: str, topic: str) -> list[OffsetSync]:
    return [
        OffsetSync.deserialize(r.key or b"", r.value or b"")
        for r in read_all(mirror_config.cluster(alias).bootstrap_servers[0], topic)
    ]


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_one_way_preserves_every_record_in_order(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> None:
    topic = f"{unique_prefix}.orders"
    _create(kafka_clusters["A"], topic)
    source = _produce(kafka_clusters["A"], topic, PER_PARTITION)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **{"smm.producer.backend": backend})

    totals = run_flows(cfg, lambda: _landed(kafka_clusters, "B", f"A.{topic}", len(source)))

    target = read_all(kafka_clusters["B"], f"A.{topic}", len(source))
    assert totals["A->B"].failed_batches == 0
    source_parts, target_parts = _by_partition(source), _by_partition(target)
    assert sorted(target_parts) == list(range(PARTITIONS))
    for p in range(PARTITIONS):
        copied, original = [_content(r) for r in target_parts[p]], [_content(r) for r in source_parts[p]]
        if totals["A->B"].consumer_errors == 0:
            assert copied == original
        else:  # a commit lost to a rebalance redelivers its batch (at-least-once): replays, nothing else
            assert _is_subsequence(original, copied) and set(copied) == set(original)
    # the workload really contained what the test claims to cover
    assert any(r.key is None and r.value is None for r in source)
    assert any(r.value is None and r.key is not None for r in source)
    assert any(len([h for h in r.headers if h[0] == "h"]) == 2 for r in source)

    # scenario 11: every offset sync points at the same record on both sides
    syncs = [s for s in _offset_syncs(cfg, "A", "mm2-offset-syncs.B.internal") if s.topic == topic]
    assert syncs, "no offset syncs were written"
    for s in syncs:
        assert _content(source_parts[s.partition][s.upstream_offset]) == _content(
            target_parts[s.partition][s.downstream_offset]
        )
    newest = {s.partition: s for s in syncs}
    for p in range(PARTITIONS):  # the last record of every partition is translatable after the drain
        assert newest[p].upstream_offset == PER_PARTITION - 1
    # the stronger sync rule: never more than offset.lag.max records between syncs of a partition
    for p in range(PARTITIONS):
        ups = sorted({s.upstream_offset for s in syncs if s.partition == p})
        assert ups[0] <= 100
        assert max(b - a for a, b in itertools.pairwise(ups)) <= 100


def test_empty_partition_gets_no_syncs(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.sparse"
    _create(kafka_clusters["A"], topic, partitions=3)
    config = make_config({"X": kafka_clusters["A"]}, {})
    clients = KafkaClients(config)
    now = int(time.time() * 1000)
    for i in range(20):
        send_record(clients.producer("X"), topic, b"k", b"v%d" % i, [], i % 2, now)
    clients.producer("X").flush()
    clients.close()
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})

    run_flows(cfg, lambda: _landed(kafka_clusters, "B", f"A.{topic}", 20))

    target = read_all(kafka_clusters["B"], f"A.{topic}", 20)
    assert {r.partition for r in target} == {0, 1}
    info = KafkaClients(cfg).topic_info("B", f"A.{topic}")
    assert info is not None and info.partitions == 3
    syncs = _offset_syncs(cfg, "A", "mm2-offset-syncs.B.internal")
    assert {s.partition for s in syncs if s.topic == topic} == {0, 1}


def test_bidirectional_creates_no_loops(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic, probe = f"{unique_prefix}.t", f"{unique_prefix}.probe"
    for alias in ("A", "B"):
        _create(kafka_clusters[alias], topic, partitions=1)
        _produce(kafka_clusters[alias], topic, 50, partitions=1)
    pattern = f"(A\\.|B\\.)?{unique_prefix}.*"
    cfg = make_config(kafka_clusters, {"A->B": pattern, "B->A": pattern})
    clients = KafkaClients(cfg)

    def no_loop(live: LiveRuntime, local: list[str]) -> bool:
        """Each cluster holds its own topics and the other's copies, each copy complete and nothing more."""
        for alias, other in (("A", "B"), ("B", "A")):
            names = sorted([*local, *(f"{other}.{t}" for t in local)])
            assert [t for t in clients.topics(alias) if unique_prefix in t] == names, f"topics on {alias}"
            for name in (topic, f"{other}.{topic}"):  # local topics never merged, copies never copied again
                assert _count(kafka_clusters, alias, name) == 50, f"{name} on {alias}"
            # a flow consumes only the source's own topics, never the copies the other flow made there
            assert {t for t in live.totals(f"{alias}->{other}").topics if unique_prefix in t} == set(local)
        return True

    try:
        with running(cfg) as live:
            wait_until(
                "both topics mirrored",
                lambda: (
                    _landed(kafka_clusters, "B", f"A.{topic}", 50) and _landed(kafka_clusters, "A", f"B.{topic}", 50)
                ),
            )
            # A loop needs a topic refresh that sees A.t on B (B.t on A) as a source topic. A topic created now is
            # found by such a refresh of each flow: once its copies exist, both flows have looked at the copies.
            for alias in ("A", "B"):
                _create(kafka_clusters[alias], probe, partitions=1)
            copies = (("B", f"A.{probe}"), ("A", f"B.{probe}"))
            wait_until(
                "the probe topic mirrored both ways",
                lambda: all(_count(kafka_clusters, alias, name) is not None for alias, name in copies),
            )
            # ... and the runtime goes on running while the test keeps looking: a loop would show up here
            keeps_holding("no loop while the runtime runs", lambda: no_loop(live, [topic, probe]), seconds=5)
            assert live.alive()
    finally:
        clients.close()


def test_aggregation_into_one_cluster(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.t"
    for alias in ("A", "B", "C"):
        _create(kafka_clusters[alias], topic, partitions=2)
    _produce(kafka_clusters["A"], topic, 30, partitions=2)
    _produce(kafka_clusters["B"], topic, 40, partitions=2)
    _produce(kafka_clusters["C"], topic, 10, partitions=2)
    cfg = make_config(kafka_clusters, {"A->C": f"{unique_prefix}.*", "B->C": f"{unique_prefix}.*"})

    run_flows(
        cfg,
        lambda: _landed(kafka_clusters, "C", f"A.{topic}", 60) and _landed(kafka_clusters, "C", f"B.{topic}", 80),
    )

    assert len(read_all(kafka_clusters["C"], f"A.{topic}", 60)) == 60
    assert len(read_all(kafka_clusters["C"], f"B.{topic}", 80)) == 80
    assert len(read_all(kafka_clusters["C"], topic, 20)) == 20


def test_identity_names_one_way(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.migrate"
    _create(kafka_clusters["A"], topic)
    source = _produce(kafka_clusters["A"], topic, 100)
    cfg = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}.*"},
        **{"replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"},
    )

    run_flows(cfg, lambda: _landed(kafka_clusters, "B", topic, len(source)))

    target = _by_partition(read_all(kafka_clusters["B"], topic, len(source)))
    for p, records in _by_partition(source).items():
        mirrored = target[p]
        assert [(r.key, r.value, r.timestamp) for r in mirrored] == [(r.key, r.value, r.timestamp) for r in records]
        for src, dst in zip(records, mirrored, strict=True):
            # the provenance header is appended; every original header keeps its place
            assert dst.headers == (*src.headers, (PROVENANCE_HEADER, b"A"))


def test_identity_names_both_ways_do_not_loop(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.shared"
    for alias in ("A", "B"):
        _create(kafka_clusters[alias], topic, partitions=1)
    _produce(kafka_clusters["A"], topic, 30, partitions=1)
    _produce(kafka_clusters["B"], topic, 20, partitions=1)
    identity = {"replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"}
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*", "B->A": f"{unique_prefix}.*"}, **identity)
    # each flow reads the other's copies back from the shared name and refuses them by provenance
    refused = {"A->B": 20, "B->A": 30}

    def skipped(live: LiveRuntime) -> dict[str, int]:
        return {flow: live.totals(flow).skipped for flow in refused}

    def settled(live: LiveRuntime) -> bool:
        """Both topics hold 50 records and every copy was read back and refused; never more than that."""
        counts, now = {alias: _count(kafka_clusters, alias, topic) for alias in ("A", "B")}, skipped(live)
        assert all(n <= 50 for n in counts.values()), f"a topic grew past 50 records: {counts} (skipped {now})"
        assert all(now[f] <= refused[f] for f in refused), f"more records skipped than copies made: {now}"
        return counts == {"A": 50, "B": 50} and now == refused

    with running(cfg) as live:
        # The copies are refused once the other flow has read them: wait for exactly that, while it runs ...
        wait_until("every copy read back and refused", lambda: settled(live))
        # ... then keep looking while it still runs: a loop would grow both topics from here on
        keeps_holding("nothing more mirrored or skipped", lambda: settled(live), seconds=5)
        assert live.alive()

    assert {flow: totals.skipped for flow, totals in live.final.items()} == refused
    on_a = read_all(kafka_clusters["A"], topic, 50)
    on_b = read_all(kafka_clusters["B"], topic, 50)
    assert len(on_a) == 50 and len(on_b) == 50
    assert sorted(r.value or b"" for r in on_a) == sorted(r.value or b"" for r in on_b)


@pytest.mark.parametrize("backend", list(SEND_METHODS))
def test_failure_mid_batch_then_redelivery_loses_nothing(
    kafka_clusters: dict[str, str], unique_prefix: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    topic = topic_name = f"{unique_prefix}.flaky"
    _create(kafka_clusters["A"], topic, partitions=2)
    source = _produce(kafka_clusters["A"], topic, 300, partitions=2)
    producer_class, method = SEND_METHODS[backend]
    real_send = getattr(producer_class, method)
    calls = {"n": 0, "failed": 0}

    def flaky_send(self: Any, topic: str, *args: Any, **kwargs: Any) -> Delivery | None:
        if topic == f"A.{topic_name}":
            calls["n"] += 1
            if calls["n"] in (50, 420):  # part-way through a batch, twice
                calls["failed"] += 1
                raise ConnectionError("injected: target unreachable mid-batch")
        return real_send(self, topic, *args, **kwargs)

    monkeypatch.setattr(producer_class, method, flaky_send)
    settings = {"smm.batch.size": "100", "smm.producer.backend": backend}
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **settings)

    totals = run_flows(cfg, lambda: _landed(kafka_clusters, "B", f"A.{topic}", len(source)))

    assert calls["failed"] == 2 and totals["A->B"].failed_batches == 2
    target = read_all(kafka_clusters["B"], f"A.{topic}", len(source))
    src, dst = _by_partition(source), _by_partition(target)
    for p in src:
        # at least once: every source record arrived, in order (duplicates only as replays of a prefix)
        assert _is_subsequence([_content(r) for r in src[p]], [_content(r) for r in dst[p]])
    # a redelivered batch leaves only correct offset syncs
    for s in _offset_syncs(cfg, "A", "mm2-offset-syncs.B.internal"):
        if s.topic == topic:
            assert _content(src[s.partition][s.upstream_offset]) == _content(dst[s.partition][s.downstream_offset])


def test_offset_syncs_on_target_when_configured(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.loc"
    _create(kafka_clusters["A"], topic, partitions=1)
    _produce(kafka_clusters["A"], topic, 10, partitions=1)
    cfg = make_config(kafka_clusters, {"A->C": f"{unique_prefix}.*"}, **{"offset-syncs.topic.location": "target"})

    run_flows(cfg, lambda: _landed(kafka_clusters, "C", f"A.{topic}", 10))

    # MM2's MirrorSourceConfig.offsetSyncsTopic: on the target the topic is named after the source
    syncs = [s for s in _offset_syncs(cfg, "C", "mm2-offset-syncs.A.internal") if s.topic == topic]
    assert syncs and syncs[-1].upstream_offset == 9
