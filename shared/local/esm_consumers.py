"""The emulated event-source mapping's consumer: what Lambda's pollers do, with either client library.

An ESM reads one topic in one consumer group, hands records over as they were fetched, stays in its group
without fetching while it retries a failed batch, and commits only what the mapping is done with. The emulator
uses the library the flow's ``smm.producer.backend`` names: librdkafka fetches and decodes in C, so a local run is
not limited by a pure-Python consumer (in AWS this part is Lambda's own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition

from shared.aws.esm_event import SourceRecord
from shared.kafka import settings as client_settings
from shared.kafka.clients import KafkaClients
from shared.mm2.config import FlowConfig

CONSUMER_DEFAULTS = {"enable.auto.commit": False, "enable.partition.eof": False}
METADATA_REFRESH_MS = 5000


class EsmConsumer(Protocol):
    # Whether records polled beyond a full batch may be kept for the next one (else they are rewound and fetched
    # again): kafka-python 3.0.12 stalled partitions now and then with records kept so (a test stuck at 19,451 of
    # 24,000 records, a benchmark run at 31,555 of 33,334 per partition), which its rewind-per-batch never did.
    carries_overflow: bool

    def poll_records(self, timeout: float, max_records: int) -> list[SourceRecord]:
        """Up to ``max_records`` as soon as there are any, waiting at most ``timeout`` for the first."""
        ...

    def rewind(self, records: Sequence[SourceRecord]) -> None:
        """Read ``records`` (and what follows them) again: each partition back to its first offset here."""
        ...

    def take_revoked(self) -> set[tuple[str, int]]:
        """The partitions revoked or lost since the last call: records polled from them before are stale (the
        partition's next owner, possibly this consumer again, reads from the committed offset)."""
        ...

    def idle(self, timeout: float) -> None:
        """Wait without fetching, as a member of the group (its poll deadline kept): between retries of a batch."""
        ...

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``(topic, partition) -> next offset to read``."""
        ...

    def close(self) -> None: ...


def _first_offsets(records: Sequence[SourceRecord]) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        first[key] = min(first.get(key, r.offset), r.offset)
    return first


class _Revocations:
    """Collects the partitions a rebalance takes away; the libraries call back from inside a poll, on its thread."""

    def __init__(self) -> None:
        self._revoked: set[tuple[str, int]] = set()

    def revoked(self, partitions: Iterable[Any]) -> None:
        self._revoked.update((p.topic, p.partition) for p in partitions)

    def take_revoked(self) -> set[tuple[str, int]]:
        taken, self._revoked = self._revoked, set()
        return taken


class _KafkaPythonListener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no types
    """kafka-python reports lost partitions to on_partitions_revoked unless on_partitions_lost is overridden."""

    def __init__(self, revocations: _Revocations) -> None:
        self._revocations = revocations

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._revocations.revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class KafkaPythonEsmConsumer(_Revocations):
    """kafka-python's consumer (no native code: what runs anywhere Python runs)."""

    carries_overflow = False

    def __init__(self, clients: KafkaClients, flow: FlowConfig, topic: str) -> None:
        super().__init__()
        settings = flow.settings
        self._consumer = clients.consumer(
            flow.source,
            group_id=flow.consumer_group_id(topic),
            enable_auto_commit=False,
            auto_offset_reset="earliest" if settings.starting_position == "TRIM_HORIZON" else "latest",
            max_poll_records=settings.batch_size,
            metadata_max_age_ms=METADATA_REFRESH_MS,
            **_isolation(flow, "isolation_level"),
        )
        # Metadata first: kafka-python can join the group before its first metadata response names the topic,
        # take an empty assignment, and then miss the update that should trigger a rebalance (seen with several
        # consumers starting at once). A consumer that knows the partitions gets them at once.
        self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe([topic], listener=_KafkaPythonListener(self))

    def poll_records(self, timeout: float, max_records: int) -> list[SourceRecord]:
        polled = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [_from_kafka_python(r) for records in polled.values() for r in records]

    def rewind(self, records: Sequence[SourceRecord]) -> None:
        for (topic, partition), offset in _first_offsets(records).items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def idle(self, timeout: float) -> None:
        # Paused partitions are not fetched; a rebalance can hand over new, unpaused ones: those are read again.
        self._consumer.pause(*self._consumer.assignment())
        try:
            self.rewind(self.poll_records(timeout, 1))
        finally:
            self._consumer.resume(*self._consumer.paused())

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self._consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _isolation(flow: FlowConfig, key: str) -> dict[str, str]:
    """Exactly-once flows copy committed source records only (config validation refuses read_uncommitted)."""
    return {key: "read_committed"} if flow.exactly_once else {}


def _from_kafka_python(r: Any) -> SourceRecord:
    return SourceRecord(
        r.topic,
        r.partition,
        r.offset,
        r.timestamp,
        "LOG_APPEND_TIME" if r.timestamp_type == 1 else "CREATE_TIME",
        r.key,
        r.value,
        list(r.headers or []),
    )


class ConfluentEsmConsumer(_Revocations):
    """librdkafka's consumer: fetching, decompression and checksums in C (the default data path)."""

    carries_overflow = True

    def __init__(self, clients: KafkaClients, flow: FlowConfig, topic: str) -> None:
        from confluent_kafka import Consumer

        super().__init__()
        cluster = clients.config.cluster(flow.source)
        defaults = {
            **CONSUMER_DEFAULTS,
            "group.id": flow.consumer_group_id(topic),
            "auto.offset.reset": "earliest" if flow.settings.starting_position == "TRIM_HORIZON" else "latest",
            "client.id": f"smm-esm-{flow.name}-{topic}",
            # Partitions added to the topic are seen within seconds, as with kafka-python's metadata age below
            # (librdkafka's default is 5 minutes): a Lambda mapping starts polling them on its own.
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            **_isolation(flow, "isolation.level"),
        }
        config = client_settings.librdkafka(cluster, "consumer", defaults)
        self._consumer = Consumer(config)
        # Without an on_lost callback, the client reports lost partitions to on_revoke too.
        self._consumer.subscribe([topic], on_revoke=lambda _, partitions: self.revoked(partitions))

    def poll_records(self, timeout: float, max_records: int) -> list[SourceRecord]:
        # What is fetched already; else the first record to arrive and what came with it (as kafka-python's poll).
        # consume() with a timeout would wait for all of max_records, holding back a batching window of 0 s.
        records: list[SourceRecord] = []
        messages: list[Any] = self._consumer.consume(num_messages=max_records, timeout=0)
        if not messages and timeout > 0:
            first = self._consumer.poll(timeout)
            if first is None:
                return records
            messages = [first] if max_records == 1 else [first, *self._consumer.consume(max_records - 1, 0)]
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or not error.retriable():
                    raise RuntimeError(f"consumer error on {message.topic()}-{message.partition()}: {error}")
                continue
            kind, timestamp = message.timestamp()
            records.append(
                SourceRecord(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    timestamp,
                    "LOG_APPEND_TIME" if kind == 2 else "CREATE_TIME",
                    message.key(),
                    message.value(),
                    message.headers() or [],  # a new list per call
                )
            )
        return records

    def rewind(self, records: Sequence[SourceRecord]) -> None:
        from confluent_kafka import TopicPartition as ConfluentPartition

        for (topic, partition), offset in _first_offsets(records).items():
            self._consumer.seek(ConfluentPartition(topic, partition, offset))

    def idle(self, timeout: float) -> None:
        # As kafka-python's: nothing is fetched for paused partitions, records of newly assigned ones are read again.
        self._consumer.pause(self._consumer.assignment())
        try:
            self.rewind(self.poll_records(timeout, 1))
        finally:
            self._consumer.resume(self._consumer.assignment())

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition as ConfluentPartition

        partitions = [ConfluentPartition(t, p, o) for (t, p), o in offsets.items()]
        self._consumer.commit(offsets=partitions, asynchronous=False)

    def close(self) -> None:
        self._consumer.close()


def esm_consumer(clients: KafkaClients, flow: FlowConfig, topic: str) -> EsmConsumer:
    """The consumer an emulated ESM of ``flow`` uses for ``topic``."""
    if flow.settings.producer_backend == "confluent-kafka":
        return ConfluentEsmConsumer(clients, flow, topic)
    return KafkaPythonEsmConsumer(clients, flow, topic)
