"""Exactly-once mode: each source partition's records go to the target in transactions of its own.

MM2 3.5+ gets exactly-once from Connect (KIP-618): the records and the task's source offsets are written in one
transaction, and a restarted task resumes after the last committed offset. Without Connect, the same happens
per batch here: every source partition has a transactional producer (id from flow, topic and partition, so a
newer invocation for that partition fences older ones), and each transaction ends with the partition's
``SourceOffset`` in ``mm2-offsets.<source>.internal`` on the target. A redelivered batch skips what that
offset says was committed. After a fence, a failed commit or a cold start, the offset is read again from the
topic, after the new producer has finished (or aborted) whatever its predecessor left open.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from kafka import TopicPartition
from kafka.partitioner.default import murmur2

from shared.aws.esm_event import SourceRecord
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import read_range
from shared.kafka.producers import TransactionalProducer
from shared.mm2.config import FlowConfig
from shared.mm2.formats import FormatError, SourceOffset

logger = Logger(service="smm-mirror")

# As Connect creates its offsets topic (offset.storage.partitions), so MM2 and this project can share it.
SOURCE_OFFSETS_PARTITIONS = 25
# Producers kept open per container; the least recently used beyond this are closed (and re-created on demand).
MAX_OPEN_PARTITIONS = 64

SourcePartition = tuple[str, int]


def source_offsets_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and so Connect's offset writer) picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Writer:
    producer: TransactionalProducer
    key: bytes  # the partition's SourceOffset key ...
    offsets_partition: int  # ... and where it lives in the offsets topic
    last_mirrored: int  # upstream offset of the last record committed; -1 before the first


class ExactlyOnceWriter:
    """The transactional producers of one flow's source partitions and the offsets committed with them."""

    def __init__(self, flow: FlowConfig, clients: KafkaClients) -> None:
        self.flow = flow
        self.clients = clients
        self.topic = flow.source_offsets_topic()
        self._writers: OrderedDict[SourcePartition, _Writer] = OrderedDict()
        self._open: set[SourcePartition] = set()
        self._lock = threading.Lock()

    def prepare(self, partitions: Iterable[SourcePartition]) -> None:
        """Producers for ``partitions`` (fencing older ones), and each partition's last committed offset."""
        wanted = list(dict.fromkeys(partitions))
        with self._lock:
            new = [p for p in wanted if p not in self._writers]
            for p in wanted:
                if p in self._writers:
                    self._writers.move_to_end(p)
        if not new:
            return
        count = self._ensure_topic()
        keys = {p: SourceOffset(self.flow.source, *p, -1).record_key() for p in new}
        places = {p: source_offsets_partition(key, count) for p, key in keys.items()}
        producers: dict[SourcePartition, TransactionalProducer] = {}
        try:
            for p in new:
                producers[p] = self.clients.transactional_producer(
                    self.flow.target, self.flow.settings.producer_backend, self.flow.transactional_id(*p)
                )
            committed = self._read_committed(keys, places)
        except BaseException:
            for producer in producers.values():
                producer.close()
            raise
        with self._lock:
            for p, producer in producers.items():
                self._writers[p] = _Writer(producer, keys[p], places[p], committed.get(p, -1))
            idle = [p for p in self._writers if p not in self._open and p not in producers]
            for p in idle[: max(0, len(self._writers) - MAX_OPEN_PARTITIONS)]:
                self._writers.pop(p).producer.close()

    def unmirrored(self, topic: str, partition: int, batch: list[SourceRecord]) -> list[SourceRecord]:
        """The records of ``batch`` after the last committed offset (all of them, unless this is a redelivery)."""
        last = self._writers[(topic, partition)].last_mirrored
        if batch[0].offset > last:
            return batch
        return [r for r in batch if r.offset > last]

    def begin(self, topic: str, partition: int) -> TransactionalProducer:
        writer = self._writers[(topic, partition)]
        with self._lock:
            self._open.add((topic, partition))
        writer.producer.begin()
        return writer.producer

    def commit(self, topic: str, partition: int, last_offset: int) -> None:
        """End the partition's transaction with its new source offset; the batch's records must be flushed."""
        writer = self._writers[(topic, partition)]
        value = SourceOffset(self.flow.source, topic, partition, last_offset).record_value()
        writer.producer.send(self.topic, writer.key, value, [], writer.offsets_partition, int(time.time() * 1000))
        writer.producer.commit()
        writer.last_mirrored = last_offset
        with self._lock:
            self._open.discard((topic, partition))

    def abort(self, partitions: Iterable[SourcePartition]) -> None:
        """After a failed batch: drop the producers of the transactions it left open, and their offsets.

        Only the batch's own partitions: other pollers of the same container may be mid-transaction. The next
        batch builds new producers, which fences anything still in flight, and reads the offsets again.
        """
        with self._lock:
            failed = [(p, self._writers.pop(p)) for p in partitions if p in self._open and p in self._writers]
            self._open.difference_update(partitions)
        for (topic, partition), writer in failed:
            try:  # no abort: with the cluster unreachable it would wait; the successor's init aborts instead
                writer.producer.discard()
            except Exception as exc:
                logger.warning(
                    "cannot close the producer of a failed batch",
                    extra={"topic": topic, "partition": partition, "error": f"{type(exc).__name__}: {exc}"},
                )

    def close(self) -> None:
        with self._lock:
            writers, self._writers = list(self._writers.values()), OrderedDict()
        for writer in writers:
            writer.producer.close()

    # --- the offsets topic -------------------------------------------------------------------------------

    def _ensure_topic(self) -> int:
        s = self.flow.settings
        info = self.clients.ensure_topic(
            self.flow.target,
            self.topic,
            SOURCE_OFFSETS_PARTITIONS,
            s.checkpoints_topic_replication_factor,
            {"cleanup.policy": "compact"},
        )
        return info.partitions

    def _read_committed(
        self, keys: Mapping[SourcePartition, bytes], places: Mapping[SourcePartition, int]
    ) -> dict[SourcePartition, int]:
        """The last committed offset of each partition of ``keys``: read to the offsets topic's high watermark,
        with ``read_committed``, so transactions still open there (other partitions') are waited for, not skipped."""
        by_key = {key: p for p, key in keys.items()}
        tps = {TopicPartition(self.topic, place) for place in places.values()}
        ends = self.clients.latest_offsets(self.flow.target, tps)
        found: dict[SourcePartition, int] = {}
        for record in read_range(self.clients, self.flow.target, dict.fromkeys(tps, 0), ends):
            wanted_partition = by_key.get(record.key or b"")
            if wanted_partition is None:
                continue
            try:
                offset = SourceOffset.deserialize(record.key or b"", record.value)
            except FormatError as exc:
                raise FormatError(f"{self.topic} on {self.flow.target!r} at offset {record.offset}: {exc}") from None
            if offset is None:
                found.pop(wanted_partition, None)
            else:
                found[wanted_partition] = offset.offset
        return found
