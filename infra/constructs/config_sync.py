"""Config sync: topics, partitions, configs and ACLs of every flow, and the event-source mappings of its topics.

Config sync is the only owner of the mirror functions' event-source mappings: it creates them tagged with the
deployment and the flow (``config_source.DEPLOYMENT_TAG``/``FLOW_TAG``), reads tags to tell its own from others,
and updates, replaces or deletes only its own. Its role may change mappings only of this deployment's mirror
functions (``lambda:FunctionArn`` condition) and tag them only with this deployment's tags. It also creates a
flow's ``kafka://TOPIC`` failure topic on the source cluster, where Lambda writes failed records.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra import permissions as p
from infra.constructs.function import FunctionContext
from infra.constructs.mirror import MirrorFunction, kafka_failure_topic, remote_topic_pattern
from infra.constructs.scheduled import ScheduledFunction, schedule_period
from shared.aws import config_source
from shared.mm2.config import FlowConfig

HANDLER = "functions.config_sync.handler.lambda_handler"
ESM_READ_ACTIONS = ("lambda:GetEventSourceMapping", "lambda:ListTags")
ESM_WRITE_ACTIONS = ("lambda:UpdateEventSourceMapping", "lambda:DeleteEventSourceMapping")
# Also what CreateEventSourceMapping with Tags needs (tag on create).
ESM_TAG_ACTION = "lambda:TagResource"


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
            self._grant_event_source_mappings(mirrors, ctx.deployment.settings.name)
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
        for mirror in mirrors:
            failure_topic = kafka_failure_topic(mirror.template)
            if failure_topic:  # Lambda writes failed records there, on the source cluster; config sync creates it
                accesses[mirror.flow.source].on_topics(
                    [failure_topic], p.CREATE_TOPIC, p.DESCRIBE_TOPIC, p.DESCRIBE_TOPIC_CONFIG
                )
        p.grant_kafka_access(
            role,
            ctx.deployment,
            accesses,
            "config sync lists the source topics any (console-editable) topic filter may select and keeps "
            "their remote topics and MM2's internal topics",
        )

    def _grant_event_source_mappings(self, mirrors: Sequence[MirrorFunction], deployment: str) -> None:
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
        # TagResource has no lambda:FunctionArn key: what it may write is held to this deployment's own tags.
        ours = {
            "StringEquals": {f"aws:RequestTag/{config_source.DEPLOYMENT_TAG}": deployment},
            "ForAllValues:StringEquals": {"aws:TagKeys": [config_source.DEPLOYMENT_TAG, config_source.FLOW_TAG]},
        }
        p.allow(role, [ESM_TAG_ACTION], [mappings], conditions=ours, wildcard_reason=_TAG_REASON)


_LIST_REASON = "ListEventSourceMappings has no resource-level permissions"
_CREATE_REASON = (
    "a mapping's ARN is chosen by Lambda at creation; the lambda:FunctionArn condition holds creation to this "
    "deployment's mirror functions"
)
_MAPPING_REASON = (
    "mapping UUIDs are chosen by Lambda when config sync creates them; changes are held to this deployment's "
    "mirror functions by the lambda:FunctionArn condition, and reading a mapping's tags is how config sync tells "
    "its own mappings from any other"
)
_TAG_REASON = (
    "mapping UUIDs are chosen by Lambda when config sync creates them; tags are held to this deployment's name "
    "and tag keys by the aws:RequestTag and aws:TagKeys conditions (a tag grants no change: that needs "
    "lambda:FunctionArn)"
)
