"""Consumer groups and whole-topic reads on top of ``KafkaClients``: what checkpoints and failover need.

Kept apart from ``shared.kafka.clients`` (the data path's module) so the scheduled functions and the failover
tools grow without touching it; like it, this is the only place these Kafka calls are made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import IllegalGenerationError, KafkaError, RebalanceInProgressError, UnknownMemberIdError

from shared.kafka import settings as client_settings
from shared.kafka.clients import _PRODUCER_DEFAULTS, ClusterError, KafkaClients, _connect

# A group in one of these states has no member that could commit over what we write.
IDLE_STATES = frozenset({"Empty", "Dead"})
# Partition errors of an offset commit that mean "the group has members": the broker's own guard.
_BUSY_ERRORS = (UnknownMemberIdError, IllegalGenerationError, RebalanceInProgressError)
READ_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 15.0
T = TypeVar("T")


class GroupActiveError(ClusterError):
    """The group gained members between the state check and the write; nothing was changed."""


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group as the cluster lists it; an absent group counts as ``Dead`` (never existed)."""

    group_id: str
    state: str = "Dead"
    protocol_type: str = ""

    @property
    def idle(self) -> bool:
        return self.state in IDLE_STATES


def _retrying(call: Callable[[], T], what: str) -> T:
    """``call()``, again after a retriable error (a fresh cluster creates its offsets topic on first use)."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() + delay > deadline:
                raise ClusterError(f"{what}: {type(exc).__name__}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def list_groups(clients: KafkaClients, alias: str) -> dict[str, GroupInfo]:
    """Every consumer group on ``alias`` (classic and KIP-848 ones, offsets-only groups included)."""
    listed = _retrying(lambda: clients.admin(alias).list_groups(), f"cannot list consumer groups on cluster {alias!r}")
    groups: dict[str, GroupInfo] = {}
    for entry in listed:
        protocol = entry.get("protocol_type") or ""
        if protocol not in ("", "consumer"):
            continue  # Connect workers and share groups keep no consumer offsets to translate
        group_id = entry["group_id"]
        groups[group_id] = GroupInfo(group_id, entry.get("group_state") or "Unknown", protocol)
    return groups


def alter_offsets(
    clients: KafkaClients, alias: str, group: str, offsets: Mapping[TopicPartition, tuple[int, str]]
) -> None:
    """Commit (offset, metadata) pairs for ``group`` on ``alias``; the broker refuses it while the group has
    members. MM2 writes a checkpoint's metadata with its offset, and so do the callers here."""
    if not offsets:
        return
    request = {tp: OffsetAndMetadata(offset, metadata, -1) for tp, (offset, metadata) in offsets.items()}
    result = _retrying(
        lambda: clients.admin(alias).alter_group_offsets(group, request),
        f"cannot write offsets of group {group!r} on cluster {alias!r}",
    )
    failed = {tp: error for tp, error in result.items() if error.errno != 0}
    if not failed:
        return
    if any(issubclass(error, _BUSY_ERRORS) for error in failed.values()):
        raise GroupActiveError(f"group {group!r} on cluster {alias!r} has active members: its offsets were not written")
    detail = ", ".join(f"{tp.topic}-{tp.partition}: {error.__name__}" for tp, error in sorted(failed.items()))
    raise ClusterError(f"cannot write offsets of group {group!r} on cluster {alias!r}: {detail}")


def committed_offsets(
    clients: KafkaClients, alias: str, groups: Iterable[str]
) -> dict[str, dict[TopicPartition, tuple[int, str]]]:
    """Committed (offset, metadata) of many groups at once (one request per coordinator on Kafka 3.0+)."""
    wanted = list(groups)
    if not wanted:
        return {}
    answer = _retrying(
        lambda: clients.admin(alias).list_group_offsets(dict.fromkeys(wanted)),
        f"cannot read committed offsets of {len(wanted)} group(s) on cluster {alias!r}",
    )
    result: dict[str, dict[TopicPartition, tuple[int, str]]] = {}
    for group in wanted:
        offsets = answer.get(group, {})
        result[group] = {tp: (m.offset, m.metadata or "") for tp, m in offsets.items() if m.offset >= 0}
    return result


