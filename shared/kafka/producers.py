"""The data path's producer, behind one small interface so its client library can be chosen per deployment.

Two backends: kafka-python (pure Python, what every other client here uses) and confluent-kafka (librdkafka,
manylinux wheels for Lambda's x86_64 and arm64). The mirror only needs ``send`` with raw bytes and an explicit
partition and timestamp, a delivery report per record (the downstream offset, for offset syncs), and ``flush``.
``smm.producer.backend`` selects one; the README's Performance section says which is the default and why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

from kafka.serializer import Serializer

from shared.mm2.formats import Header

BACKENDS = ("kafka-python", "confluent-kafka")

# Whatever a closing producer still holds was never acknowledged, so the batch it belonged to failed (or will be
# redelivered): waiting longer protects nothing and can hang a shutdown on an unreachable cluster.
CLOSE_TIMEOUT_SECONDS = 10.0
# How long a transaction may take to flush or commit before the batch fails and its producer is replaced (a new
# one fences the old and aborts its transaction). A 6 MB batch needs well under a second on a healthy link.
TRANSACTION_FLUSH_TIMEOUT_SECONDS = 15.0


class Delivery(Protocol):
    """The outcome of one send, complete once ``flush`` has returned."""

    def failed(self) -> bool: ...

    @property
    def exception(self) -> BaseException | None: ...

    @property
    def offset(self) -> int: ...


class RecordProducer(Protocol):
    """What the mirror needs of a producer: idempotent, acks=all, order kept per partition."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        partition: int,
        timestamp_ms: int,
    ) -> Delivery: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def await_partitions(self, topic: str, partitions: int, timeout: float) -> bool:
        """Refresh metadata until ``topic`` shows ``partitions`` partitions; False on timeout."""
        ...


class TransactionalProducer(RecordProducer, Protocol):
    """A producer with a fixed transactional id, initialised (older producers of the id fenced) when built."""

    def begin(self) -> None: ...

    def commit(self) -> None:
        """Flush and commit; raises if any send of the transaction failed or a newer producer fenced this one."""
        ...

    def discard(self) -> None:
        """Drop the producer without waiting: its open transaction is aborted when a successor initialises."""
        ...


class NullableKeySerializer(Serializer):  # type: ignore[misc]
    """Lets a record with a null key and a null value (a keyless tombstone) through, as Kafka does.

    kafka-python refuses ``send(key=None, value=None)`` before serializing; sending ``NULL_KEY`` as the key
    passes that check and serializes to a null key.
    """

    NULL_KEY = object()

    def serialize(self, topic: str, headers: Any, data: Any) -> Any:
        return None if data is self.NULL_KEY else data


