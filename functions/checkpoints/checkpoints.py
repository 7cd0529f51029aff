"""The checkpoint function for one flow: MM2's ``MirrorCheckpointTask`` with every bit of state in Kafka.

Each run reads what is new in the offset-syncs topic and in ``<source>.checkpoints.internal`` (everything, after
a cold start), translates the committed offsets of the source's consumer groups, and emits a Checkpoint when
MM2's rules allow (``shared.mm2.offset_sync_store``). With ``sync.group.offsets.enabled`` it also moves idle
target groups forward to their checkpoints.

Two runs of the same flow at once are safe: checkpoints are written in a transaction whose id is fixed per
flow. Starting a run fences any older one, and the run reads the checkpoints topic only after that, so a run
whose commit succeeds has seen every checkpoint committed before it; a fenced run writes nothing.

Failback (a project extension; MM2 cannot translate it): a group on the source that consumed a remote topic
copied from the target (``A.t`` on B, for flow B->A) gets checkpoints for the original topic (``t`` on A),
translated backwards through the reverse flow's offset syncs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError, ProducerFencedError

from shared.kafka.clients import ClusterError, KafkaClients
from shared.kafka.groups import (
    GroupActiveError,
    TopicReader,
    alter_offsets,
    committed_offsets,
    group_offsets,
    list_groups,
    new_producer,
)
from shared.mm2.config import ConfigError, FlowConfig
from shared.mm2.formats import Checkpoint
from shared.mm2.offset_sync_store import CheckpointStore, OffsetSyncStore

logger = Logger(service="smm-checkpoints")

ESM_GROUP_PREFIX = "smm:"  # FlowConfig.consumer_group_id: the mirror's own groups, never checkpointed


class SyncView:
    """An ``OffsetSyncStore`` kept in step with one offset-syncs topic."""

    def __init__(self, clients: KafkaClients, alias: str, topic: str) -> None:
        self.alias = alias
        self.topic = topic
        self.store = OffsetSyncStore()
        self._reader = TopicReader(clients, alias, topic)

    def refresh(self) -> int:
        """Read what is new (everything after a cold start or a recreated topic); returns the records read."""
        batch = self._reader.read_new()
        if batch.restarted or not batch.exists:
            self.store.clear()
        for record in batch.records:
            self.store.add_record(record.key, record.value)
        self.store.mark_read_to_end()
        return len(batch.records)

    def close(self) -> None:
        self._reader.close()


@dataclass
class RunReport:
    """What one run did, for logs, metrics and ``smm run``'s progress lines."""

    flow: str
    groups: int = 0
    translated: int = 0
    untranslatable: int = 0
    emitted: list[Checkpoint] = field(default_factory=list)
    syncs_read: int = 0
    groups_synced: list[str] = field(default_factory=list)
    active_groups_left_alone: list[str] = field(default_factory=list)
    group_sync_errors: list[str] = field(default_factory=list)
    fenced: bool = False
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "groups": self.groups,
            "translated": self.translated,
            "untranslatable": self.untranslatable,
            "checkpoints": len(self.emitted),
            "offsetSyncsRead": self.syncs_read,
            "groupsSynced": self.groups_synced,
            "activeGroupsLeftAlone": self.active_groups_left_alone,
            "groupSyncErrors": self.group_sync_errors,
            "fenced": self.fenced,
            "skipped": self.skipped,
        }