def group_offsets(clients: KafkaClients, alias: str, group: str) -> dict[TopicPartition, int]:
    """One group's committed offsets (next offset to read, per partition)."""
    return {tp: offset for tp, (offset, _) in committed_offsets(clients, alias, [group])[group].items()}


def new_producer(clients: KafkaClients, alias: str, **overrides: Any) -> KafkaProducer:
    """A producer of its own (not the shared cached one), e.g. transactional with a fixed id."""
    settings = {
        **_PRODUCER_DEFAULTS,
        "client_id": f"smm-{alias}-producer",
        "bootstrap_timeout_ms": 15000,
        **client_settings.kafka_python(clients.config.cluster(alias), "producer"),
        **overrides,
    }
    producer: KafkaProducer = _connect(alias, KafkaProducer, settings)
    return producer


@dataclass(frozen=True)
class TopicRecord:
    """A record as the internal-topic readers need it."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class ReadBatch:
    """What a read returned; ``restarted`` means it began again at the topic's start (discard older state)."""

    records: list[TopicRecord]
    restarted: bool
    exists: bool = True


def _reader_consumer(clients: KafkaClients, alias: str) -> KafkaConsumer:
    """No group, committed data only (aborted checkpoint transactions stay invisible), fresh metadata."""
    return clients.consumer(
        alias,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        metadata_max_age_ms=30000,
    )


@dataclass
class TopicReader:
    """Reads one topic from where the last read stopped to its current end; the first read starts at the top.

    It lives as long as its owner (a warm Lambda container keeps it, a cold start builds a new one), so state
    derived from the topic is rebuilt from the beginning exactly when it was lost.
    """

    clients: KafkaClients
    alias: str
    topic: str
    timeout_seconds: float = READ_TIMEOUT_SECONDS
    _consumer: KafkaConsumer | None = field(default=None, init=False, repr=False)
    _assigned: frozenset[TopicPartition] = field(default=frozenset(), init=False, repr=False)

    def read_new(self) -> ReadBatch:
        consumer = self._consumer
        if consumer is None:
            consumer = self._consumer = _reader_consumer(self.clients, self.alias)
        partitions = frozenset(TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic))
        if not partitions:
            restarted = bool(self._assigned)
            self._assign(consumer, frozenset())
            return ReadBatch([], restarted=restarted, exists=False)
        restarted = not self._assigned
        added = partitions - self._assigned
        if partitions != self._assigned:
            self._assign(consumer, partitions)
        if added:
            consumer.seek_to_beginning(*added)
        ends = consumer.end_offsets(list(partitions))
        if any(consumer.position(tp) > ends[tp] for tp in partitions):
            restarted = True  # the topic was deleted and created again: its old state is void
            consumer.seek_to_beginning(*partitions)
        records = _read_until(consumer, ends, self.timeout_seconds, self._where(), keep_all=True)
        return ReadBatch(records, restarted)

    def _assign(self, consumer: KafkaConsumer, partitions: frozenset[TopicPartition]) -> None:
        consumer.assign(sorted(partitions))
        self._assigned = partitions

    def _where(self) -> str:
        return _where(self.alias, self.topic)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._assigned = frozenset()


def read_topic(clients: KafkaClients, alias: str, topic: str) -> ReadBatch:
    """The whole topic, beginning to end (once; for tools that do not keep state)."""
    reader = TopicReader(clients, alias, topic)
    try:
        return reader.read_new()
    finally:
        reader.close()


