"""Heartbeats: MM2 ``Heartbeat`` records into the ``heartbeats`` topic of each pair's target, and each enabled
flow's health (the age of the newest heartbeat that crossed it, the source lag of its mappings' groups).

MM2 emits every second by default; a schedule fires at most once a minute, so for a sub-minute interval the
function loops inside each one-minute invocation (``ScheduledFunction``).
"""

from __future__ import annotations

from constructs import Construct

from functions.heartbeats import health
from infra import permissions as p
from infra.constructs.function import FunctionContext
from infra.constructs.scheduled import ScheduledFunction, schedule_period
from shared.mm2.policy import HEARTBEATS_TOPIC

HANDLER = "functions.heartbeats.handler.lambda_handler"


class Heartbeats(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, ctx: FunctionContext) -> None:
        super().__init__(scope, construct_id)
        # MM2 emits Heartbeat(A, B) into B for every pair with emit.heartbeats.enabled, enabled flow or not.
        flows = [f for f in ctx.deployment.config.flows if f.settings.emit_heartbeats_enabled]
        measured = list(ctx.deployment.enabled_flows)
        wanted = [f.settings.emit_heartbeats_interval_seconds for f in flows]
        period = schedule_period(wanted, default=60)
        self.scheduled = ScheduledFunction(
            self,
            "Heartbeats",
            ctx=ctx,
            kind="heartbeats",
            handler=HANDLER,
            description="heartbeats of every flow",
            period_seconds=period,
            flows=[*flows, *(f for f in measured if f not in flows)],
            loops=min(wanted, default=period) < period,
        )
        self.function = self.scheduled.function
        accesses: dict[str, p.KafkaAccess] = {}
        for flow in flows:
            accesses.setdefault(flow.target, p.KafkaAccess()).on_cluster(p.WRITE_IDEMPOTENTLY).on_topics(
                [HEARTBEATS_TOPIC], p.CREATE_TOPIC, p.DESCRIBE_TOPIC, p.WRITE
            )
        for flow in measured:  # functions/heartbeats/monitor.py: offsets of the source, groups, crossed heartbeats
            accesses.setdefault(flow.source, p.KafkaAccess()).on_topics(["*"], p.DESCRIBE_TOPIC).on_groups(
                [f"{flow.consumer_group_id('')}*"], p.DESCRIBE_GROUP
            )
            accesses.setdefault(flow.target, p.KafkaAccess()).on_topics(
                [health.remote_heartbeats_topic(flow)], p.DESCRIBE_TOPIC, p.READ
            )
        p.grant_kafka_access(
            self.scheduled.smm.role,
            ctx.deployment,
            accesses,
            "the heartbeats topics, and what a flow's health is read from: source topic offsets (any topic the "
            "console-editable filter may select), the flow's own mapping groups, its crossed heartbeats",
        )
