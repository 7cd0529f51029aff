"""One Lambda function of the deployment, set up the way all four kinds share.

Each function gets its own role (no AWS managed policies: every grant is scoped and visible), its own log group
with a retention, the Powertools environment, the configuration parameter and the secrets of the clusters it
talks to, and the deployment's VPC if there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.constructs.secrets import ClusterSecrets
from infra.permissions import (
    FUNCTION_ENI_ACTIONS,
    POLLER_ENI_ACTIONS,
    acknowledge,
    allow,
    grant_config_references,
)
from infra.settings import RETENTION_DAYS, Deployment
from shared.aws import config_source, secrets

METRICS_NAMESPACE = "ServerlessMirrorMaker"
_RUNTIMES = {"python3.13": lambda_.Runtime.PYTHON_3_13, "python3.14": lambda_.Runtime.PYTHON_3_14}
_ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
_LATEST_RUNTIME = "python3.14"
# RetentionDays lists the periods CloudWatch Logs accepts in ascending order, then INFINITE.
_RETENTION = dict(zip(RETENTION_DAYS, list(logs.RetentionDays)[:-1], strict=True))


@dataclass(frozen=True)
class FunctionContext:
    """What every function of a deployment is built with."""

    deployment: Deployment
    code: lambda_.Code
    config_parameter: ssm.IStringParameter
    secrets: ClusterSecrets


class SmmFunction(Construct):
    """A function of kind ``kind`` (mirror, config-sync, ...) that talks to the clusters ``aliases``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ctx: FunctionContext,
        kind: str,
        handler: str,
        description: str,
        aliases: Iterable[str],
        environment: Mapping[str, str] | None = None,
        async_max_age: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = ctx.deployment.settings
        sizing = settings.functions[kind.replace("-", "_")]
        aliases = set(aliases)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Serverless MirrorMaker {settings.name}: {description}",
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=_RETENTION[settings.log_retention_days])
        network = settings.network
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"Serverless MirrorMaker {settings.name}: {description}",
            code=ctx.code,
            handler=handler,
            runtime=_RUNTIMES[settings.runtime],
            architecture=_ARCHITECTURES[settings.architecture],
            memory_size=sizing.memory_mb,
            timeout=Duration.seconds(sizing.timeout_seconds),
            role=self.role,
            log_group=self.log_group,
            environment={**self._environment(ctx, kind, aliases), **(environment or {})},
            # Scheduled invocations are asynchronous: a late one is superseded by the next schedule.
            retry_attempts=0 if async_max_age else None,
            max_event_age=async_max_age,
        )
        self.log_group.grant_write(self.role)
        ctx.config_parameter.grant_read(self.role)
        ctx.secrets.grant_read(self.role, aliases)
        grant_config_references(self.role, ctx.deployment)
        if network:
            # Subnet and security-group ids straight into the template: no VPC lookup, so synth stays offline.
            cfn = cast(lambda_.CfnFunction, self.function.node.default_child)
            cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
                subnet_ids=list(network.subnet_ids), security_group_ids=list(network.security_group_ids)
            )
            self.allow_network_interfaces()
        if settings.runtime != _LATEST_RUNTIME:
            acknowledge(
                self.function, "AwsSolutions-L1", f"runtime {settings.runtime} is pinned by the deploy settings"
            )

    def allow_network_interfaces(self, pollers: bool = False) -> None:
        """ENIs in the VPC for the function itself, or (``pollers``) for the Kafka event-source pollers."""
        actions = POLLER_ENI_ACTIONS if pollers else FUNCTION_ENI_ACTIONS
        allow(
            self.role,
            actions,
            ["*"],
            wildcard_reason="EC2 network-interface and VPC-describe actions have no resource-level permissions "
            "(AWS's own Lambda VPC and MSK execution policies grant them on *)",
        )

    @staticmethod
    def _environment(ctx: FunctionContext, kind: str, aliases: set[str]) -> dict[str, str]:
        settings = ctx.deployment.settings
        env = {
            "POWERTOOLS_SERVICE_NAME": f"smm-{kind}",
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": settings.log_level,
            config_source.CONFIG_PARAMETER_ENV: ctx.config_parameter.parameter_name,
            config_source.CONFIG_MAX_AGE_ENV: str(settings.config_max_age_seconds),
        }
        credentials = ctx.secrets.secret_arns(aliases)
        if credentials:
            env[secrets.CLUSTER_SECRETS_ENV] = Stack.of(ctx.config_parameter).to_json_string(credentials)
        authorities = ctx.secrets.authority_arns(aliases)
        if authorities:
            env[secrets.CLUSTER_CA_SECRETS_ENV] = Stack.of(ctx.config_parameter).to_json_string(authorities)
        return env
