"""Delivery reports only where a downstream offset is needed (confluent-kafka): the first and last send of each
partition batch are reported, the rest are proven delivered by their offsets being contiguous. On real brokers:
the offset syncs equal those of the remote topic's actual offsets, a record failing mid-batch fails the batch,
another writer on the remote partition fails one batch and switches that partition to per-record reports, and the
per-record ``max.message.bytes`` check is exact to the byte.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from functions.mirror.mirror import (
    HEADER_OVERHEAD_BYTES,
    RECORD_OVERHEAD_BYTES,
    Mirror,
    MirrorError,
    OversizedRecordError,
)
from shared.aws.esm_event import SourceRecord
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import TopicRecord
from shared.kafka.producers import ConfluentProducer, unreported_sender
from shared.mm2.config import MirrorConfig
from shared.mm2.formats import Header, OffsetSync
from shared.mm2.offset_syncs import OffsetSyncPlanner
from tests.kafka.faults import offset_sync_mismatches, records
from tests.kafka.support import make_config, wait_until

pytestmark = pytest.mark.kafka

CONFLUENT = {"smm.producer.backend": "confluent-kafka"}
LIMIT = 20_000  # the remote topic's max.message.bytes when the mirror first reads it


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap)


def _create(bootstrap: str, topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    admin = _admin(bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    finally:
        admin.close()


def _set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    """Change the remote topic's limit on the broker behind the mirror's back (it keeps the value it read)."""
    admin = _admin(bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})
        admin.alter_configs([resource], raise_on_unknown=False, incremental=True)

        def applied() -> bool:
            answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            return str(answer["topic"][topic]["max.message.bytes"]["value"]) == str(limit)

        wait_until(f"max.message.bytes={limit} on {topic}", applied, timeout=30)
    finally:
        admin.close()


def _records(
    topic: str, partition: int, offsets: range, size: int = 100, headers: list[Header] | None = None
) -> list[SourceRecord]:
    """Records with values unique per (partition, offset), so a copy downstream is found by its value."""
    now = int(time.time() * 1000)
    return [
        SourceRecord(
            topic,
            partition,
            o,
            now,
            "CREATE_TIME",
            b"k%d" % o,
            (b"%d/%d/" % (partition, o)).ljust(size, b"."),
            headers or [],
        )
        for o in offsets
    ]


@pytest.fixture
def mirrors() -> Iterator[list[Mirror]]:
    """Mirrors a test makes (one per Lambda container); closed at the end."""
    made: list[Mirror] = []
    yield made
    for mirror in made:
        mirror.close()


def _mirror(cfg: MirrorConfig, made: list[Mirror]) -> Mirror:
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg))
    made.append(mirror)
    return mirror


def _syncs(mirror: Mirror, topic: str) -> list[OffsetSync]:
    found = records(mirror.clients, mirror.flow.offset_syncs_cluster(), mirror.flow.offset_syncs_topic())
    return [s for r in found if (s := OffsetSync.deserialize(r.key or b"", r.value or b"")).topic == topic]


def _reference_syncs(mirror: Mirror, remote: str, batches: Sequence[Sequence[SourceRecord]]) -> list[OffsetSync]:
    """The syncs the planner makes from the remote topic's actual offsets (the last copy of each record wins)."""
    at = {(r.partition, r.value): r.offset for r in records(mirror.clients, "B", remote)}
    planner = OffsetSyncPlanner(mirror.flow.settings.offset_lag_max)
    syncs: list[OffsetSync] = []
    for batch in batches:
        by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for r in batch:
            if (r.partition, r.value) in at:
                by_partition.setdefault((r.topic, r.partition), []).append((r.offset, at[(r.partition, r.value)]))
        for (topic, partition), pairs in by_partition.items():
            planned, state = planner.plan(topic, partition, pairs)
            planner.commit(topic, partition, state)
            syncs += planned
    return syncs


def _topic_records(batches: Sequence[Sequence[SourceRecord]]) -> list[TopicRecord]:
    return [TopicRecord(r.partition, r.offset, r.timestamp, r.key, r.value) for b in batches for r in b]


