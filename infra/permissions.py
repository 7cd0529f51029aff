"""IAM statements of the functions, each scoped to the resources it needs, and the cdk-nag evidence for them.

Every statement goes through ``allow``: a statement with a wildcard in a resource must say why, and that
reason becomes the acknowledgment of exactly that cdk-nag finding (``AwsSolutions-IAM5[Resource::...]``), so
no rule is switched off wholesale. The few actions AWS only grants on ``*`` are listed in ``STAR_ONLY_ACTIONS``
(the tests assert that nothing else is granted on ``*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from infra.settings import Auth, Deployment

# ENIs of a function in a VPC (what AWSLambdaVPCAccessExecutionRole grants) and, for an execution role whose
# Kafka event-source pollers run in the cluster's VPC, what AWSLambdaMSKExecutionRole adds. AWS grants these
# only on "*".
FUNCTION_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
POLLER_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
# ListEventSourceMappings has no resource type; CreateEventSourceMapping's is not known before the call
# (it is held to our mirror functions by the lambda:FunctionArn condition instead).
STAR_ONLY_ACTIONS = frozenset(
    {*FUNCTION_ENI_ACTIONS, *POLLER_ENI_ACTIONS, "lambda:ListEventSourceMappings", "lambda:CreateEventSourceMapping"}
)


def allow(
    role: iam.IRole,
    actions: Sequence[str],
    resources: Sequence[str],
    *,
    conditions: Mapping[str, Any] | None = None,
    wildcard_reason: str | None = None,
) -> None:
    """Add one statement to ``role``; a wildcard resource needs ``wildcard_reason`` (the nag evidence)."""
    wildcards = [nag_resource(role, r) for r in resources if "*" in nag_resource(role, r)]
    if wildcards and not wildcard_reason:
        raise ValueError(f"{actions} on {resources}: a wildcard resource needs a reason")
    if "*" in resources:
        outside = sorted(set(actions) - STAR_ONLY_ACTIONS)
        if outside:
            raise ValueError(f"{outside} must be scoped to resources; only {sorted(STAR_ONLY_ACTIONS)} go on '*'")
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=list(actions), resources=list(resources), conditions=dict(conditions or {}))
    )
    for resource in wildcards:
        acknowledge(role, f"AwsSolutions-IAM5[Resource::{resource}]", wildcard_reason)


def acknowledge(scope: Any, rule: str, reason: str | None) -> None:
    """Record why a cdk-nag finding is acceptable, on the construct it is about."""
    if not reason:
        raise ValueError(f"acknowledging {rule} needs a reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def nag_resource(scope: Any, value: str) -> str:
    """``value`` (possibly holding tokens) the way cdk-nag names it in a finding id."""
    return _render(cdk.Stack.of(scope).resolve(value))


def _render(value: Any) -> str:
    """A resolved CloudFormation value the way cdk-nag prints it in finding ids (``<AWS::Region>``, ``<Fn.Arn>``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(_render(p) for p in parts)
    return str(value)


# --- MSK IAM access control (kafka-cluster:*) --------------------------------------------------------------

CONNECT = "kafka-cluster:Connect"
DESCRIBE_CLUSTER = "kafka-cluster:DescribeCluster"
DESCRIBE_CLUSTER_CONFIG = "kafka-cluster:DescribeClusterDynamicConfiguration"
WRITE_IDEMPOTENTLY = "kafka-cluster:WriteDataIdempotently"
CREATE_TOPIC = "kafka-cluster:CreateTopic"
DESCRIBE_TOPIC = "kafka-cluster:DescribeTopic"
ALTER_TOPIC = "kafka-cluster:AlterTopic"
DESCRIBE_TOPIC_CONFIG = "kafka-cluster:DescribeTopicDynamicConfiguration"
ALTER_TOPIC_CONFIG = "kafka-cluster:AlterTopicDynamicConfiguration"
READ = "kafka-cluster:ReadData"
WRITE = "kafka-cluster:WriteData"
DESCRIBE_GROUP = "kafka-cluster:DescribeGroup"
ALTER_GROUP = "kafka-cluster:AlterGroup"
DESCRIBE_TRANSACTIONAL_ID = "kafka-cluster:DescribeTransactionalId"
ALTER_TRANSACTIONAL_ID = "kafka-cluster:AlterTransactionalId"

# Internal topics: MM2's offset syncs and checkpoints (and config sync's state) end in "internal" with either
# separator; heartbeats keep their name.
INTERNAL_TOPICS = ("*internal", "heartbeats")


@dataclass
class KafkaAccess:
    """What a function may do on one IAM-authenticated MSK cluster: cluster actions, topic and group patterns."""

    cluster: set[str] = field(default_factory=set)
    topics: dict[str, set[str]] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    transactional_ids: dict[str, set[str]] = field(default_factory=dict)

    def on_cluster(self, *actions: str) -> KafkaAccess:
        self.cluster.update((CONNECT, *actions))
        return self

    def on_topics(self, patterns: Iterable[str], *actions: str) -> KafkaAccess:
        self.cluster.add(CONNECT)
        for pattern in patterns:
            self.topics.setdefault(pattern, set()).update(actions)
        return self

    def on_groups(self, patterns: Iterable[str], *actions: str) -> KafkaAccess:
        self.cluster.add(CONNECT)
        for pattern in patterns:
            self.groups.setdefault(pattern, set()).update(actions)
        return self

    def transactions(self, patterns: Iterable[str]) -> KafkaAccess:
        """Write in transactions with the transactional ids ``patterns`` match."""
        self.cluster.update((CONNECT, WRITE_IDEMPOTENTLY))
        for pattern in patterns:
            self.transactional_ids.setdefault(pattern, set()).update(
                (DESCRIBE_TRANSACTIONAL_ID, ALTER_TRANSACTIONAL_ID)
            )
        return self


def grant_kafka(role: iam.IRole, cluster_arn: str, access: KafkaAccess, why: str) -> None:
    """``access`` as statements on the cluster's own ARNs (topic and group ARNs derive from the cluster's)."""
    prefix, _, name_and_uuid = cluster_arn.partition(":cluster/")
    allow(role, sorted(access.cluster), [cluster_arn])
    kinds = (("topic", access.topics), ("group", access.groups), ("transactional-id", access.transactional_ids))
    for kind, patterns in kinds:
        by_actions: dict[tuple[str, ...], list[str]] = {}
        for pattern, granted in sorted(patterns.items()):
            by_actions.setdefault(tuple(sorted(granted)), []).append(f"{prefix}:{kind}/{name_and_uuid}/{pattern}")
        for actions, resources in by_actions.items():
            allow(role, actions, resources, wildcard_reason=f"{kind}s of cluster {cluster_arn}: {why}")


def internal_topics(access: KafkaAccess) -> KafkaAccess:
    """Create, read and write MM2's internal topics (and heartbeats) with an idempotent producer."""
    return access.on_cluster(WRITE_IDEMPOTENTLY).on_topics(
        INTERNAL_TOPICS, CREATE_TOPIC, DESCRIBE_TOPIC, DESCRIBE_TOPIC_CONFIG, READ, WRITE
    )


def grant_kafka_access(role: iam.IRole, deployment: Deployment, accesses: Mapping[str, KafkaAccess], why: str) -> None:
    """``accesses`` (cluster alias -> access) on the clusters that use MSK IAM access control; others need none."""
    for alias, access in sorted(accesses.items()):
        plan = deployment.clusters[alias]
        if plan.auth is Auth.IAM and plan.settings.msk_cluster_arn:
            grant_kafka(role, plan.settings.msk_cluster_arn, access, why)


# --- what mm2.properties itself points to: config provider references, assumed roles -------------------------


def grant_config_references(role: iam.IRole, deployment: Deployment) -> None:
    """Read the secrets and parameters the file's ``${secretsmanager:...}``/``${ssm::...}`` references name, and
    assume the roles its MSK IAM login options name (``awsRoleArn``): each by name, nothing else."""
    stack = cdk.Stack.of(role)
    for reference in deployment.provider_references:
        region = reference.region or stack.region
        if reference.service == "secretsmanager":
            arn = (
                reference.name
                if reference.name.startswith("arn:")
                else (f"arn:{stack.partition}:secretsmanager:{region}:{stack.account}:secret:{reference.name}-??????")
            )
            allow(
                role,
                ["secretsmanager:GetSecretValue"],
                [arn],
                wildcard_reason=f"Secrets Manager appends six random characters to secret {reference.name!r}'s ARN",
            )
        else:
            name = reference.name.lstrip("/")
            allow(role, ["ssm:GetParameter"], [f"arn:{stack.partition}:ssm:{region}:{stack.account}:parameter/{name}"])
    for role_arn in deployment.assumed_roles:
        allow(role, ["sts:AssumeRole"], [role_arn])
