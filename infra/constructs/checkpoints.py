"""Checkpoints: translated consumer-group offsets of every flow (and, if enabled, group offset sync).

It reads the committed offsets of the source groups the (console-editable) group filter selects and the offset
syncs, writes ``<source>.checkpoints.internal`` on the target and, with ``sync.group.offsets.enabled``, the
offsets of idle target groups. Only a flow deployed with group offset sync on gets rights on its target's groups,
so switching it on in the console takes a redeploy.
"""

from __future__ import annotations

from constructs import Construct

from infra import permissions as p
from infra.constructs.function import FunctionContext
from infra.constructs.mirror import remote_topic_pattern
from infra.constructs.scheduled import ScheduledFunction, schedule_period
from shared.mm2.config import FlowConfig

HANDLER = "functions.checkpoints.handler.lambda_handler"


def intervals(flow: FlowConfig) -> list[int]:
    s = flow.settings
    return [
        seconds
        for enabled, seconds in (
            (s.emit_checkpoints_enabled, s.emit_checkpoints_interval_seconds),
            (s.sync_group_offsets_enabled, s.sync_group_offsets_interval_seconds),
        )
        if enabled
    ]


class Checkpoints(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, ctx: FunctionContext) -> None:
        super().__init__(scope, construct_id)
        flows = ctx.deployment.mirrored_flows
        self.scheduled = ScheduledFunction(
            self,
            "Checkpoints",
            ctx=ctx,
            kind="checkpoints",
            handler=HANDLER,
            description="checkpoints and consumer-group offset sync of every flow",
            period_seconds=schedule_period((i for f in flows for i in intervals(f)), default=60),
            flows=flows,
        )
        self.function = self.scheduled.function
        accesses: dict[str, p.KafkaAccess] = {}
        for flow in flows:
            source = accesses.setdefault(flow.source, p.KafkaAccess())
            target = accesses.setdefault(flow.target, p.KafkaAccess())
            p.internal_topics(source).on_topics(["*"], p.DESCRIBE_TOPIC).on_groups(["*"], p.DESCRIBE_GROUP)
            p.internal_topics(target).on_topics([remote_topic_pattern(flow)], p.DESCRIBE_TOPIC, p.READ).transactions(
                [flow.checkpoints_transactional_id()]
            )
            if flow.settings.sync_group_offsets_enabled:  # only group offset sync looks at or writes target groups
                target.on_groups(["*"], p.DESCRIBE_GROUP, p.ALTER_GROUP)
        p.grant_kafka_access(
            self.scheduled.smm.role,
            ctx.deployment,
            accesses,
            "checkpoints follow every consumer group the console-editable group filter selects",
        )