@pytest.mark.parametrize("backend", ["confluent-kafka", "kafka-python"])
def test_offset_syncs_equal_those_of_the_actual_offsets(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str, mirrors: list[Mirror]
) -> None:
    """Cheap mode on confluent-kafka (per-record futures on kafka-python): the syncs written are the planner's
    on the remote topic's real offsets, with dead-lettered records in the middle and at the end of a batch."""
    topic, remote = f"{unique_prefix}.syncs", f"A.{unique_prefix}.syncs"
    _create(kafka_clusters["A"], topic, 2)
    _create(kafka_clusters["B"], remote, 2, {"max.message.bytes": "3000"})
    settings = {
        "smm.producer.backend": backend,
        "offset.lag.max": "7",
        "smm.oversized.record.action": "dead-letter",
        "smm.dead.letter.topic": f"{unique_prefix}.dlq",
    }
    mirror = _mirror(make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **settings), mirrors)
    cheap = unreported_sender(mirror.clients.record_producer("B", backend, 3000)) is not None
    assert cheap == (backend == "confluent-kafka")
    big = 5000
    batches = [
        _records(topic, 0, range(0, 25)) + _records(topic, 1, range(0, 1)),
        _records(topic, 0, range(25, 30))
        + _records(topic, 0, range(30, 31), big)  # dead-lettered in the middle
        + _records(topic, 0, range(31, 50))
        + _records(topic, 1, range(1, 20))
        + _records(topic, 1, range(20, 21), big),  # dead-lettered last: the last send is the one before
        _records(topic, 0, range(50, 52)) + _records(topic, 1, range(21, 40)),
    ]

    for batch in batches:
        mirror.mirror(batch)

    assert len(records(mirror.clients, "B", remote)) == sum(len(b) for b in batches) - 2
    written = _syncs(mirror, topic)
    assert written == _reference_syncs(mirror, remote, batches)
    assert len(written) > 10
    assert (
        offset_sync_mismatches(
            mirror.clients, mirror.flow, topic, _topic_records(batches), records(mirror.clients, "B", remote)
        )
        == []
    )
    assert not mirror._interleaved


def _fault_batch(topic: str, first: int) -> list[SourceRecord]:
    """Small records around one of 15 kB: with producer batches capped at 20 kB the big one starts a batch of
    its own (with some records after it), which a 12 kB limit set on the broker afterwards rejects."""
    return (
        _records(topic, 0, range(first, first + 10), 900)
        + _records(topic, 0, range(first + 10, first + 11), 15_000)
        + _records(topic, 0, range(first + 11, first + 21), 900)
    )


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_a_record_failing_mid_batch_fails_the_batch_and_nothing_is_lost(
    kafka_clusters: dict[str, str], unique_prefix: str, mode: str, mirrors: list[Mirror]
) -> None:
    topic, remote = f"{unique_prefix}.mid", f"A.{unique_prefix}.mid"
    _create(kafka_clusters["A"], topic, 1)
    _create(kafka_clusters["B"], remote, 1, {"max.message.bytes": str(LIMIT)})
    settings = {**CONFLUENT, "offset.lag.max": "5"}
    if mode == "exactly-once":
        settings["B.exactly.once.source.support"] = "enabled"
    mirror = _mirror(make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **settings), mirrors)
    warm = _records(topic, 0, range(0, 3))
    mirror.mirror(warm)  # the mirror has read the remote topic's limit and built its producers
    _set_max_message_bytes(kafka_clusters["B"], remote, 12_000)
    batch = _fault_batch(topic, 3)

    # a failed send (exactly-once: the commit) or, on a fatal error, the flush: either way the batch fails
    with pytest.raises(RuntimeError, match=rf"{topic}-0|flushing failed"):
        mirror.mirror(batch)

    _set_max_message_bytes(kafka_clusters["B"], remote, LIMIT)
    mirror.mirror(batch)  # the event-source mapping's retry
    after = _records(topic, 0, range(24, 30))
    mirror.mirror(after)

    target = records(mirror.clients, "B", remote)
    values = [r.value for r in target]
    expected = [r.value for r in warm + batch + after]
    assert set(values) == set(expected)  # nothing lost
    assert values[-len(batch) - len(after) :] == [r.value for r in batch + after]  # the retry whole and in order
    if mode == "exactly-once":  # read_committed: the failed transaction left nothing visible
        assert values == expected
    assert (
        offset_sync_mismatches(mirror.clients, mirror.flow, topic, _topic_records([warm, batch, after]), target) == []
    )