class CheckpointTask:
    """Checkpoints (and optional group offset sync) of one flow; a ``functions.scheduled.ScheduledTask``."""

    name = "checkpoints"

    def __init__(self, flow: FlowConfig, clients: KafkaClients, clock: Callable[[], float] = time.time) -> None:
        self.flow = flow
        self.clients = clients
        self.clock = clock
        self.policy = flow.policy()
        self.selector = flow.topic_selector()
        self.group_filter = flow.group_filter()
        self.checkpoints_topic = self.policy.checkpoints_topic(flow.source)
        self.transactional_id = flow.checkpoints_transactional_id()
        self.syncs = SyncView(clients, flow.offset_syncs_cluster(), flow.offset_syncs_topic())
        self.reverse = _reverse_flow(flow, clients)
        self._reverse_syncs: SyncView | None = None
        self._reverse_fresh = False
        self.checkpoints = CheckpointStore()
        self._checkpoint_reader = TopicReader(clients, flow.target, self.checkpoints_topic)
        self._producer: KafkaProducer | None = None
        self._last_group_sync: float | None = None
        self._groups: list[str] | None = None  # the source's groups, as last listed (refresh.groups.*)
        self._groups_listed_at = 0.0

    def interval_seconds(self) -> float:
        return float(self.flow.settings.emit_checkpoints_interval_seconds)

    def run_once(self) -> dict[str, Any]:
        return self.run().as_dict()

    def run(self) -> RunReport:
        report = RunReport(self.flow.name)
        settings = self.flow.settings
        if not (settings.emit_checkpoints_enabled or settings.sync_group_offsets_enabled):
            report.skipped = "emit.checkpoints.enabled and sync.group.offsets.enabled are both false"
            return report
        self.clients.ensure_topic(
            self.flow.target,
            self.checkpoints_topic,
            1,
            settings.checkpoints_topic_replication_factor,
            {"cleanup.policy": "compact"},
        )
        # The producer's transaction fences older runs of this flow; it must be up before the checkpoints are read.
        producer = self._transactional_producer() if settings.emit_checkpoints_enabled else None
        new = self.pending(report)
        if producer is not None and new:
            if not self._emit(producer, new):
                report.fenced = True
                return report
            report.emitted = new
        if settings.sync_group_offsets_enabled and self._group_sync_due():
            self._sync_group_offsets(report)
        logger.info("checkpoint run", extra=report.as_dict())
        return report

    def pending(self, report: RunReport | None = None, groups: Callable[[str], bool] | None = None) -> list[Checkpoint]:
        """The checkpoints a run would emit now (also how failover tells stale checkpoints from current ones)."""
        report = report or RunReport(self.flow.name)
        self._reverse_fresh = False
        self._load_checkpoints()
        report.syncs_read = self.syncs.refresh()
        candidates = self._translate_groups(report, groups)
        return [c for c in candidates if self.checkpoints.should_emit(c)]

    def close(self) -> None:
        self.syncs.close()
        if self._reverse_syncs is not None:
            self._reverse_syncs.close()
        self._checkpoint_reader.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    # --- steps -------------------------------------------------------------------------------------------

    def _transactional_producer(self) -> KafkaProducer:
        if self._producer is None:
            producer = new_producer(
                self.clients,
                self.flow.target,
                transactional_id=self.transactional_id,
                client_id=f"smm-checkpoints-{self.flow.source}-{self.flow.target}",
            )
            try:
                producer.init_transactions()
            except KafkaError as exc:
                producer.close(timeout=5)
                raise ClusterError(
                    f"cannot start a transaction on cluster {self.flow.target!r} for {self.checkpoints_topic!r} "
                    f"(transactional id {self.transactional_id!r}): {type(exc).__name__}: {exc}; the checkpoint "
                    "function needs the cluster's transaction coordinator and permission to use that id"
                ) from None
            self._producer = producer
        return self._producer

    def _load_checkpoints(self) -> None:
        batch = self._checkpoint_reader.read_new()
        if batch.restarted or not batch.exists:
            self.checkpoints.clear()
        for record in batch.records:
            self.checkpoints.add_record(record.key, record.value)
        self.checkpoints.mark_loaded()

    def source_groups(self, also: Callable[[str], bool] | None = None) -> list[str]:
        """The source's consumer groups this flow checkpoints (the mirror's own ESM groups never).

        As MM2's checkpoint connector, the list is refreshed every ``refresh.groups.interval.seconds`` (and only
        once, at the start, with ``refresh.groups.enabled = false``); groups gone from it are not synced.
        """
        s = self.flow.settings
        now = self.clock()
        stale = s.refresh_groups_enabled and now - self._groups_listed_at >= s.refresh_groups_interval_seconds
        if self._groups is None or stale:
            self._groups = sorted(
                g
                for g in list_groups(self.clients, self.flow.source)
                if not g.startswith(ESM_GROUP_PREFIX) and self.group_filter.matches(g)
            )
            self._groups_listed_at = now
        return [g for g in self._groups if also is None or also(g)]

    def _translate_groups(self, report: RunReport, only: Callable[[str], bool] | None = None) -> list[Checkpoint]:
        groups = self.source_groups(only)
        report.groups = len(groups)
        candidates: list[Checkpoint] = []
        for group, offsets in committed_offsets(self.clients, self.flow.source, groups).items():
            for tp, (upstream, metadata) in sorted(offsets.items()):
                checkpoint = self.translate(group, tp, upstream, metadata)
                if checkpoint is None:
                    report.untranslatable += 1
                else:
                    report.translated += 1
                    candidates.append(checkpoint)
        return candidates

    def translate(self, group: str, tp: TopicPartition, upstream: int, metadata: str = "") -> Checkpoint | None:
        """The checkpoint for ``group`` at ``upstream`` on source partition ``tp``; None if not translatable."""
        if self.selector.should_replicate(tp.topic):
            downstream = self.syncs.store.translate_downstream(tp.topic, tp.partition, upstream)
            remote = self.policy.format_remote_topic(self.flow.source, tp.topic)
            if downstream is None:
                return None
            return Checkpoint(group, remote, tp.partition, upstream, downstream, metadata)
        origin = self.failback_topic(tp.topic)
        if origin is None:
            return None
        back = self.reverse_view().store.translate_upstream(origin, tp.partition, upstream)
        return None if back is None else Checkpoint(group, origin, tp.partition, upstream, back, metadata)

    def failback_topic(self, topic: str) -> str | None:
        """The target's original topic when ``topic`` is the reverse flow's copy of it, else None."""
        if self.reverse is None or self.policy.topic_source(topic) != self.flow.target:
            return None
        origin = self.policy.upstream_topic(topic)
        if origin is None or not self.reverse.topic_selector().should_replicate(origin):
            return None
        return origin

    def reverse_view(self) -> SyncView:
        """The reverse flow's offset syncs, read on the first failback translation of each run."""
        if self.reverse is None:
            raise ConfigError([f"flow {self.flow.name} has no reverse flow to translate failback offsets with"])
        if self._reverse_syncs is None:
            self._reverse_syncs = SyncView(
                self.clients, self.reverse.offset_syncs_cluster(), self.reverse.offset_syncs_topic()
            )
        if not self._reverse_fresh:
            self._reverse_syncs.refresh()
            self._reverse_fresh = True
        return self._reverse_syncs

    def _emit(self, producer: KafkaProducer, checkpoints: list[Checkpoint]) -> bool:
        """Write ``checkpoints`` in one transaction; False when a newer run of this flow fenced this one."""
        try:
            producer.begin_transaction()
            for c in checkpoints:
                producer.send(self.checkpoints_topic, key=c.record_key(), value=c.record_value(), partition=0)
            producer.commit_transaction()
        except ProducerFencedError:
            self._drop_producer()
            logger.warning("another run of this flow's checkpoint function took over; this run wrote nothing")
            return False
        except KafkaError as exc:
            self._drop_producer()
            raise ClusterError(
                f"writing {len(checkpoints)} checkpoint(s) to {self.checkpoints_topic!r} on cluster "
                f"{self.flow.target!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        for c in checkpoints:
            self.checkpoints.update(c)
        return True

    def _drop_producer(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=0)
            self._producer = None

    def _group_sync_due(self) -> bool:
        now = self.clock()
        interval = self.flow.settings.sync_group_offsets_interval_seconds
        if self._last_group_sync is not None and now - self._last_group_sync < interval:
            return False
        self._last_group_sync = now
        return True

    def _sync_group_offsets(self, report: RunReport) -> None:
        """MM2's group offset sync: idle target groups only, only forward, only onto topics that exist there.

        A group that cannot be written is logged and counted; the other groups are still synced.
        """
        target_groups = list_groups(self.clients, self.flow.target)
        existing = set(self.clients.topics(self.flow.target))
        current = set(self.source_groups())  # MM2 syncs the groups of its current assignment only
        for group in sorted(self.checkpoints.groups()):
            if group not in current:
                continue
            info = target_groups.get(group)
            if info is not None and not info.idle:
                report.active_groups_left_alone.append(group)
                continue
            committed = group_offsets(self.clients, self.flow.target, group)
            ahead = {
                tp: (c.downstream_offset, c.metadata)
                for c in self.checkpoints.for_group(group)
                if c.topic in existing
                and c.downstream_offset > committed.get(tp := TopicPartition(c.topic, c.partition), -1)
            }
            if not ahead:
                continue
            try:
                alter_offsets(self.clients, self.flow.target, group, ahead)
            except GroupActiveError:
                report.active_groups_left_alone.append(group)
                continue
            except ClusterError as exc:
                logger.error("group offset sync failed", extra={"group": group, "error": str(exc)})
                report.group_sync_errors.append(f"{group}: {exc}")
                continue
            report.groups_synced.append(group)


def _reverse_flow(flow: FlowConfig, clients: KafkaClients) -> FlowConfig | None:
    try:
        return clients.config.flow(flow.target, flow.source)
    except ConfigError:
        return None


def task_for(flow: FlowConfig, clients: KafkaClients) -> CheckpointTask:
    """The checkpoint task of ``flow`` (``functions.scheduled`` contract)."""
    return CheckpointTask(flow, clients)