def read_tail(clients: KafkaClients, alias: str, topic: str, per_partition: int) -> list[TopicRecord]:
    """The last ``per_partition`` offsets of each partition of ``topic`` (empty if the topic is absent)."""
    consumer = _reader_consumer(clients, alias)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        if not partitions:
            return []
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        tail = {tp: max(starts[tp], ends[tp] - per_partition) for tp in partitions}
        return _read_range(consumer, tail, ends, _where(alias, topic))
    finally:
        consumer.close()


def read_range(
    clients: KafkaClients, alias: str, starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> list[TopicRecord]:
    """Committed records with start <= offset < end of each partition (e.g. to see if any exist there)."""
    consumer = _reader_consumer(clients, alias)
    try:
        return _read_range(consumer, starts, ends, _where(alias, ", ".join(sorted({tp.topic for tp in starts}))))
    finally:
        consumer.close()


def read_records(
    clients: KafkaClients,
    alias: str,
    partition: TopicPartition,
    offsets: tuple[int, int],
    max_records: int,
    committed_only: bool,
) -> Iterator[list[Any]]:
    """The records of one partition with start <= offset < end (``offsets``), in order, ``max_records`` at a time,
    as kafka-python's consumer returns them (all fields, headers too). Offsets already deleted are skipped: the
    read begins at the log start. ``committed_only`` leaves aborted transactions out."""
    start, end = offsets
    consumer = clients.consumer(
        alias,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    where = f"{_where(alias, partition.topic)}, partition {partition.partition}, offsets {start} to {end}"
    try:
        consumer.assign([partition])
        consumer.seek(partition, start)
        stalled_at = time.monotonic() + READ_TIMEOUT_SECONDS
        while consumer.position(partition) < end:
            records = [r for r in consumer.poll(timeout_ms=500).get(partition, []) if r.offset < end]
            if records:
                stalled_at = time.monotonic() + READ_TIMEOUT_SECONDS
                yield records
            elif time.monotonic() > stalled_at:
                raise ClusterError(f"reading {where} made no progress for {READ_TIMEOUT_SECONDS:.0f}s")
    finally:
        consumer.close()


def _where(alias: str, topic: str) -> str:
    return f"topic {topic!r} on cluster {alias!r}"


def _read_range(
    consumer: KafkaConsumer, starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int], where: str
) -> list[TopicRecord]:
    wanted = {tp: ends[tp] for tp in starts if starts[tp] < ends[tp]}
    if not wanted:
        return []
    consumer.assign(sorted(wanted))
    for tp in wanted:
        consumer.seek(tp, starts[tp])
    return _read_until(consumer, wanted, READ_TIMEOUT_SECONDS, where, keep_all=False)


def _read_until(
    consumer: KafkaConsumer, ends: Mapping[TopicPartition, int], timeout: float, where: str, keep_all: bool
) -> list[TopicRecord]:
    """Poll until every partition's position reached its end offset; ``keep_all`` keeps records past it."""
    deadline = time.monotonic() + timeout
    records: list[TopicRecord] = []
    pending = _behind(consumer, ends, ends)
    while pending:
        if time.monotonic() > deadline:
            at = ", ".join(f"{tp.partition}: {consumer.position(tp)} of {ends[tp]}" for tp in sorted(pending))
            raise ClusterError(
                f"reading {where} did not reach its end within {timeout:.0f}s (partition: position of "
                f"end: {at}); the cluster is slow or unreachable, or a transaction on the topic is still open"
            )
        for tp, batch in consumer.poll(timeout_ms=200).items():
            end = ends.get(tp)
            records.extend(
                TopicRecord(r.partition, r.offset, r.timestamp, r.key, r.value)
                for r in batch
                if keep_all or end is None or r.offset < end
            )
        pending = _behind(consumer, ends, pending)
    return records


def _behind(
    consumer: KafkaConsumer, ends: Mapping[TopicPartition, int], among: Iterable[TopicPartition]
) -> set[TopicPartition]:
    return {tp for tp in among if consumer.position(tp) < ends[tp]}
