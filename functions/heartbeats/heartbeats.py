"""MM2's heartbeat emitter (``MirrorHeartbeatTask``): ``Heartbeat(source, target, now)`` into target ``heartbeats``.

As in MM2's dedicated mode, every pair with ``emit.heartbeats.enabled`` (default true) emits, whether or not
``A->B.enabled`` is set: the emitter only writes to the target, and a heartbeat in B proves B is reachable for
pair A->B. Where A->B is enabled the mirror copies A's ``heartbeats`` to ``A.heartbeats`` on B and turns the
heartbeat timestamps into the replication-latency metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from functions.config_sync.rules import COMPACT, heartbeats_topic
from shared.kafka.clients import ClusterError, KafkaClients
from shared.mm2.config import FlowConfig, MirrorConfig
from shared.mm2.formats import Heartbeat

SEND_TIMEOUT_SECONDS = 30.0

Clock = Callable[[], int]  # milliseconds since the epoch


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class HeartbeatError(ClusterError):
    """A heartbeat could not be written; the message names the flow, the cluster and the reason."""


def emitting_flows(config: MirrorConfig) -> list[FlowConfig]:
    """Every pair that emits heartbeats: ``emit.heartbeats.enabled``, regardless of ``enabled`` (MM2's rule)."""
    return [f for f in config.flows if f.settings.emit_heartbeats_enabled]


class HeartbeatTask:
    """The scheduled heartbeat role of one pair (``functions.scheduled.ScheduledTask``)."""

    name = "heartbeats"

    def __init__(self, flow: FlowConfig, clients: KafkaClients, clock_ms: Clock = wall_clock_ms) -> None:
        self.flow = flow
        self.clients = clients
        self.topic = heartbeats_topic(flow)
        self._clock_ms = clock_ms

    def interval_seconds(self) -> float:
        return float(self.flow.settings.emit_heartbeats_interval_seconds)

    def run_once(self) -> dict[str, Any]:
        topic = self.topic
        # Cached by KafkaClients after the first call: one describe per container, not per heartbeat.
        self.clients.ensure_topic(topic.cluster, topic.name, 1, topic.replication_factor, COMPACT)
        heartbeat = Heartbeat(self.flow.source, self.flow.target, self._clock_ms())
        producer = self.clients.producer(topic.cluster)
        future = producer.send(topic.name, key=heartbeat.record_key(), value=heartbeat.record_value(), partition=0)
        try:
            metadata = future.get(timeout=SEND_TIMEOUT_SECONDS)
        except KafkaError as exc:
            raise HeartbeatError(
                f"heartbeat of flow {self.flow.name} to {topic.name!r} on cluster {topic.cluster!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return {"flow": self.flow.name, "timestamp": heartbeat.timestamp, "offset": metadata.offset}


def task_for(flow: FlowConfig, clients: KafkaClients) -> HeartbeatTask:
    """The heartbeat task of pair ``flow`` (callers decide whether the pair emits: ``emitting_flows``)."""
    return HeartbeatTask(flow, clients)