def test_another_writer_fails_one_batch_then_reports_are_per_record(
    kafka_clusters: dict[str, str], unique_prefix: str, mirrors: list[Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second writer on the remote partition while a batch is in flight (a take-over's overlap, another flow
    writing the same topic): its records widen the span, the batch fails once, then every send is reported and
    the offset syncs stay exact although the other writer keeps writing in between."""
    topic, remote = f"{unique_prefix}.two", f"A.{unique_prefix}.two"
    _create(kafka_clusters["A"], topic, 1)
    _create(kafka_clusters["B"], remote, 1)
    mirror = _mirror(
        make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **CONFLUENT, **{"offset.lag.max": "4"}), mirrors
    )
    other = KafkaProducer(bootstrap_servers=kafka_clusters["B"])
    produce = ConfluentProducer._produce
    calls = 0

    def interleaved(self: ConfluentProducer, topic_name: str, *args: Any) -> None:
        """Every 10th send to the remote topic: what was sent so far lands, then the other writer's record."""
        nonlocal calls
        if topic_name == remote:
            calls += 1
            if calls % 10 == 0:
                self._producer.flush(30)
                other.send(remote, key=b"other", value=b"other-%d" % calls, partition=0).get(timeout=30)
        produce(self, topic_name, *args)

    monkeypatch.setattr(ConfluentProducer, "_produce", interleaved)
    first = _records(topic, 0, range(0, 25))
    try:
        with pytest.raises(MirrorError, match=rf"{remote}-0, the first landed at offset 0 and the last at 26 "):
            mirror.mirror(first)
        assert mirror._interleaved == {(remote, 0)}
        mirror.mirror(first)  # the retry: per-record reports, the other writer still in between
        rest = _records(topic, 0, range(25, 60))
        mirror.mirror(rest)
    finally:
        other.close()

    target = records(mirror.clients, "B", remote)
    assert sum(1 for r in target if r.key == b"other") >= 5
    assert offset_sync_mismatches(mirror.clients, mirror.flow, topic, _topic_records([first, rest]), target) == []
    assert _syncs(mirror, topic) == _reference_syncs(mirror, remote, [first, rest])


@pytest.mark.parametrize("backend", ["confluent-kafka", "kafka-python"])
def test_max_message_bytes_is_exact_with_headers(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str, mirrors: list[Mirror]
) -> None:
    """A record whose framed size (key, value, header keys and values, a null one included) is the remote
    topic's max.message.bytes is mirrored; one byte more fails the batch."""
    topic, remote = f"{unique_prefix}.edge", f"A.{unique_prefix}.edge"
    limit = 2000
    _create(kafka_clusters["A"], topic, 1)
    _create(kafka_clusters["B"], remote, 1, {"max.message.bytes": str(limit)})
    mirror = _mirror(
        make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **{"smm.producer.backend": backend}), mirrors
    )
    headers: list[Header] = [("trace", b"0123456789"), ("empty", None), ("h", b"x" * 33)]
    fixed = RECORD_OVERHEAD_BYTES + len(b"k0") + sum(len(k) + len(v or b"") + HEADER_OVERHEAD_BYTES for k, v in headers)

    def record(offset: int, framed: int) -> SourceRecord:
        (r,) = _records(topic, 0, range(offset, offset + 1), headers=headers)
        return r._replace(key=b"k%d" % (offset % 10), value=b"v" * (framed - fixed))

    exact = record(0, limit)
    mirror.mirror([exact])
    (landed,) = records(mirror.clients, "B", remote)
    assert landed.value == exact.value

    unframed = limit + 1 - RECORD_OVERHEAD_BYTES - HEADER_OVERHEAD_BYTES * len(headers)
    with pytest.raises(OversizedRecordError, match=rf"record {topic}-0@1 is {unframed} bytes framed"):
        mirror.mirror([record(1, limit + 1)])
