"""A mapping with a retry limit, a record age or a failure destination may move past a batch; the mirror then
copies the skipped range from the source before the next batch, so nothing is lost and order is kept.

The batches are handed to ``Mirror`` as the mapping would after it skipped: the records exist on a real source
cluster, and the batch that follows the skip simply starts further on.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from functions.mirror.mirror import Mirror, SkippedRangeUnfinishedError
from functions.mirror.skipped import mirrored_group, source_record
from shared.aws.esm_event import SourceRecord
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import group_offsets
from shared.mm2.config import MirrorConfig
from shared.mm2.gaps import GapEvent
from tests.kafka.support import make_config, read_all

pytestmark = pytest.mark.kafka


def _source(bootstrap: str, topic: str, count: int) -> list[SourceRecord]:
    """``count`` records written to partition 0 of a new ``topic``, as the mapping would deliver them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0})
    for i in range(count):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0, headers=[("h", b"%d" % i)])
    assert producer.flush(30) == 0
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        records = [source_record(r) for _, r in zip(range(count), consumer, strict=False)]
    finally:
        consumer.close()
    assert len(records) == count
    return records


def _config(kafka_clusters: dict[str, str], prefix: str, **settings: str) -> MirrorConfig:
    return make_config(kafka_clusters, {"A->B": f"{prefix}\\..*"}, **{"smm.batch.size": "4", **settings})


def _target(kafka_clusters: dict[str, str], topic: str, expected: int) -> list[tuple[bytes | None, bytes | None]]:
    return [(r.key, r.value) for r in read_all(kafka_clusters["B"], f"A.{topic}", expected)]


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_a_skipped_range_is_mirrored_before_the_next_batch_in_order(
    kafka_clusters: dict[str, str], unique_prefix: str, mode: str
) -> None:
    topic = f"{unique_prefix}.orders"
    records = _source(kafka_clusters["A"], topic, 30)
    eos = {"B.exactly.once.source.support": "enabled"} if mode == "exactly-once" else {}
    cfg = _config(kafka_clusters, unique_prefix, **eos)
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg), recover_skipped=True)
    try:
        assert mirror.mirror(records[:10]).recovered_records == 0
        report = mirror.mirror(records[20:])  # the mapping gave up on 10..19 and moved on
    finally:
        mirror.close()
    assert report.skipped_ranges == 1 and report.recovered_records == 10 and report.mirrored == 20
    assert _target(kafka_clusters, topic, 30) == [(r.key, r.value) for r in records]  # all, in source order
    positions = group_offsets(KafkaClients(cfg), "A", mirrored_group(cfg.flow("A", "B"), topic))
    assert positions == {TopicPartition(topic, 0): 30}


def test_a_new_container_finds_the_mirrored_position_in_kafka(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.cold"
    records = _source(kafka_clusters["A"], topic, 20)
    cfg = _config(kafka_clusters, unique_prefix)
    first = Mirror(cfg.flow("A", "B"), KafkaClients(cfg), recover_skipped=True)
    try:
        first.mirror(records[:5])
    finally:
        first.close()
    cold = Mirror(cfg.flow("A", "B"), KafkaClients(cfg), recover_skipped=True)
    try:
        assert cold.mirror(records[12:]).recovered_records == 7
    finally:
        cold.close()
    assert _target(kafka_clusters, topic, 20) == [(r.key, r.value) for r in records]


def test_a_redelivered_batch_is_no_skip(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.again"
    records = _source(kafka_clusters["A"], topic, 10)
    cfg = _config(kafka_clusters, unique_prefix)
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg), recover_skipped=True)
    try:
        mirror.mirror(records)
        report = mirror.mirror(records[5:])  # a retry of a batch whose commit was lost
    finally:
        mirror.close()
    assert report.skipped_ranges == 0 and report.recovered_records == 0


def test_what_retention_deleted_from_a_skipped_range_is_a_gap_and_the_rest_is_mirrored(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.retention"
    records = _source(kafka_clusters["A"], topic, 30)
    cfg = _config(kafka_clusters, unique_prefix)
    clients = KafkaClients(cfg)
    mirror = Mirror(cfg.flow("A", "B"), clients, recover_skipped=True)
    try:
        mirror.mirror(records[:10])
        clients.admin("A").delete_records({TopicPartition(topic, 0): 15})  # 10..14 gone before anyone read them
        report = mirror.mirror(records[20:])
    finally:
        mirror.close()
    assert report.recovered_records == 5 and report.gaps == 1 and report.gap_records == 5
    assert _target(kafka_clusters, topic, 25) == [(r.key, r.value) for r in records[:10] + records[15:]]
    gaps = [r for r in read_all(kafka_clusters["B"], "mm2-gaps.A.internal") if r.key == f"{topic}-0".encode()]
    assert [GapEvent.deserialize(g.value or b"").lost_records for g in gaps] == [5]


def test_a_long_skipped_range_is_copied_across_invocations(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    """Out of time, the batch fails after some progress; its retry goes on from the recorded position."""
    topic = f"{unique_prefix}.long"
    records = _source(kafka_clusters["A"], topic, 40)
    cfg = _config(kafka_clusters, unique_prefix)  # chunks of smm.batch.size = 4
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg), recover_skipped=True)
    try:
        mirror.mirror(records[:2])
        with pytest.raises(SkippedRangeUnfinishedError, match=r"range 2-38 of .*long-0"):
            mirror.mirror(records[38:], deadline=time.monotonic())
        assert len(read_all(kafka_clusters["B"], f"A.{topic}")) == 2 + 4  # one chunk made it
        report = mirror.mirror(records[38:])
    finally:
        mirror.close()
    assert report.recovered_records == 32
    assert _target(kafka_clusters, topic, 40) == [(r.key, r.value) for r in records]
