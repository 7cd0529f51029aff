"""Config sync: topics, partitions, configs and ACLs of every flow, and the event-source mappings of its topics.

Its role may manage event-source mappings only of this deployment's mirror functions (``lambda:FunctionArn``
condition), which is all config sync needs to follow regex topic filters and console edits.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra import permissions as p
from infra.constructs.function import FunctionContext
from infra.constructs.mirror import MirrorFunction, remote_topic_pattern
from infra.constructs.scheduled import ScheduledFunction, schedule_period
from shared.aws import config_source
from shared.mm2.config import FlowConfig

HANDLER = "functions.config_sync.handler.lambda_handler"
ESM_READ_ACTIONS = ("lambda:GetEventSourceMapping",)
ESM_WRITE_ACTIONS = ("lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping")


def intervals(flow: FlowConfig) -> list[int]:
    s = flow.settings
    return [
        seconds
        for enabled, seconds in (
            (s.refresh_topics_enabled, s.refresh_topics_interval_seconds),
            (s.sync_topic_configs_enabled, s.sync_topic_configs_interval_seconds),
            (s.sync_topic_acls_enabled, s.sync_topic_acls_interval_seconds),
        )
        if enabled
    ]


class ConfigSync(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ctx: FunctionContext,
        mirrors: Sequence[MirrorFunction],
        event_sources: ssm.IStringParameter,
    ) -> None:
        super().__init__(scope, construct_id)
        flows = ctx.deployment.mirrored_flows
        self.scheduled = ScheduledFunction(
            self,
            "ConfigSync",
            ctx=ctx,
            kind="config-sync",
            handler=HANDLER,
            description="config sync: remote topics, configs, ACLs and event-source mappings",
            period_seconds=schedule_period((i for f in flows for i in intervals(f)), default=600),
            flows=flows,
        )
        self.function = self.scheduled.function
        role = self.scheduled.smm.role
        self.function.add_environment(config_source.EVENT_SOURCES_PARAMETER_ENV, event_sources.parameter_name)
        event_sources.grant_read(role)
        if mirrors:
            self._grant_event_source_mappings(mirrors)
        accesses: dict[str, p.KafkaAccess] = {}
        for flow in flows:
            source = accesses.setdefault(flow.source, p.KafkaAccess())
            target = accesses.setdefault(flow.target, p.KafkaAccess())
            p.internal_topics(source.on_cluster(p.DESCRIBE_CLUSTER)).on_topics(
                ["*"], p.DESCRIBE_TOPIC, p.DESCRIBE_TOPIC_CONFIG
            )
            p.internal_topics(target.on_cluster(p.DESCRIBE_CLUSTER)).on_topics(
                [remote_topic_pattern(flow)],
                p.CREATE_TOPIC,
                p.ALTER_TOPIC,
                p.DESCRIBE_TOPIC,
                p.DESCRIBE_TOPIC_CONFIG,
                p.ALTER_TOPIC_CONFIG,
            )
        p.grant_kafka_access(
            role,
            ctx.deployment,
            accesses,
            "config sync lists the source topics any (console-editable) topic filter may select and keeps "
            "their remote topics and MM2's internal topics",
        )

    def _grant_event_source_mappings(self, mirrors: Sequence[MirrorFunction]) -> None:
        role = self.scheduled.smm.role
        functions = {"ArnEquals": {"lambda:FunctionArn": [m.function.function_arn for m in mirrors]}}
        mappings = Stack.of(self).format_arn(
            service="lambda",
            resource="event-source-mapping",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        p.allow(role, ["lambda:ListEventSourceMappings"], ["*"], wildcard_reason=_LIST_REASON)
        p.allow(role, ["lambda:CreateEventSourceMapping"], ["*"], conditions=functions, wildcard_reason=_CREATE_REASON)
        p.allow(role, list(ESM_WRITE_ACTIONS), [mappings], conditions=functions, wildcard_reason=_MAPPING_REASON)
        p.allow(role, list(ESM_READ_ACTIONS), [mappings], wildcard_reason=_MAPPING_REASON)


_LIST_REASON = "ListEventSourceMappings has no resource-level permissions"
_CREATE_REASON = (
    "a mapping's ARN is chosen by Lambda at creation; the lambda:FunctionArn condition holds creation to this "
    "deployment's mirror functions"
)
_MAPPING_REASON = (
    "mapping UUIDs are chosen by Lambda when config sync creates them; changes are held to this deployment's "
    "mirror functions by the lambda:FunctionArn condition"
)
