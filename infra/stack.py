"""The whole deployment in one stack: configuration parameter, secrets, the four function kinds, observability,
and the deploy-time config-sync run that creates the event-source mappings (the stack declares none)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack, Tags
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.constructs.checkpoints import Checkpoints
from infra.constructs.config_sync import ConfigSync
from infra.constructs.deploy_hook import DeployHook
from infra.constructs.function import FunctionContext
from infra.constructs.heartbeats import Heartbeats
from infra.constructs.mirror import MirrorFunction
from infra.constructs.observability import Observability
from infra.constructs.secrets import ClusterSecrets
from infra.permissions import acknowledge
from infra.settings import Deployment, SettingsError
from shared.aws import config_source

STANDARD_PARAMETER_BYTES = 4096
ADVANCED_PARAMETER_BYTES = 8192
# A token renders short at synth time; its deployed value (an ARN or a function name) is at most this long.
_TOKEN_ALLOWANCE = 140


class MirrorMakerStack(Stack):
    """Serverless MirrorMaker for one ``mm2.properties`` and its deploy settings."""

    def __init__(
        self, scope: Construct, construct_id: str, *, deployment: Deployment, code: lambda_.Code, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.deployment = deployment
        name = deployment.settings.name
        Tags.of(self).add("smm:deployment", name)

        self.config_parameter = self._parameter(
            "Configuration",
            f"/{name}/mm2.properties",
            deployment.config_text,
            "Serverless MirrorMaker configuration (mm2.properties); edits take effect without a redeploy",
            # Parameter Store picks the tier per write made with this tier: past 4 KB (the file growing, or a
            # console edit) it becomes advanced instead of failing, and it costs nothing while it fits 4 KB.
            tier=ssm.ParameterTier.INTELLIGENT_TIERING,
        )
        self.secrets = ClusterSecrets(self, "Secrets", deployment)
        ctx = FunctionContext(deployment, code, self.config_parameter, self.secrets)

        self.failure_queue = self._failure_queue()
        self.mirrors = [
            MirrorFunction(self, f"Flow-{flow.name}", ctx=ctx, flow=flow, failure_queue=self.failure_queue)
            for flow in deployment.mirrored_flows
        ]
        templates = {m.flow.name: m.template for m in self.mirrors}
        event_sources = self.to_json_string(config_source.event_sources_json(templates))
        self.event_sources_parameter = self._parameter(
            "EventSources",
            f"/{name}/event-sources.json",
            event_sources,
            "Serverless MirrorMaker: what the event-source mappings of each flow share (written by the stack)",
        )
        self.config_sync = ConfigSync(
            self, "ConfigSync", ctx=ctx, mirrors=self.mirrors, event_sources=self.event_sources_parameter
        )
        needs = [self.config_parameter, self.event_sources_parameter, self.secrets]
        self.deploy_hook = DeployHook(
            self,
            "DeployHook",
            deployment=deployment,
            config_sync=self.config_sync,
            mirrors=self.mirrors,
            event_sources=event_sources,
            needs=[*needs, self.failure_queue] if self.failure_queue else needs,
        )
        self.heartbeats = Heartbeats(self, "Heartbeats", ctx=ctx)
        self.checkpoints = Checkpoints(self, "Checkpoints", ctx=ctx)
        scheduled = [self.config_sync.scheduled, self.heartbeats.scheduled, self.checkpoints.scheduled]
        self.observability = Observability(
            self,
            "Observability",
            name=name,
            mirrors=self.mirrors,
            scheduled=scheduled,
            alarms=deployment.settings.alarms,
            config=deployment.config,
            heartbeats=self.heartbeats.scheduled,
            config_sync=self.config_sync.scheduled,
            failure_queue=self.failure_queue,
        )

        CfnOutput(self, "ConfigurationParameter", value=self.config_parameter.parameter_name)
        CfnOutput(self, "Dashboard", value=self.observability.dashboard.dashboard_name)
        for mirror in self.mirrors:
            CfnOutput(
                self,
                f"MirrorFunction-{mirror.flow.name}",
                description=f"mirror function of {mirror.flow.name}",
                value=mirror.function.function_name,
            )

    def _parameter(
        self,
        construct_id: str,
        name: str,
        value: str,
        description: str,
        tier: ssm.ParameterTier | None = None,
    ) -> ssm.StringParameter:
        """A String parameter in ``tier``, by default the smallest its value fits (standard: 4 KB, advanced: 8 KB)."""
        size = len(value.encode()) + _TOKEN_ALLOWANCE * value.count("${Token[")
        if size > ADVANCED_PARAMETER_BYTES:
            raise SettingsError([f"{name}: about {size} bytes; an SSM parameter holds at most 8 KB"])
        if tier is None:
            tier = ssm.ParameterTier.STANDARD if size <= STANDARD_PARAMETER_BYTES else ssm.ParameterTier.ADVANCED
        return ssm.StringParameter(
            self, construct_id, parameter_name=name, string_value=value, description=description, tier=tier
        )

    def _failure_queue(self) -> sqs.Queue | None:
        """The queue of ``on_failure: "sqs"``: metadata of batches the event sources gave up on."""
        settings = self.deployment.settings
        wanted = [settings.event_source_for(f.name).on_failure for f in self.deployment.mirrored_flows]
        if "sqs" not in wanted:
            return None
        queue = sqs.Queue(
            self,
            "FailedBatches",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "this queue is itself the dead-letter destination of the event-source mappings",
        )
        return queue
