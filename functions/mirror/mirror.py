"""Mirror one ESM batch from the source cluster to the target: MM2's ``MirrorSourceTask`` without Connect.

Records keep partition, key, value, headers and timestamp; remote topics are created before anything is
forwarded; offset syncs are written only after the records they describe are acknowledged. Any failure raises,
so the event-source mapping redelivers the batch and nothing is lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from kafka import TopicPartition
from kafka.errors import KafkaError

from functions.mirror.exactly_once import ExactlyOnceWriter
from functions.mirror.skipped import MirroredPositions
from shared.aws.esm_event import SourceRecord, by_partition
from shared.kafka.clients import KafkaClients, TopicInfo
from shared.kafka.producers import Delivery, RecordProducer, unreported_sender
from shared.mm2 import provenance
from shared.mm2.config import FlowConfig
from shared.mm2.formats import Header, Heartbeat
from shared.mm2.gaps import GapEvent, gaps_topic
from shared.mm2.offset_syncs import OffsetSyncPlanner, PartitionState

logger = Logger(service="smm-mirror")
_T = TypeVar("_T")

# Kafka's record-batch framing around one record (v2 batch header + record overhead), so that the size check
# agrees with the broker's max.message.bytes.
RECORD_OVERHEAD_BYTES = 61 + 21
HEADER_OVERHEAD_BYTES = 10


class MirrorError(RuntimeError):
    """The batch could not be mirrored completely; raising makes the ESM redeliver it."""


class SkippedRangeUnfinishedError(MirrorError):
    """A range the mapping skipped was not copied completely before the invocation's time ran out."""


class OversizedRecordError(MirrorError):
    """A record larger than the remote topic accepts, with ``smm.oversized.record.action = fail``."""


class TopicNotMirroredError(MirrorError):
    """Records of a topic this flow does not (or no longer) mirror: the batch fails so that the mapping's
    consumer group keeps its position, as MM2's task keeps its offsets for a topic it stops replicating; config
    sync disables the mapping on its next run, and re-enabling it resumes there."""


# One source partition's records of a batch, as ``by_partition`` groups them (once per batch).
_PartitionBatch = tuple[tuple[str, int], list[SourceRecord]]


@dataclass(frozen=True)
class _Pending:
    """One partition's sends of a batch, waiting for the flush (and, in exactly-once mode, the commit).

    ``deliveries`` holds a report per send, or (sends without reports) only the first and the last send's: the
    others are proven delivered by the two offsets being ``len(upstream) - 1`` apart.
    """

    topic: str
    partition: int
    remote: str  # the remote topic the records went to (same partition number)
    upstream: list[int]  # the upstream offsets of the records sent, in order
    deliveries: list[Delivery]
    producer: RecordProducer
    last_offset: int  # the batch's last upstream offset: committed as the partition's source offset


@dataclass
class BatchReport:
    """What one batch did: the figures behind the metrics and the local runtime's progress line."""

    records: int = 0
    mirrored: int = 0
    bytes: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    offset_syncs: int = 0
    gaps: int = 0
    gap_records: int = 0
    max_record_age_ms: int = 0
    replication_latency_ms: list[int] = field(default_factory=list)
    batch_latency_ms: float = 0.0
    after_ack_failures: int = 0  # offset-sync writes or gap checks that failed after the records were acked
    skipped_ranges: int = 0  # ranges the event-source mapping moved past, found before this batch
    recovered_records: int = 0  # records of those ranges mirrored from the source (also in ``mirrored``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "mirrored": self.mirrored,
            "bytes": self.bytes,
            "skipped": dict(self.skipped),
            "deadLettered": self.dead_lettered,
            "offsetSyncs": self.offset_syncs,
            "gaps": self.gaps,
            "gapRecords": self.gap_records,
            "maxRecordAgeMs": self.max_record_age_ms,
            "replicationLatencyMs": self.replication_latency_ms,
            "batchLatencyMs": round(self.batch_latency_ms, 3),
            "afterAckFailures": self.after_ack_failures,
            "skippedRanges": self.skipped_ranges,
            "recoveredRecords": self.recovered_records,
        }


def unexplained_gap(expected: int, first: int, log_start: int) -> int:
    """Records lost between the last mirrored offset and this batch: deleted from the log before being read.

    Jumps explained by compaction or transaction markers leave the log start where it was; only retention (or
    a deleted and recreated topic) moves it past offsets that were never mirrored.
    """
    if first <= expected or log_start <= expected:
        return 0
    return min(first, log_start) - expected


