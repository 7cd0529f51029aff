"""Exactly-once mode on real brokers: transactions per source partition, source offsets, fencing, redelivery.

The mirror is driven batch by batch here, so each test decides exactly which batch is redelivered, which
invocation is the zombie and where a failure lands; ``test_faults`` runs the same mode through real faults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition

from functions.mirror.exactly_once import ExactlyOnceWriter, source_offsets_partition
from functions.mirror.mirror import Mirror
from shared.aws.esm_event import SourceRecord, build_event
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import TopicRecord, read_range, read_topic
from shared.local.emulator import LambdaContext
from shared.mm2.config import FlowConfig, MirrorConfig
from shared.mm2.formats import OffsetSync, SourceOffset
from tests.kafka.faults import properties, write_properties
from tests.kafka.support import make_config, run_flows

pytestmark = pytest.mark.kafka

EXACTLY_ONCE = {"B.exactly.once.source.support": "enabled"}
BACKENDS = ["kafka-python", "confluent-kafka"]


def eos_config(clusters: dict[str, str], prefix: str, backend: str = "kafka-python") -> MirrorConfig:
    return make_config(clusters, {"A->B": f"{prefix}\\..*"}, **EXACTLY_ONCE, **{"smm.producer.backend": backend})


def each_once(records: Sequence[TopicRecord]) -> dict[int, list[bytes | None]]:
    """What a read_committed consumer of the remote topic must see: every source record once, in order."""
    return {p: [r.value for r in records if r.partition == p] for p in sorted({r.partition for r in records})}


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for p in range(partitions):
        for n in range(per_partition):
            producer.send(topic, key=b"k%d" % n, value=f"{topic}/{p}/{n}".encode(), partition=p)
    producer.flush()
    producer.close()


def as_source_records(topic: str, records: Sequence[TopicRecord]) -> list[SourceRecord]:
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    return [SourceRecord(topic, r.partition, r.offset, r.timestamp, "CREATE_TIME", r.key, r.value, []) for r in ordered]


def committed_values(clients: KafkaClients, alias: str, topic: str) -> dict[int, list[bytes | None]]:
    """What a read_committed consumer sees, per partition, in order."""
    seen: dict[int, list[bytes | None]] = {}
    for r in read_topic(clients, alias, topic).records:
        seen.setdefault(r.partition, []).append(r.value)
    return seen


def source_offsets(clients: KafkaClients, flow: FlowConfig, topic: str) -> dict[tuple[str, int], int]:
    """The newest committed ``SourceOffset`` of each partition of ``topic`` in ``mm2-offsets.<source>.internal``."""
    found: dict[tuple[str, int], int] = {}
    for r in read_topic(clients, flow.target, flow.source_offsets_topic()).records:
        offset = SourceOffset.deserialize(r.key or b"", r.value)
        assert offset is not None and offset.cluster == flow.source
        if offset.topic == topic:
            found[(offset.topic, offset.partition)] = offset.offset
    return found


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Tests that take it run on each producer backend."""
    name: str = request.param
    return name


