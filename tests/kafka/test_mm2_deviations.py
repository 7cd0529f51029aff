"""Where this product drifted from MirrorMaker 2, fixed the way MM2 behaves; each test fails without its fix.

Issue 13's list: the offset-syncs topic name on the target, re-created source topics in exactly-once mode, the
remote topic's ``max.message.bytes`` cached for a container's life, librdkafka batches larger than the remote
topic accepts, failures after the records were acknowledged, the checkpoint's metadata in group offset sync and
groups gone from the source, the worker's ``offset.storage.*`` settings, records of a topic that stopped
matching, and null header values.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from functions.mirror.mirror import Mirror, TopicNotMirroredError
from shared.aws.esm_event import SourceRecord
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import alter_offsets, committed_offsets, read_topic
from shared.mm2.formats import OffsetSync
from tests.kafka.support import keeps_holding, make_config, read_all, running, wait_until

pytestmark = pytest.mark.kafka


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)


def _create(bootstrap: str, topic: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
    admin = _admin(bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    finally:
        admin.close()


def _produce(
    bootstrap: str, topic: str, values: list[bytes], headers: list[tuple[str, bytes | None]] | None = None
) -> None:
    """Records into partition 0 (with librdkafka: kafka-python's producer refuses a null header value)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0})
    for value in values:
        producer.produce(topic, key=b"k", value=value, partition=0, headers=headers or [])
    assert producer.flush(30) == 0


def _count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


# --- 1. the offset-syncs topic on the target is named after the source ------------------------------------


def test_fan_in_with_offset_syncs_on_the_target_keeps_each_sources_syncs_apart(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    """A->C and B->C, one topic name on both sources: MM2 names the topics mm2-offset-syncs.A/B.internal on C."""
    topic = f"{unique_prefix}.orders"
    for alias, count in (("A", 7), ("B", 3)):
        _create(kafka_clusters[alias], topic)
        _produce(kafka_clusters[alias], topic, [b"%d" % i for i in range(count)])
    cfg = make_config(
        kafka_clusters,
        {"A->C": f"{unique_prefix}\\..*", "B->C": f"{unique_prefix}\\..*"},
        **{"offset-syncs.topic.location": "target", "emit.heartbeats.enabled": "false"},
    )
    with running(cfg):
        for source, last in (("A", 6), ("B", 2)):
            name = f"mm2-offset-syncs.{source}.internal"

            def arrived(n: str = name, newest: int = last) -> bool:
                return _newest_sync(kafka_clusters, n, topic) == newest

            wait_until(f"{source}'s syncs in {name} on C", arrived)
    # the name MM2's tools would not look for, where both flows' syncs used to meet
    assert _newest_sync(kafka_clusters, "mm2-offset-syncs.C.internal", topic) is None


def _newest_sync(clusters: dict[str, str], name: str, topic: str) -> int | None:
    """The newest upstream offset among ``topic``'s syncs in ``name`` on C (None: no such sync)."""
    records = read_all(clusters["C"], name, timeout=3)
    upstream = [
        s.upstream_offset for r in records if (s := OffsetSync.deserialize(r.key or b"", r.value or b"")).topic == topic
    ]
    return max(upstream, default=None)


# --- 2. exactly-once: a deleted and re-created source topic is not "already mirrored" ----------------------


def _recreate(bootstrap: str, topic: str) -> None:
    admin = _admin(bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()

    def created() -> bool:
        try:
            _create(bootstrap, topic)
        except Exception:  # still being deleted
            return False
        return True

    wait_until(f"{topic} re-created", created)


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_exactly_once_mirrors_a_recreated_source_topic_from_its_start(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> None:
    topic = f"{unique_prefix}.orders"
    _create(kafka_clusters["A"], topic)
    _produce(kafka_clusters["A"], topic, [b"first-%d" % i for i in range(20)])
    cfg = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}\\..*"},
        **{
            "B.exactly.once.source.support": "enabled",
            "smm.producer.backend": backend,
            "emit.heartbeats.enabled": "false",
        },
    )
    with running(cfg):
        wait_until("the first 20 on B", lambda: _count(kafka_clusters["B"], f"A.{topic}") >= 20)
    _recreate(kafka_clusters["A"], topic)
    _produce(kafka_clusters["A"], topic, [b"second-%d" % i for i in range(10)])  # offsets 0..9: below 19
    with running(cfg):
        clients = KafkaClients(cfg)
        try:
            wait_until(
                "the re-created topic's 10 records on B",
                lambda: (
                    sum(
                        r.value.startswith(b"second-")
                        for r in read_topic(clients, "B", f"A.{topic}").records
                        if r.value
                    )
                    == 10
                ),
            )
        finally:
            clients.close()


# --- 3 and 4. the remote topic's max.message.bytes: read again when a record seems too large, and batches
#              that never exceed it -------------------------------------------------------------------------


def _alter(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = _admin(bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        admin.close()


def _records(topic: str, values: list[bytes], first: int = 0) -> list[SourceRecord]:
    now = int(time.time() * 1000)
    return [SourceRecord(topic, 0, first + i, now, "CREATE_TIME", b"k", v, []) for i, v in enumerate(values)]


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_a_warm_container_sees_a_raised_max_message_bytes(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> None:
    topic = f"{unique_prefix}.big"
    _create(kafka_clusters["A"], topic)
    _create(kafka_clusters["B"], f"A.{topic}", configs={"max.message.bytes": "2000"})
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"}, **{"smm.producer.backend": backend})
    clients = KafkaClients(cfg)
    mirror = Mirror(cfg.flow("A", "B"), clients)
    try:
        mirror.mirror(_records(topic, [b"small"]))  # the remote topic's limit (2000) is now cached
        _alter(kafka_clusters["B"], f"A.{topic}", {"max.message.bytes": "100000"})
        report = mirror.mirror(_records(topic, [b"x" * 5000], first=1))  # fits now: mirrored, not failed
        assert report.mirrored == 1 and report.dead_lettered == 0
    finally:
        mirror.close()
    assert [len(r.value or b"") for r in read_all(kafka_clusters["B"], f"A.{topic}", 2)] == [5, 5000]


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_producer_batches_stay_within_the_remote_topics_max_message_bytes(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> None:
    """400 KB in one batch into a topic that takes 50 KB: librdkafka would fail the whole batch, not split it."""
    topic = f"{unique_prefix}.many"
    _create(kafka_clusters["A"], topic)
    _create(kafka_clusters["B"], f"A.{topic}", configs={"max.message.bytes": "50000"})
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"}, **{"smm.producer.backend": backend})
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg))
    try:
        report = mirror.mirror(_records(topic, [b"%04d" % i + b"y" * 4000 for i in range(100)]))
    finally:
        mirror.close()
    assert report.mirrored == 100
    assert len(read_all(kafka_clusters["B"], f"A.{topic}", 100)) == 100


# --- 5. what fails after the records were acknowledged does not fail the batch ---------------------------


def test_a_failed_offset_sync_write_is_logged_and_the_batch_stands(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    """A replication factor the target cannot meet for the offset-syncs topic: MM2 logs it and goes on."""
    source, target = f"S{unique_prefix}", f"T{unique_prefix}"  # a new offset-syncs topic name
    topic = f"{unique_prefix}.t"
    _create(kafka_clusters["A"], topic)
    cfg = make_config(
        {source: kafka_clusters["A"], target: kafka_clusters["B"]},
        {f"{source}->{target}": f"{unique_prefix}\\..*"},
        **{"offset-syncs.topic.location": "target", "offset-syncs.topic.replication.factor": "3"},
    )
    mirror = Mirror(cfg.flow(source, target), KafkaClients(cfg))
    try:
        report = mirror.mirror(_records(topic, [b"a", b"b", b"c"]))
    finally:
        mirror.close()
    assert report.mirrored == 3 and report.after_ack_failures == 1 and report.offset_syncs == 0
    assert len(read_all(kafka_clusters["B"], f"{source}.{topic}", 3)) == 3


# --- 7. group offset sync: the checkpoint's metadata, and only the groups the source still has -----------


def test_group_offset_sync_writes_the_metadata_and_only_for_current_groups(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic, group = f"{unique_prefix}.orders", f"{unique_prefix}-app"
    _create(kafka_clusters["A"], topic)
    _produce(kafka_clusters["A"], topic, [b"%d" % i for i in range(20)])
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka_clusters["A"], group_id=group, enable_auto_commit=False)
    consumer.commit({tp: OffsetAndMetadata(20, "smm-meta", -1)})  # at the end: translated exactly
    consumer.close()
    cfg = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}\\..*"},
        **{
            "A->B.groups": f"{unique_prefix}-.*",
            "sync.group.offsets.enabled": "true",
            "sync.group.offsets.interval.seconds": "1",
            "emit.checkpoints.interval.seconds": "1",
            "emit.heartbeats.enabled": "false",
        },
    )
    clients = KafkaClients(cfg)
    remote = TopicPartition(f"A.{topic}", 0)

    def on_b() -> tuple[int, str] | None:
        return _committed(clients, "B", group).get(remote)

    try:
        with running(cfg):
            # the checkpoint's metadata goes with the offset, as MM2 writes it
            wait_until("the group synced on B", lambda: on_b() == (20, "smm-meta"))
            admin = _admin(kafka_clusters["A"])
            try:
                admin.delete_groups([group])
            finally:
                admin.close()
            alter_offsets(clients, "B", group, {remote: (0, "by-hand")})
            # the group is gone from the source: MM2 no longer syncs it, so the hand-set offset stays
            keeps_holding("the target group is left alone", lambda: on_b() == (0, "by-hand"), seconds=8)
    finally:
        clients.close()


def _committed(clients: KafkaClients, alias: str, group: str) -> dict[TopicPartition, tuple[int, str]]:
    return committed_offsets(clients, alias, [group]).get(group, {})


# --- 8. the worker's offsets topic: offset.storage.partitions and .replication.factor ---------------------


def test_exactly_once_creates_the_offsets_topic_as_the_worker_settings_say(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    source, target = f"S{unique_prefix}", f"T{unique_prefix}"  # a new mm2-offsets.<source>.internal
    topic = f"{unique_prefix}.t"
    _create(kafka_clusters["A"], topic)
    cfg = make_config(
        {source: kafka_clusters["A"], target: kafka_clusters["B"]},
        {f"{source}->{target}": f"{unique_prefix}\\..*"},
        **{f"{target}.exactly.once.source.support": "enabled", "offset.storage.partitions": "3"},
    )
    mirror = Mirror(cfg.flow(source, target), KafkaClients(cfg))
    try:
        mirror.mirror(_records(topic, [b"a"]))
    finally:
        mirror.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_clusters["B"])
    try:
        assert consumer.partitions_for_topic(f"mm2-offsets.{source}.internal") == {0, 1, 2}
    finally:
        consumer.close()


# --- 9. a topic that stopped matching keeps its position; null header values stay null --------------------


def test_records_of_a_topic_the_flow_no_longer_mirrors_fail_the_batch(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    kept, dropped = f"{unique_prefix}.kept", f"{unique_prefix}.dropped"
    for topic in (kept, dropped):
        _create(kafka_clusters["A"], topic)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}\\.kept"})
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg))
    try:
        with pytest.raises(TopicNotMirroredError, match=r"does not mirror topic .*dropped.* position is kept"):
            mirror.mirror(_records(kept, [b"a"]) + _records(dropped, [b"b"]))
    finally:
        mirror.close()
    assert _count(kafka_clusters["B"], f"A.{kept}") == 0  # nothing of the batch was sent


@pytest.mark.parametrize(("backend", "null"), [("confluent-kafka", None), ("kafka-python", b"")])
def test_null_header_values_stay_null_with_librdkafka(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str, null: bytes | None
) -> None:
    """MM2 keeps a null header value null; librdkafka can write one, kafka-python's producer cannot (empty)."""
    topic = f"{unique_prefix}.h"
    _create(kafka_clusters["A"], topic)
    _produce(kafka_clusters["A"], topic, [b"v"], headers=[("null", None), ("empty", b""), ("x", b"1")])
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"}, **{"smm.producer.backend": backend})
    with running(cfg):
        (record,) = wait_until("the record on B", lambda: read_all(kafka_clusters["B"], f"A.{topic}", 1, timeout=5))
    assert record.headers == (("null", null), ("empty", b""), ("x", b"1"))
