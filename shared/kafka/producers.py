"""The data path's producer, behind one small interface so its client library can be chosen per deployment.

Two backends: kafka-python (pure Python, what every other client here uses) and confluent-kafka (librdkafka,
manylinux wheels for Lambda's x86_64 and arm64). The mirror only needs ``send`` with raw bytes and an explicit
partition and timestamp, a delivery report (the downstream offset, for offset syncs), and ``flush``. On
librdkafka a delivery report costs a Python call per record, so the mirror asks for it only where it needs a
downstream offset (``unreported_sender``) and proves the rest delivered by arithmetic.
``smm.producer.backend`` selects one; the README's Performance section says which is the default and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from kafka.serializer import Serializer

from shared.mm2.formats import Header

BACKENDS = ("kafka-python", "confluent-kafka")

_logger = logging.getLogger("confluent_kafka")

# Whatever a closing producer still holds was never acknowledged, so the batch it belonged to failed (or will be
# redelivered): waiting longer protects nothing and can hang a shutdown on an unreachable cluster.
CLOSE_TIMEOUT_SECONDS = 10.0
# How long a transaction may take to flush or commit before the batch fails and its producer is replaced (a new
# one fences the old and aborts its transaction). A 6 MB batch needs well under a second on a healthy link.
TRANSACTION_FLUSH_TIMEOUT_SECONDS = 15.0
# How long a data-path flush waits for its deliveries before the batch fails.
FLUSH_TIMEOUT_SECONDS = 120.0
# librdkafka's default message.timeout.ms (alias delivery.timeout.ms); 0 means no timeout.
LIBRDKAFKA_MESSAGE_TIMEOUT_MS = 300_000

# ``send`` without a delivery report: topic, key, value, headers, partition, timestamp (ms).
UnreportedSend = Callable[[str, "bytes | None", "bytes | None", "list[Header]", int, int], None]


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
    """confluent-kafka's ``Producer`` (librdkafka): the records' bytes never pass through Python code.

    A send without a delivery report calls no Python at all, so its failure is silent; the caller proves it
    delivered instead (first and last of a partition's sends reported, offsets ``n - 1`` apart). That proof
    holds only if a failure cannot leave a hole between two successes: ``enable.gapless.guarantee`` turns such
    a failure into a fatal error that fails every later send of the producer (and the producer is then rebuilt),
    and a send cannot time out (``message.timeout.ms``, not covered by that guarantee) before the flush has
    already given up on it and failed the batch.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        from confluent_kafka import Producer

        self._new = Producer
        self._timeout = FLUSH_TIMEOUT_SECONDS
        self._fatal: Any = None  # a fatal error reported by librdkafka: the producer must be replaced
        self._config = self._with_guarantees(config)
        self._producer = Producer(self._config)
        timeout_ms = int(self._config.get("message.timeout.ms", self._config.get("delivery.timeout.ms", -1)))
        if timeout_ms < 0:
            timeout_ms = LIBRDKAFKA_MESSAGE_TIMEOUT_MS
        self.unreported_sends_exact = timeout_ms == 0 or timeout_ms > self._timeout * 1000

    def _with_guarantees(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {**config, "enable.gapless.guarantee": True, "error_cb": self._on_error}

    def _on_error(self, error: Any) -> None:
        """librdkafka's error events (logged by librdkafka itself while no ``error_cb`` is set)."""
        _logger.log(logging.ERROR if error.fatal() else logging.WARNING, "librdkafka producer error: %s", error)
        if error.fatal():
            self._fatal = error

    def _replace_if_fatal(self, error: Any = None) -> None:
        """A fatal producer fails every send from then on: replace it (what it held has failed already)."""
        from confluent_kafka import KafkaError

        if self._fatal is not None or (error is not None and error.code() == KafkaError._FATAL):
            self._replace()

    def _replace(self) -> None:
        failed, self._producer, self._fatal = self._producer, self._new(self._config), None
        failed.purge()
        failed.flush(0)

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
        self._produce(topic, key, value, headers, partition, timestamp_ms, delivery.done)
        return delivery

    def send_unreported(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        partition: int,
        timestamp_ms: int,
    ) -> None:
        """``send`` without a delivery report: no Python object or call per record."""
        self._produce(topic, key, value, headers, partition, timestamp_ms, None)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        partition: int,
        timestamp_ms: int,
        on_delivery: Callable[[Any, Any], None] | None,
    ) -> None:
        from confluent_kafka import KafkaException

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    timestamp=timestamp_ms,
                    headers=cast("list[tuple[str, str | bytes | None]]", headers) or None,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
            except KafkaException as exc:
                self._replace_if_fatal(exc.args[0])
                raise

    def flush(self) -> None:
        try:
            remaining = self._producer.flush(self._timeout)
        except Exception as exc:  # a fatal error: confluent-kafka 2.16.1's flush raises it as a SystemError
            reason = self._fatal or exc
            self._replace()
            raise RuntimeError(f"flushing failed ({reason}); the producer was replaced, what it held failed") from exc
        self._replace_if_fatal()
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
    """A failed send, reported or not, fails ``commit``: sends without a report are exact whatever the timeouts,
    and a failed transaction's producer is discarded by its caller, so none of the non-transactional guarantees
    is added."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._producer.init_transactions(self._timeout)
        self._timeout = TRANSACTION_FLUSH_TIMEOUT_SECONDS
        self.unreported_sends_exact = True

    def _with_guarantees(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def _replace_if_fatal(self, error: Any = None) -> None:
        """Never: a fenced or failed transaction's producer is discarded by its caller (``discard``)."""

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


def unreported_sender(producer: RecordProducer) -> UnreportedSend | None:
    """``producer``'s send without a delivery report, if a failure of such a send cannot go unnoticed: the
    caller then reports the first and last send of each partition and checks their offsets are ``n - 1``
    apart. None for producers that make a delivery object per record anyway (kafka-python)."""
    if isinstance(producer, ConfluentProducer) and producer.unreported_sends_exact:
        return producer.send_unreported
    return None
