"""The emulated event-source mapping's consumer: what Lambda's pollers do, with either client library.

An ESM reads one topic in one consumer group, hands records over as they were fetched, stays in its group
without fetching while it retries a failed batch, and commits only what the mapping is done with. The emulator
uses the library the flow's ``smm.producer.backend`` names: librdkafka fetches and decodes in C, so a local run is
not limited by a pure-Python consumer (in AWS this part is Lambda's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kafka import OffsetAndMetadata, TopicPartition

from shared.aws.esm_event import SourceRecord
from shared.kafka import settings as client_settings
from shared.kafka.clients import KafkaClients
from shared.mm2.config import FlowConfig

CONSUMER_DEFAULTS = {"enable.auto.commit": False, "enable.partition.eof": False}


class EsmConsumer(Protocol):
    def poll_records(self, timeout: float, max_records: int) -> list[SourceRecord]: ...

    def rewind(self, records: Sequence[SourceRecord]) -> None:
        """Read ``records`` (and what follows them) again: each partition back to its first offset here."""
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


class KafkaPythonEsmConsumer:
    """kafka-python's consumer (no native code: the default, and what runs anywhere Python runs)."""

    def __init__(self, clients: KafkaClients, flow: FlowConfig, topic: str) -> None:
        settings = flow.settings
        self._consumer = clients.consumer(
            flow.source,
            group_id=flow.consumer_group_id(topic),
            enable_auto_commit=False,
            auto_offset_reset="earliest" if settings.starting_position == "TRIM_HORIZON" else "latest",
            max_poll_records=settings.batch_size,
            metadata_max_age_ms=5000,
            **_isolation(flow, "isolation_level"),
        )
        # Metadata first: kafka-python can join the group before its first metadata response names the topic,
        # take an empty assignment, and then miss the update that should trigger a rebalance (seen with several
        # consumers starting at once). A consumer that knows the partitions gets them at once.
        self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe([topic])

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


class ConfluentEsmConsumer:
    """librdkafka's consumer: fetching, decompression and checksums in C."""

    def __init__(self, clients: KafkaClients, flow: FlowConfig, topic: str) -> None:
        from confluent_kafka import Consumer

        cluster = clients.config.cluster(flow.source)
        defaults = {
            **CONSUMER_DEFAULTS,
            "group.id": flow.consumer_group_id(topic),
            "auto.offset.reset": "earliest" if flow.settings.starting_position == "TRIM_HORIZON" else "latest",
            "client.id": f"smm-esm-{flow.name}-{topic}",
            **_isolation(flow, "isolation.level"),
        }
        config = client_settings.librdkafka(cluster, "consumer", defaults)
        self._consumer = Consumer(config)
        self._consumer.subscribe([topic])

    def poll_records(self, timeout: float, max_records: int) -> list[SourceRecord]:
        records: list[SourceRecord] = []
        messages: list[Any] = self._consumer.consume(num_messages=max_records, timeout=timeout)
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
                    list(message.headers() or []),
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
