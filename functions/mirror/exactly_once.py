"""Exactly-once mode: each source partition's records go to the target in transactions of its own.

MM2 3.5+ gets exactly-once from Connect (KIP-618): the records and the task's source offsets are written in one
transaction, and a restarted task resumes after the last committed offset. Without Connect, the same happens
per batch here: every source partition has a transactional producer (id from flow, topic and partition, so a
newer invocation for that partition fences older ones), and each transaction ends with the partition's
``SourceOffset`` in ``mm2-offsets.<source>.internal`` on the target. A redelivered batch skips what that
offset says was committed. After a fence, a failed commit or a cold start, the offset is read again from the
topic, after the new producer has finished (or aborted) whatever its predecessor left open.

A batch's new partitions get their producers concurrently (``init_transactions`` waits on the coordinator, in C
without the GIL for librdkafka), and the offsets topic is read on from where this container last read it, not
from its beginning: a batch's cold partitions wait for one initialisation, not one after another, and no scan.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from kafka import TopicPartition
from kafka.partitioner.default import murmur2

from shared.aws.esm_event import SourceRecord
from shared.kafka import source_offsets
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import read_range
from shared.kafka.producers import TransactionalProducer
from shared.mm2.config import FlowConfig
from shared.mm2.formats import SourceOffset

logger = Logger(service="smm-mirror")

# Producers kept open per container; the least recently used beyond this are closed (and re-created on demand).
MAX_OPEN_PARTITIONS = 64
# New partitions' producers initialised at once (each waits on its transaction coordinator).
MAX_CONCURRENT_INITS = 8

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
    topic_id: str | None  # the source topic's id the offset belongs to


@dataclass
class _OffsetsRead:
    """What this container has read of the offsets topic: where each of its partitions was read up to, and the
    newest offset seen there per source partition. Belongs to one incarnation of the topic (its id)."""

    topic_id: str | None
    positions: dict[int, int] = field(default_factory=dict)
    found: dict[SourcePartition, SourceOffset] = field(default_factory=dict)


class ExactlyOnceWriter:
    """The transactional producers of one flow's source partitions and the offsets committed with them."""

    def __init__(self, flow: FlowConfig, clients: KafkaClients) -> None:
        self.flow = flow
        self.clients = clients
        self.topic = flow.source_offsets_topic()
        self._writers: OrderedDict[SourcePartition, _Writer] = OrderedDict()
        self._open: set[SourcePartition] = set()
        self._lock = threading.Lock()
        self._offsets_read = _OffsetsRead(None)
        self._read_lock = threading.Lock()  # one read of the offsets topic at a time moves its positions

    def prepare(self, limits: Mapping[SourcePartition, int]) -> None:
        """Producers for the partitions of ``limits`` (fencing older ones; their batches within the remote topic's
        ``max.message.bytes``), and each partition's last committed offset."""
        wanted = list(limits)
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
        producers = self._new_producers({p: limits[p] for p in new})
        try:
            # only now: the new producers have finished (or aborted) what their predecessors left open
            committed = self._read_committed(keys, places)
            ids = {topic: self._source_topic_id(topic) for topic in {t for t, _ in new}}
        except BaseException:
            for p, producer in producers.items():
                _quietly(producer.close, p, "cannot close a new producer after a failure")
            raise
        with self._lock:
            for p, producer in producers.items():
                last, topic_id = self._valid_offset(p, committed.get(p), ids[p[0]])
                self._writers[p] = _Writer(producer, keys[p], places[p], last, topic_id)
            idle = [p for p in self._writers if p not in self._open and p not in producers]
            evicted = [(p, self._writers.pop(p)) for p in idle[: max(0, len(self._writers) - MAX_OPEN_PARTITIONS)]]
        for p, writer in evicted:  # one fenced meanwhile fails its flush: no reason to fail this batch
            _quietly(writer.producer.close, p, "cannot close an idle producer")

    def _new_producers(self, limits: Mapping[SourcePartition, int]) -> dict[SourcePartition, TransactionalProducer]:
        """Initialised producers for ``limits``' partitions, concurrently; none are left open if one fails."""

        def make(p: SourcePartition) -> TransactionalProducer:
            return self.clients.transactional_producer(
                self.flow.target, self.flow.settings.producer_backend, self.flow.transactional_id(*p), limits[p]
            )

        if len(limits) == 1:
            return {p: make(p) for p in limits}
        with ThreadPoolExecutor(min(len(limits), MAX_CONCURRENT_INITS), thread_name_prefix="smm-eos-init") as pool:
            futures = {p: pool.submit(make, p) for p in limits}
        failed = [e for e in (f.exception() for f in futures.values()) if e is not None]
        made = {p: f.result() for p, f in futures.items() if f.exception() is None}
        if failed:
            for p, producer in made.items():
                _quietly(producer.close, p, "cannot close a new producer after a failure")
            raise failed[0]
        return made

    def unmirrored(self, topic: str, partition: int, batch: list[SourceRecord]) -> list[SourceRecord]:
        """The records of ``batch`` after the last committed offset (all of them, unless this is a redelivery).

        Records at or before that offset are a redelivery, unless the source topic was deleted and created again
        since: its id tells (looked up only then, on this rare path), and its records are then all new.
        """
        writer = self._writers[(topic, partition)]
        if batch[0].offset > writer.last_mirrored:
            return batch
        writer.last_mirrored, writer.topic_id = self._valid_offset(
            (topic, partition),
            SourceOffset(self.flow.source, topic, partition, writer.last_mirrored, writer.topic_id),
            self._source_topic_id(topic),
        )
        return [r for r in batch if r.offset > writer.last_mirrored]

    def begin(self, topic: str, partition: int) -> TransactionalProducer:
        writer = self._writers[(topic, partition)]
        with self._lock:
            self._open.add((topic, partition))
        writer.producer.begin()
        return writer.producer

    def commit(self, topic: str, partition: int, last_offset: int) -> None:
        """End the partition's transaction with its new source offset; the batch's records must be flushed."""
        writer = self._writers[(topic, partition)]
        value = SourceOffset(self.flow.source, topic, partition, last_offset, writer.topic_id).record_value()
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
        for p, writer in failed:  # no abort: with the cluster unreachable it would wait; the successor's init aborts
            _quietly(writer.producer.discard, p, "cannot close the producer of a failed batch")

    def close(self) -> None:
        """Close every producer; one fenced by a newer container cannot flush, which stops none of the others."""
        with self._lock:
            writers, self._writers = list(self._writers.items()), OrderedDict()
        for p, writer in writers:
            _quietly(writer.producer.close, p, "cannot close a producer")

    # --- the offsets topic -------------------------------------------------------------------------------

    def _ensure_topic(self) -> int:
        # As MM2's worker creates it (offset.storage.*), so MM2 and this project can share it.
        offsets = self.flow.offsets_topic()
        info = self.clients.ensure_topic(
            self.flow.target, self.topic, offsets.partitions, offsets.replication_factor, {"cleanup.policy": "compact"}
        )
        return info.partitions

    def _source_topic_id(self, topic: str) -> str | None:
        info = self.clients.topic_info(self.flow.source, topic, refresh=True)
        return None if info is None else info.topic_id

    def _valid_offset(
        self, partition: SourcePartition, committed: SourceOffset | None, current_id: str | None
    ) -> tuple[int, str | None]:
        """(last mirrored offset, topic id) to go on from: -1 when the offset belongs to a deleted namesake."""
        if committed is None:
            return -1, current_id
        if committed.topic_id is not None and current_id is not None and committed.topic_id != current_id:
            logger.warning(
                "the source topic was deleted and created again: its earlier mirrored offset no longer applies",
                extra={
                    "topic": partition[0],
                    "partition": partition[1],
                    "stale_offset": committed.offset,
                    "old_topic_id": committed.topic_id,
                    "topic_id": current_id,
                },
            )
            return -1, current_id
        return committed.offset, current_id or committed.topic_id

    def _read_committed(
        self, keys: Mapping[SourcePartition, bytes], places: Mapping[SourcePartition, int]
    ) -> dict[SourcePartition, SourceOffset]:
        """The last committed offset of each partition of ``keys``, from their partitions of the offsets topic.

        Read with ``read_committed`` up to the high watermark (transactions still open there are waited for, not
        skipped), from where this container's previous read ended: what lies before is in ``found`` already.
        A compacted topic keeps each key's newest record, so nothing newer than what was read can be missing.
        """
        alias = self.flow.target
        info = self.clients.topic_info(alias, self.topic, refresh=True)
        if info is None:
            return {}
        with self._read_lock:
            state = self._offsets_read
            tps = {TopicPartition(self.topic, p) for p in set(places.values())}
            ends = self.clients.latest_offsets(alias, tps)
            if state.topic_id != info.topic_id or any(ends[tp] < state.positions.get(tp.partition, 0) for tp in tps):
                state = self._offsets_read = _OffsetsRead(info.topic_id)  # a new topic of that name: start over
            starts = {tp: state.positions.get(tp.partition, 0) for tp in tps}
            if any(starts[tp] < ends[tp] for tp in tps):
                for record in read_range(self.clients, alias, starts, ends):
                    source_offsets.remember(state.found, record, f"{self.topic} on {alias!r}")
            state.positions.update({tp.partition: ends[tp] for tp in tps})
            found = state.found
            return {p: found[p] for p in keys if p in found and found[p].cluster == self.flow.source}


def _quietly(action: Callable[[], None], partition: SourcePartition, failure: str) -> None:
    """Run a producer's ``close``/``discard``, logging instead of raising: its transaction is over either way."""
    try:
        action()
    except Exception as exc:
        logger.warning(
            failure, extra={"topic": partition[0], "partition": partition[1], "error": f"{type(exc).__name__}: {exc}"}
        )