@pytest.fixture
def containers(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> Iterator[Callable[[int], list[Mirror]]]:
    """Makes Lambda containers of flow A->B in exactly-once mode, each with clients of its own; closes them."""
    cfg = eos_config(kafka_clusters, unique_prefix, backend)
    made: list[Mirror] = []

    def make(count: int) -> list[Mirror]:
        made.extend(Mirror(cfg.flow("A", "B"), KafkaClients(cfg)) for _ in range(count))
        return made[-count:]

    yield make
    for mirror in made:
        mirror.close()


@pytest.fixture
def source_topic(kafka_clusters: dict[str, str], unique_prefix: str) -> Iterator[tuple[str, list[TopicRecord]]]:
    """``<prefix>.pay`` on A: 3 partitions of 40 numbered records, and the records as read back."""
    topic = f"{unique_prefix}.pay"
    clients = KafkaClients(make_config(kafka_clusters, {}))
    try:
        clients.ensure_topic("A", topic, 3, 1)
        produce(kafka_clusters["A"], topic, 3, 40)
        yield topic, read_topic(clients, "A", topic).records
    finally:
        clients.close()


def test_redelivered_batches_are_skipped_warm_and_cold(
    source_topic: tuple[str, list[TopicRecord]], containers: Callable[[int], list[Mirror]]
) -> None:
    topic, records = source_topic
    warm, cold = containers(2)
    flow, clients = warm.flow, warm.clients
    batch = as_source_records(topic, records)
    first, second = batch[: len(batch) // 2], batch[len(batch) // 2 :]
    assert warm.mirror(first).mirrored == len(first)
    again = warm.mirror(first)  # a redelivery to the same container
    assert (again.mirrored, again.skipped["mirrored"]) == (0, len(first))
    overlap = first[-10:] + second
    report = cold.mirror(overlap)  # a new container: the offsets come from the topic
    assert (report.mirrored, report.skipped["mirrored"]) == (len(second), 10)

    remote = f"A.{topic}"
    assert committed_values(clients, "B", remote) == each_once(records)
    assert source_offsets(clients, flow, topic) == {(topic, p): 39 for p in range(3)}
    # the offsets sit where Kafka's default partitioner (Connect's offset writer) puts their keys
    for r in read_topic(clients, "B", flow.source_offsets_topic()).records:
        assert r.partition == source_offsets_partition(r.key or b"", 25)
    # offset syncs point at the right records even though the remote partitions hold commit markers
    target = {(r.partition, r.offset): r.value for r in read_topic(clients, "B", remote).records}
    source = {(r.partition, r.offset): r.value for r in records}
    syncs = [
        OffsetSync.deserialize(r.key or b"", r.value or b"")
        for r in read_topic(clients, "A", flow.offset_syncs_topic()).records
    ]
    mine = [s for s in syncs if s.topic == topic]
    assert mine
    assert all(target[(s.partition, s.downstream_offset)] == source[(s.partition, s.upstream_offset)] for s in mine)


def test_failed_batch_is_aborted_and_then_mirrored_once(
    source_topic: tuple[str, list[TopicRecord]],
    containers: Callable[[int], list[Mirror]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic, records = source_topic
    (mirror,) = containers(1)
    real_commit = ExactlyOnceWriter.commit
    commits = {"n": 0}

    def second_commit_fails(writer: ExactlyOnceWriter, t: str, partition: int, last: int) -> None:
        commits["n"] += 1
        if commits["n"] == 2:
            raise ConnectionError("injected: the transaction of the second partition does not commit")
        real_commit(writer, t, partition, last)

    batch = as_source_records(topic, records)
    monkeypatch.setattr(ExactlyOnceWriter, "commit", second_commit_fails)
    with pytest.raises(ConnectionError, match="injected"):
        mirror.mirror(batch)
    monkeypatch.undo()
    remote = f"A.{topic}"
    # partition 0 committed; partition 1 aborted; partition 2 never reached its commit: aborted too
    partial = committed_values(mirror.clients, "B", remote)
    assert {p: len(v) for p, v in partial.items()} == {0: 40}
    uncommitted = mirror.clients.latest_offsets("B", [TopicPartition(remote, p) for p in range(3)])
    assert all(end > 0 for end in uncommitted.values()), "the aborted records were written, then aborted"

    report = mirror.mirror(batch)  # the ESM redelivers the whole batch
    assert (report.mirrored, report.skipped["mirrored"]) == (80, 40)
    assert committed_values(mirror.clients, "B", remote) == each_once(records)


def test_zombie_invocation_is_fenced(
    source_topic: tuple[str, list[TopicRecord]], containers: Callable[[int], list[Mirror]]
) -> None:
    """Two containers with the same partition: the newer one fences the older, which writes nothing more."""
    topic, records = source_topic
    batch = as_source_records(topic, records)
    zombie, successor = containers(2)
    zombie.mirror(batch[:30])  # the zombie's producers are up: partition 0, offsets 0-29
    successor.mirror(batch[:60])  # a newer container: fences them, skips 0-29, mirrors the rest
    with pytest.raises(Exception, match=r"(?i)fenc|epoch"):
        zombie.mirror(batch[30:60])
    report = zombie.mirror(batch)  # retried: new producers fence the successor, offsets are read again
    assert (report.mirrored, report.skipped["mirrored"]) == (len(batch) - 60, 60)
    assert committed_values(zombie.clients, "B", f"A.{topic}") == each_once(records)


def test_aborted_source_transactions_are_not_copied(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.ledger"
    cfg = eos_config(kafka_clusters, unique_prefix)
    clients = KafkaClients(cfg)
    producer = KafkaProducer(bootstrap_servers=kafka_clusters["A"], transactional_id=f"{unique_prefix}-app")
    try:
        clients.ensure_topic("A", topic, 1, 1)
        producer.init_transactions()
        for n, commit in enumerate([True, False, True, False, True]):
            producer.begin_transaction()
            for i in range(10):
                producer.send(topic, value=f"{'kept' if commit else 'aborted'}/{n}/{i}".encode(), partition=0)
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
        remote = f"A.{topic}"
        run_flows(cfg, lambda: len(read_topic(clients, "B", remote).records) >= 30)
        values = [r.value or b"" for r in read_topic(clients, "B", remote).records]
        assert len(values) == 30 and all(v.startswith(b"kept/") for v in values)
    finally:
        producer.close()
        clients.close()


def test_the_deployed_entry_point_writes_a_redelivered_event_once(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    source_topic: tuple[str, list[TopicRecord]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``lambda_handler`` as Lambda runs it (config file, SMM_FLOW): the ESM's redelivery of an event is skipped."""
    from functions.mirror import handler

    topic, records = source_topic
    path = tmp_path / "mm2.properties"
    props = properties(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"}, **EXACTLY_ONCE)
    write_properties(path, props)
    monkeypatch.setenv("SMM_CONFIG_FILE", str(path))
    monkeypatch.setenv("SMM_FLOW", "A->B")
    event = build_event(as_source_records(topic, records), [kafka_clusters["A"]])
    try:
        first = handler.lambda_handler(event, LambdaContext("smm-mirror-A-B"))
        again = handler.lambda_handler(event, LambdaContext("smm-mirror-A-B"))
        clients = handler._container.mirror().clients
        assert (first["mirrored"], again["mirrored"], again["skipped"]) == (120, 0, {"mirrored": 120})
        assert committed_values(clients, "B", f"A.{topic}") == each_once(records)
    finally:
        handler._container.close()


def test_a_batch_of_new_partitions_fences_the_zombie_of_one(
    source_topic: tuple[str, list[TopicRecord]], containers: Callable[[int], list[Mirror]]
) -> None:
    """The producers of a batch's new partitions are initialised together: the one with a zombie still fences it.

    The zombie froze inside a transaction (records and source offset written, not committed): the successor's
    initialisation aborts it, and only then are the offsets read, so the successor neither waits on that
    transaction nor counts its offset.
    """
    topic, records = source_topic
    batch = as_source_records(topic, records)
    ones = [r for r in batch if r.partition == 1]
    zombie, successor = containers(2)
    assert zombie.mirror(ones[:20]).mirrored == 20
    writer = zombie.exactly_once
    assert writer is not None
    producer = writer.begin(topic, 1)
    for r in ones[20:30]:
        producer.send(f"A.{topic}", r.key, r.value, [], 1, r.timestamp)
    real_commit = producer.commit

    def freeze() -> None:
        producer.flush()
        raise TimeoutError("injected: the zombie froze before committing")

    producer.commit = freeze  # type: ignore[method-assign]
    with pytest.raises(TimeoutError, match="injected"):
        writer.commit(topic, 1, ones[29].offset)

    report = successor.mirror(batch)  # partitions 0, 1 and 2 are all new to this container
    assert (report.mirrored, report.skipped["mirrored"]) == (len(batch) - 20, 20)
    with pytest.raises(Exception, match=r"(?i)fenc|epoch"):
        real_commit()
    writer.abort([(topic, 1)])  # as the zombie's failed batch would
    assert committed_values(successor.clients, "B", f"A.{topic}") == each_once(records)
    assert source_offsets(successor.clients, successor.flow, topic) == {(topic, p): 39 for p in range(3)}


def test_offsets_are_read_on_from_where_the_container_left_off(
    source_topic: tuple[str, list[TopicRecord]],
    containers: Callable[[int], list[Mirror]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a failed batch the partition's offset is read again, from the end of the previous read, not from 0,
    and what was committed since (by this container or another) is found there."""
    topic, records = source_topic
    zeros = [r for r in as_source_records(topic, records) if r.partition == 0]
    other, mirror = containers(2)
    assert other.mirror(zeros[:10]).mirrored == 10  # an offset in the topic before ``mirror`` first reads it
    reads: list[tuple[dict[TopicPartition, int], dict[TopicPartition, int]]] = []

    def spy(
        clients: KafkaClients, alias: str, starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> list[TopicRecord]:
        reads.append((dict(starts), dict(ends)))
        return read_range(clients, alias, starts, ends)

    monkeypatch.setattr("functions.mirror.exactly_once.read_range", spy)
    assert (mirror.mirror(zeros[:20]).mirrored, len(reads)) == (10, 1)
    (place,) = reads[0][0]
    assert reads[0][0][place] == 0 and reads[0][1][place] > 0

    def commit_fails(writer: ExactlyOnceWriter, t: str, partition: int, last: int) -> None:
        raise ConnectionError("injected: the commit fails")

    with monkeypatch.context() as patch:
        patch.setattr(ExactlyOnceWriter, "commit", commit_fails)
        with pytest.raises(ConnectionError, match="injected"):
            mirror.mirror(zeros[20:])
    report = mirror.mirror(zeros)  # redelivered: the producer is new, its offset read again
    assert (report.mirrored, report.skipped["mirrored"]) == (20, 20)
    assert len(reads) == 2 and reads[1][0] == {place: reads[0][1][place]}
    assert committed_values(mirror.clients, "B", f"A.{topic}")[0] == each_once(records)[0]