class Mirror:
    """Mirrors batches for one flow; lives as long as the container, so clients and sync state are reused."""

    def __init__(self, flow: FlowConfig, clients: KafkaClients, recover_skipped: bool = False) -> None:
        self.flow = flow
        self.clients = clients
        self.policy = flow.policy()
        self.selector = flow.topic_selector()
        self.identity = flow.uses_identity_names()
        self.planner = OffsetSyncPlanner(flow.settings.offset_lag_max)
        self.exactly_once = ExactlyOnceWriter(flow, clients) if flow.exactly_once else None
        # The mappings may move past a batch (a retry limit, a record age, a failure destination): keep the
        # mirrored position in Kafka and copy what they skipped from the source (functions/mirror/skipped.py).
        self.positions = MirroredPositions(flow, clients) if recover_skipped else None
        self._next_offset: dict[tuple[str, int], int] = {}
        # Remote partitions another writer wrote to while a batch was in flight: their sends are reported one
        # by one from then on (contiguous offsets no longer prove delivery there).
        self._interleaved: set[tuple[str, int]] = set()

    # --- one batch ---------------------------------------------------------------------------------------

    def mirror(self, records: Sequence[SourceRecord], deadline: float | None = None) -> BatchReport:
        """Mirror one batch; ``deadline`` (``time.monotonic``) bounds the copying of skipped ranges."""
        started = time.monotonic()
        report = BatchReport(records=len(records))
        partitions = list(by_partition(records))
        for (topic, partition), _ in partitions:  # before anything is sent: the whole batch keeps its position
            reason = self.selector.skip_reason(topic)
            if reason is not None:
                raise TopicNotMirroredError(
                    f"flow {self.flow.name} does not mirror topic {topic!r} ({reason}): the batch of "
                    f"{topic}-{partition} fails so that its position is kept; config sync disables the topic's "
                    "event-source mapping"
                )
        if self.positions is not None:
            self._recover(self.positions, {key: batch[0].offset for key, batch in partitions}, report, deadline)
        self._mirror(partitions, report)
        if self.positions is not None:
            positions = {key: batch[-1].offset + 1 for key, batch in partitions}
            self._after_ack("recording the mirrored position", report, self.positions.commit, positions)
        report.batch_latency_ms = (time.monotonic() - started) * 1000
        return report

    def _mirror(self, partitions: list[_PartitionBatch], report: BatchReport) -> None:
        """Send, acknowledge (and in exactly-once mode commit) records of one or more partitions, then sync."""
        remotes = {key: self._remote_topic(*key) for key, _ in partitions}
        if self.exactly_once is not None:
            self.exactly_once.prepare({key: info.max_message_bytes for key, info in remotes.items()})
        begun: list[tuple[str, int]] = []  # exactly-once: the partitions whose transaction this batch opened
        try:
            pending, dead_letters = self._send(partitions, remotes, report, begun)
            acked = self._acknowledge(pending, dead_letters, report)
        except BaseException:
            if self.exactly_once is not None:
                self.exactly_once.abort(begun)
            raise
        report.mirrored += sum(len(pairs) for _, _, pairs in acked)
        # The records are acknowledged: what follows must not fail the batch (a redelivery would copy them again).
        # MM2 logs a failed offset-sync write and goes on; so does a failed gap check here.
        states = self._after_ack("writing offset syncs", report, self._write_offset_syncs, acked, report) or {}
        self._after_ack("checking for gaps", report, self._detect_gaps, partitions, report)
        for (topic, partition), state in states.items():
            self.planner.commit(topic, partition, state)
        for (topic, partition), batch in partitions:
            self._next_offset[(topic, partition)] = batch[-1].offset + 1

    def _recover(
        self,
        positions: MirroredPositions,
        firsts: dict[tuple[str, int], int],
        report: BatchReport,
        deadline: float | None,
    ) -> None:
        """Mirror, before the batch, what the mapping skipped since the mirrored position (still on the source)."""
        skipped = positions.skipped(firsts)
        if not skipped:
            return
        log_starts = self.clients.earliest_offsets(self.flow.source, [TopicPartition(*key) for key in skipped])
        for (topic, partition), (start, end) in sorted(skipped.items()):
            key = (topic, partition)
            report.skipped_ranges += 1
            logger.warning(
                "the event-source mapping skipped records; mirroring them from the source before the batch",
                extra={"topic": topic, "partition": partition, "from_offset": start, "to_offset": end},
            )
            # what retention deleted meanwhile is a gap, as for the mapping (the gap check sees it from here)
            self._next_offset[key] = start
            begin = max(start, log_starts.get(TopicPartition(*key), 0))
            for i, chunk in enumerate(positions.records(topic, partition, (begin, end))):
                if i and deadline is not None and time.monotonic() > deadline:  # each invocation gets somewhere
                    raise SkippedRangeUnfinishedError(
                        f"copying the range {start}-{end} of {topic}-{partition} that the event-source mapping "
                        f"skipped did not finish in this invocation (mirrored up to {chunk[0].offset}); the batch "
                        "fails and its retry goes on from there"
                    )
                self._mirror([(key, chunk)], report)
                report.recovered_records += len(chunk)
                positions.commit({key: chunk[-1].offset + 1})

    def _after_ack(self, what: str, report: BatchReport, step: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return step(*args)
        except Exception as exc:  # already acknowledged: log, count, and let the next batch try again
            report.after_ack_failures += 1
            logger.error(
                f"{what} failed after the records were acknowledged; the batch stands",
                extra={"flow": self.flow.name, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None

    def close(self) -> None:
        if self.exactly_once is not None:
            self.exactly_once.close()
        self.clients.close()

    # --- steps -------------------------------------------------------------------------------------------

    def _send(
        self,
        partitions: list[_PartitionBatch],
        remotes: dict[tuple[str, int], TopicInfo],
        report: BatchReport,
        begun: list[tuple[str, int]],
    ) -> tuple[list[_Pending], list[Delivery]]:
        """Send each partition's records (in exactly-once mode, inside its transaction); nothing is flushed yet."""
        now_ms = int(time.time() * 1000)
        pending: list[_Pending] = []
        dead_letters: list[Delivery] = []
        for (topic, partition), batch in partitions:
            info = remotes[(topic, partition)]
            remote = info.name
            producer = self._producer(self.flow.target, info.max_message_bytes)
            last_offset = batch[-1].offset
            if self.exactly_once is not None:
                fresh = self.exactly_once.unmirrored(topic, partition, batch)
                if len(fresh) < len(batch):
                    report.skipped["mirrored"] += len(batch) - len(fresh)
                    if not fresh:
                        continue
                batch = fresh
                begun.append((topic, partition))
                producer = self.exactly_once.begin(topic, partition)
            upstream: list[int] = []
            deliveries: list[Delivery] = []
            send, limit, identity, target = producer.send, info.max_message_bytes, self.identity, self.flow.target
            # Without reports: the first send is reported, then each send is held until the next one comes, so
            # that the last goes out with a report too.
            quiet = None if (remote, partition) in self._interleaved else unreported_sender(producer)
            held_key: bytes | None = None
            held_value: bytes | None = None
            held_headers: list[Header] = []
            held_timestamp = 0
            holding = refreshed = False
            sent_bytes = 0
            for record in batch:
                key, value, headers = record.key, record.value, record.headers
                if identity:
                    if provenance.has_visited(headers, target):
                        report.skipped["loop"] += 1
                        continue
                    headers = provenance.stamp(headers, self.flow.source)
                size = 0  # explicit arithmetic: the hottest lines of the mirror
                for k, v in headers:
                    size += len(k)
                    if v is not None:
                        size += len(v)
                if key is not None:
                    size += len(key)
                if value is not None:
                    size += len(value)
                framed = RECORD_OVERHEAD_BYTES + size + HEADER_OVERHEAD_BYTES * len(headers)
                if framed > limit and not refreshed:  # config sync may have raised max.message.bytes since
                    refreshed = True
                    latest = self.clients.topic_info(target, remote, refresh=True)
                    limit = latest.max_message_bytes if latest is not None else limit
                if framed > limit:
                    dead_letters.append(self._dead_letter(producer, record, remote, size, limit))
                    continue
                if quiet is None or not upstream:
                    deliveries.append(send(remote, key, value, headers, partition, record.timestamp))
                else:
                    if holding:
                        quiet(remote, held_key, held_value, held_headers, partition, held_timestamp)
                    held_key = key
                    held_value = value
                    held_headers = headers
                    held_timestamp = record.timestamp
                    holding = True
                upstream.append(record.offset)
                sent_bytes += size
            if holding:
                deliveries.append(send(remote, held_key, held_value, held_headers, partition, held_timestamp))
            if upstream:
                report.bytes += sent_bytes
                report.max_record_age_ms = max(report.max_record_age_ms, now_ms - min(r.timestamp for r in batch))
            if self.policy.is_heartbeats_topic(topic):
                self._observe_heartbeats(batch, now_ms, report)
            pending.append(_Pending(topic, partition, remote, upstream, deliveries, producer, last_offset))
        return pending, dead_letters

    def _acknowledge(
        self, pending: list[_Pending], dead_letters: list[Delivery], report: BatchReport
    ) -> list[tuple[str, int, list[tuple[int, int]]]]:
        """Flush, check every send, then (exactly-once) commit each partition's transaction with its offset."""
        producers = {id(p.producer): p.producer for p in pending} or {0: self._producer(self.flow.target)}
        for producer in producers.values():
            producer.flush()
        report.dead_lettered += len(_acknowledged(dead_letters, "dead-lettering a record"))
        acked = [(p.topic, p.partition, self._downstream_offsets(p)) for p in pending]
        if self.exactly_once is not None:
            for p in pending:
                self.exactly_once.commit(p.topic, p.partition, p.last_offset)
        return acked

    def _downstream_offsets(self, pending: _Pending) -> list[tuple[int, int]]:
        """The (upstream, downstream) offset pairs of a flushed partition's sends; any doubt fails the batch.

        With only the first and last send reported, both succeeded and ``n - 1`` apart proves that all ``n``
        landed, in order, on consecutive offsets (idempotent producer; a failure in between fails every later
        send, see ``ConfluentProducer``, and in exactly-once mode the commit): a lost record narrows the span,
        another writer's records widen it. The offset syncs are then planned on the inferred pairs.
        """
        p = pending
        where = f"{p.topic}-{p.partition}"
        offsets = _acknowledged(p.deliveries, f"mirroring records of {where} to the target")
        n = len(p.upstream)
        if len(offsets) == n:  # every send reported
            return list(zip(p.upstream, offsets, strict=True))
        first, last = offsets
        if last - first != n - 1:
            self._interleaved.add((p.remote, p.partition))
            remote, partition = p.remote, p.partition
            why = "another writer's records in between" if last - first > n - 1 else "fewer records than were sent"
            raise MirrorError(
                f"mirroring records of {where} to the target: {n} records were sent to {remote}-{partition}, the "
                f"first landed at offset {first} and the last at {last} ({why}); the batch fails and the sends to "
                f"{remote}-{partition} are reported one by one from now on"
            )
        return list(zip(p.upstream, range(first, last + 1), strict=True))

    def _remote_topic(self, topic: str, partition: int) -> TopicInfo:
        """The remote topic, created (or grown) to the source's partition count before anything is sent."""
        remote = self.policy.format_remote_topic(self.flow.source, topic)
        info = self.clients.topic_info(self.flow.target, remote)
        if info is not None and info.partitions > partition:
            return info
        source = self.clients.topic_info(self.flow.source, topic, refresh=True)
        partitions = max(partition + 1, source.partitions if source else 0)
        logger.info(
            "creating remote topic",
            extra={"topic": remote, "cluster": self.flow.target, "partitions": partitions},
        )
        return self.clients.ensure_topic(self.flow.target, remote, partitions, self.flow.settings.replication_factor)

    def _producer(self, alias: str, max_message_bytes: int | None = None) -> RecordProducer:
        """The data path's producer; its batches stay within the remote topic's ``max.message.bytes``."""
        return self.clients.record_producer(alias, self.flow.settings.producer_backend, max_message_bytes)

    def _dead_letter(
        self, producer: RecordProducer, record: SourceRecord, remote: str, size: int, limit: int
    ) -> Delivery:
        """Apply ``smm.oversized.record.action``: fail the batch, or send the record's coordinates aside."""
        where = f"{record.topic}-{record.partition}@{record.offset}"
        if self.flow.settings.oversized_record_action == "fail":
            raise OversizedRecordError(
                f"record {where} is {size} bytes framed, larger than max.message.bytes={limit} of remote topic "
                f"{remote!r} on cluster {self.flow.target!r}; raise the remote topic's max.message.bytes, or set "
                f"smm.oversized.record.action=dead-letter to record it in {self.flow.settings.dead_letter_topic!r}"
            )
        dlq = self.flow.settings.dead_letter_topic
        self.clients.ensure_topic(self.flow.target, dlq, 1, self.flow.settings.replication_factor)
        # The record itself does not fit; its coordinates and headers do, so nothing disappears silently.
        headers = [
            *record.headers,
            ("smm.source.cluster", self.flow.source.encode()),
            ("smm.source.topic", record.topic.encode()),
            ("smm.source.partition", str(record.partition).encode()),
            ("smm.source.offset", str(record.offset).encode()),
            ("smm.size", str(size).encode()),
            ("smm.reason", f"larger than max.message.bytes={limit} of {remote}".encode()),
        ]
        logger.error("record larger than the remote topic allows: dead-lettered", extra={"record": where})
        return producer.send(dlq, record.key, None, headers, 0, record.timestamp)

    def _observe_heartbeats(self, batch: Sequence[SourceRecord], now_ms: int, report: BatchReport) -> None:
        """MM2's replication-latency-ms: how long each heartbeat took to get here."""
        for record in batch:
            heartbeat = Heartbeat.parse(record.key, record.value)
            if heartbeat is not None:
                report.replication_latency_ms.append(now_ms - heartbeat.timestamp)

    def _write_offset_syncs(
        self, acked: list[tuple[str, int, list[tuple[int, int]]]], report: BatchReport
    ) -> dict[tuple[str, int], PartitionState]:
        states: dict[tuple[str, int], PartitionState] = {}
        if not self.flow.settings.emit_offset_syncs_enabled:
            return states
        cluster = self.flow.offset_syncs_cluster()
        topic_name = self.flow.offset_syncs_topic()
        deliveries: list[Delivery] = []
        producer = self._producer(cluster)
        for topic, partition, pairs in acked:
            if not pairs:
                continue
            syncs, states[(topic, partition)] = self.planner.plan(topic, partition, pairs)
            if not syncs:
                continue
            if not deliveries:
                self.clients.ensure_topic(
                    cluster,
                    topic_name,
                    1,
                    self.flow.settings.offset_syncs_topic_replication_factor,
                    {"cleanup.policy": "compact"},
                )
            now_ms = int(time.time() * 1000)
            deliveries.extend(producer.send(topic_name, s.record_key(), s.record_value(), [], 0, now_ms) for s in syncs)
        if deliveries:
            producer.flush()
        report.offset_syncs += len(_acknowledged(deliveries, f"writing offset syncs to {topic_name!r} on {cluster!r}"))
        return states

    def _detect_gaps(self, partitions: list[_PartitionBatch], report: BatchReport) -> None:
        jumps: dict[TopicPartition, tuple[int, int]] = {}
        for (topic, partition), batch in partitions:
            expected = self._expected_offset(topic, partition)
            if expected is not None and batch[0].offset > expected:
                jumps[TopicPartition(topic, partition)] = (expected, batch[0].offset)
        if not jumps:
            return
        log_starts = self.clients.earliest_offsets(self.flow.source, jumps)
        now_ms = int(time.time() * 1000)
        events: list[GapEvent] = []
        for tp, (expected, first) in jumps.items():
            lost = unexplained_gap(expected, first, log_starts.get(tp, expected))
            if lost:
                events.append(GapEvent(tp.topic, tp.partition, expected, first, lost, now_ms))
                logger.error(
                    "records were deleted from the source before they were mirrored",
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "expected_offset": expected,
                        "first_offset": first,
                        "lost_records": lost,
                    },
                )
        if events:
            self._record_gaps(events)
            report.gaps += len(events)
            report.gap_records += sum(e.lost_records for e in events)

    def _record_gaps(self, events: list[GapEvent]) -> None:
        """Keep the gaps in the target's ``mm2-gaps.<source>.internal``, where ``smm status`` finds them."""
        topic = gaps_topic(self.flow)
        s = self.flow.settings
        self.clients.ensure_topic(
            self.flow.target, topic, 1, s.checkpoints_topic_replication_factor, {"cleanup.policy": "delete"}
        )
        producer = self._producer(self.flow.target)
        sent = [producer.send(topic, e.record_key(), e.record_value(), [], 0, e.detected_ms) for e in events]
        producer.flush()
        _acknowledged(sent, f"recording gaps in {topic!r} on {self.flow.target!r}")

    def _expected_offset(self, topic: str, partition: int) -> int | None:
        """Next offset this flow should see: remembered from the last batch, else the ESM group's commit."""
        key = (topic, partition)
        if key not in self._next_offset:
            group = self.flow.consumer_group_id(topic)
            try:
                committed = self.clients.committed_offsets(self.flow.source, group)
            except KafkaError as exc:  # a gap check is not worth failing the batch: try again next batch
                logger.warning("cannot read the ESM group's offsets", extra={"group": group, "error": str(exc)})
                return None
            for tp, offset in committed.items():
                if tp.topic == topic:
                    self._next_offset.setdefault((topic, tp.partition), offset)
        return self._next_offset.get(key)


def _acknowledged(deliveries: Sequence[Delivery], what: str) -> list[int]:
    """Offsets of flushed sends; the first failure fails the batch."""
    for delivery in deliveries:
        if delivery.failed():
            raise MirrorError(f"{what} failed: {type(delivery.exception).__name__}: {delivery.exception}")
    return [delivery.offset for delivery in deliveries]
