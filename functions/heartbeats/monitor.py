"""Measures of one flow's health, read from the clusters (rules in ``functions.heartbeats.health``).

One measurement costs a handful of requests whatever the number of topics: one topic listing and two
list-offsets requests on the source (end and log-start offsets of every mirrored partition at once), one
committed-offsets request for all the flow's mapping groups (one per coordinator), and a read of the last
records of the remote heartbeats topic on the target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from kafka import TopicPartition
from kafka.errors import KafkaError

from functions.config_sync.rules import mirrored_topics
from functions.heartbeats import health
from functions.heartbeats.heartbeats import Clock, wall_clock_ms
from shared.kafka import admin_sync
from shared.kafka.clients import ClusterError, KafkaClients
from shared.kafka.groups import committed_offsets, read_tail
from shared.mm2.config import FlowConfig, MirrorConfig

# Offsets per partition of the remote heartbeats topic read back for the newest heartbeat: every emitting pair
# into the source writes one per interval, so the newest is among the last few whatever their number.
HEARTBEAT_TAIL = 50

logger = Logger(service="smm-heartbeats")


class FlowHealthTask:
    """The health measures of one flow (``functions.scheduled.ScheduledTask``), once per call of ``run_once``.

    The heartbeat age is measured only where heartbeats cross (``heartbeats``). ``heartbeatAgeMs`` is None
    when none has crossed yet (the remote topic is missing or empty): no value is published then, and the alarm
    treats the missing value as a stall.
    """

    name = "flow-health"

    def __init__(
        self, flow: FlowConfig, clients: KafkaClients, heartbeats: bool, clock_ms: Clock = wall_clock_ms
    ) -> None:
        self.flow = flow
        self.clients = clients
        self.heartbeats = heartbeats
        self._clock_ms = clock_ms

    def interval_seconds(self) -> float:
        return float(max(60, self.flow.settings.emit_heartbeats_interval_seconds))

    def run_once(self) -> dict[str, Any]:
        """The flow's measures; one that cannot be taken (a cluster unreachable, a permission missing) is
        logged and left out, so it neither hides the other nor fails the heartbeats."""
        summary: dict[str, Any] = {"flow": self.flow.name}
        measures: list[tuple[str, Callable[[], int | None]]] = [("sourceLag", self._source_lag)]
        if self.heartbeats:
            measures.append(("heartbeatAgeMs", self._heartbeat_age_ms))
        for key, measure in measures:
            try:
                summary[key] = measure()
            except (ClusterError, KafkaError, OSError) as exc:
                summary.setdefault("errors", []).append(f"{key}: {type(exc).__name__}: {exc}")
                logger.warning(
                    "flow health measure failed", extra={"flow": self.flow.name, "measure": key, "error": str(exc)}
                )
        return summary

    def _source_lag(self) -> int:
        flow = self.flow
        counts = admin_sync.partition_counts(self.clients, flow.source)
        topics = mirrored_topics(flow, counts)
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(counts[topic])]
        ends = self.clients.latest_offsets(flow.source, partitions)
        starts = self.clients.earliest_offsets(flow.source, partitions)
        groups = {topic: flow.consumer_group_id(topic) for topic in topics}
        by_group = committed_offsets(self.clients, flow.source, groups.values())
        committed = {
            tp: offset
            for topic, group in groups.items()
            for tp, (offset, _) in by_group.get(group, {}).items()
            if tp.topic == topic
        }
        return health.source_lag(ends, starts, committed, flow.settings.starting_position == "TRIM_HORIZON")

    def _heartbeat_age_ms(self) -> int | None:
        tail = read_tail(self.clients, self.flow.target, health.remote_heartbeats_topic(self.flow), HEARTBEAT_TAIL)
        newest = health.newest_heartbeat_ms((r.key, r.value) for r in tail)
        return None if newest is None else max(0, self._clock_ms() - newest)


def tasks_for(config: MirrorConfig, clients: KafkaClients) -> dict[str, FlowHealthTask]:
    """A health task per enabled flow, by flow name; the heartbeat age where heartbeats cross it."""
    crossed = {f.name for f in health.measured_flows(config)}
    return {f.name: FlowHealthTask(f, clients, f.name in crossed) for f in config.flows if f.enabled}