def send_record(
    producer: Any,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[Header],
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> Any:
    """``producer.send`` for raw bytes, keyless tombstones included; returns the future.

    kafka-python 3.0.12 refuses a null header value at ``send`` (its record format has them): such a value is
    written empty, which only ``smm.producer.backend = confluent-kafka`` avoids (librdkafka keeps it null).
    """
    if any(v is None for _, v in headers):
        headers = [(k, b"" if v is None else v) for k, v in headers]
    return producer.send(
        topic,
        key=NullableKeySerializer.NULL_KEY if key is None and value is None else key,
        value=value,
        headers=list(headers),
        partition=partition,
        timestamp_ms=timestamp_ms,
    )


class KafkaPythonProducer:
    """kafka-python's ``KafkaProducer``; its futures already are deliveries."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        partition: int,
        timestamp_ms: int,
    ) -> Delivery:
        future = send_record(self._producer, topic, key, value, headers, partition, timestamp_ms)
        return _FutureDelivery(future)

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.close(timeout=CLOSE_TIMEOUT_SECONDS)
        except KafkaTimeoutError:
            # close() flushes first and gives up on a timeout without closing; a forced close fails what is left
            self._producer._sender.force_close()
            self._producer.close(timeout=CLOSE_TIMEOUT_SECONDS)

    def await_partitions(self, topic: str, partitions: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self._producer.partitions_for(topic) or ()) < partitions:
            if time.monotonic() > deadline:
                return False
            self._producer._metadata.request_update()  # kafka-python has no public refresh
            time.sleep(0.1)
        return True


class KafkaPythonTransactionalProducer(KafkaPythonProducer):
    def __init__(self, producer: Any) -> None:
        super().__init__(producer)
        producer.init_transactions()

    def flush(self) -> None:
        # kafka-python 3.0.12 does not get a transaction going again after its coordinator connection dropped
        # (a broker restart): sends wait for their delivery timeout. A bounded flush lets the caller replace it.
        self._producer.flush(timeout=TRANSACTION_FLUSH_TIMEOUT_SECONDS)

    def begin(self) -> None:
        self._producer.begin_transaction()

    def commit(self) -> None:
        self._producer.commit_transaction()

    def discard(self) -> None:
        self._producer._sender.force_close()  # fails what it holds, sends nothing more
        self.close()


class _FutureDelivery:
    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def failed(self) -> bool:
        return bool(self._future.failed())

    @property
    def exception(self) -> BaseException | None:
        exc: BaseException | None = self._future.exception
        return exc

    @property
    def offset(self) -> int:
        return int(self._future.value.offset)


class _CallbackDelivery:
    """Filled in by librdkafka's delivery callback during ``flush``."""

    __slots__ = ("_error", "_offset")

    def __init__(self) -> None:
        self._offset = -1
        self._error: BaseException | None = None

    def done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._error = RuntimeError(f"delivery failed: {err}")
        else:
            self._offset = msg.offset()

    def failed(self) -> bool:
        return self._error is not None or self._offset < 0

    @property
    def exception(self) -> BaseException | None:
        return self._error or (RuntimeError("no delivery report") if self._offset < 0 else None)

    @property
    def offset(self) -> int:
        return self._offset


class ConfluentProducer:
    """confluent-kafka's ``Producer`` (librdkafka): the records' bytes never pass through Python code."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(dict(config))
        self._timeout = 120.0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        partition: int,
        timestamp_ms: int,
    ) -> Delivery:
        delivery = _CallbackDelivery()
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    timestamp=timestamp_ms,
                    headers=cast("list[tuple[str, str | bytes | None]]", headers) or None,
                    on_delivery=delivery.done,
                )
                return delivery
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def flush(self) -> None:
        remaining = self._producer.flush(self._timeout)
        if remaining:
            raise RuntimeError(f"{remaining} record(s) still undelivered after {self._timeout:g} s")

    def close(self) -> None:
        self._producer.flush(CLOSE_TIMEOUT_SECONDS)

    def await_partitions(self, topic: str, partitions: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metadata = self._producer.list_topics(topic, timeout=max(deadline - time.monotonic(), 0.1))
            if len(metadata.topics[topic].partitions) >= partitions:
                return True
            time.sleep(0.1)
        return False


class ConfluentTransactionalProducer(ConfluentProducer):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._producer.init_transactions(self._timeout)
        self._timeout = TRANSACTION_FLUSH_TIMEOUT_SECONDS

    def flush(self) -> None:
        # poll, not flush: on a fatal error (fenced by a newer producer) confluent-kafka 2.16.1's flush raises a
        # KafkaError that is no exception (Python sees a SystemError); poll raises a proper KafkaException
        deadline = time.monotonic() + self._timeout
        while len(self._producer):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self._producer)} record(s) still undelivered after {self._timeout:g} s")
            self._producer.poll(0.05)

    def begin(self) -> None:
        self._producer.begin_transaction()

    def commit(self) -> None:
        self._producer.commit_transaction(self._timeout)

    def discard(self) -> None:
        self._producer.purge()
        self._producer.flush(0)


PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1024 * 1024,
    "message.max.bytes": 8 * 1024 * 1024,
    "queue.buffering.max.messages": 200_000,
}
