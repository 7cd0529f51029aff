"""The mirror function of one flow and what its event-source mappings share (``EventSourceTemplate``).

The stack declares no mapping: config sync creates, updates and deletes every one of them, tagged with the
deployment and the flow, from the template the stack writes to the event-sources parameter (``DeployHook`` runs
it once at deploy time). The function's role is also the mappings' execution role: it reads the source cluster
(ESM pollers), writes the target (the handler), and may send discarded batches to the failure destination.
"""

from __future__ import annotations

from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import permissions as p
from infra.constructs.function import FunctionContext, SmmFunction
from infra.settings import KAFKA_DESTINATION_PREFIX, Auth, ClusterPlan, Deployment, Network
from shared.aws import config_source
from shared.aws.config_source import EventSourceTemplate
from shared.mm2.config import FlowConfig

HANDLER = "functions.mirror.handler.lambda_handler"
KAFKA_METRICS = ("EventCount", "ErrorCount", "KafkaMetrics")

# SourceAccessConfigurations type per authentication (aws.md §1.2); MSK with IAM needs none.
_MSK_ACCESS = {Auth.SCRAM_512: "SASL_SCRAM_512_AUTH", Auth.MTLS: "CLIENT_CERTIFICATE_TLS_AUTH"}
_SELF_MANAGED_ACCESS = {
    Auth.SCRAM_512: "SASL_SCRAM_512_AUTH",
    Auth.SCRAM_256: "SASL_SCRAM_256_AUTH",
    Auth.PLAIN: "BASIC_AUTH",
    Auth.MTLS: "CLIENT_CERTIFICATE_TLS_AUTH",
}


class MirrorFunction(Construct):
    """Mirror function of ``flow`` and the event-source template of its mappings."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ctx: FunctionContext,
        flow: FlowConfig,
        failure_queue: sqs.IQueue | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.flow = flow
        deployment = ctx.deployment
        source = deployment.clusters[flow.source]
        self.smm = SmmFunction(
            self,
            "Mirror",
            ctx=ctx,
            kind="mirror",
            handler=HANDLER,
            description=f"mirror {flow.name}",
            aliases=(flow.source, flow.target),
            environment={config_source.FLOW_ENV: flow.name},
        )
        self.function = self.smm.function
        options = deployment.settings.event_source_for(flow.name)
        on_failure = failure_queue.queue_arn if options.on_failure == "sqs" and failure_queue else options.on_failure
        self.template = EventSourceTemplate(
            function_name=self.function.function_name,
            msk_cluster_arn=source.settings.msk_cluster_arn,
            access_configurations=access_configurations(
                source,
                ctx.secrets.secret_arns({flow.source}).get(flow.source),
                ctx.secrets.authority_arns({flow.source}).get(flow.source),
                source.settings.event_source_network or deployment.settings.network,
            ),
            pollers=options.provisioned_pollers,
            on_failure=on_failure,
            max_retry_attempts=options.max_retry_attempts,
            max_record_age_seconds=options.max_record_age_seconds,
            bisect_batch_on_error=options.bisect_batch_on_error,
            metrics=KAFKA_METRICS if options.metrics else (),
            deployment=deployment.settings.name,
        )
        if self.template.may_skip:  # the mirror copies from the source itself whatever range a mapping skipped
            self.function.add_environment(config_source.RECOVER_SKIPPED_ENV, "true")

        self._grant_event_source(source)
        self._grant_destination(on_failure, failure_queue)
        self._grant_kafka(deployment)

    def _grant_event_source(self, source: ClusterPlan) -> None:
        """What the ESM pollers need with this role (AWSLambdaMSKExecutionRole, scoped to the cluster)."""
        arn = source.settings.msk_cluster_arn
        if arn:
            p.allow(
                self.smm.role, ["kafka:DescribeCluster", "kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"], [arn]
            )
        if arn or any(t.startswith("VPC_") for t, _ in self.template.access_configurations):
            self.smm.allow_network_interfaces(pollers=True)

    def _grant_destination(self, destination: str | None, failure_queue: sqs.IQueue | None) -> None:
        if not destination or destination.startswith(KAFKA_DESTINATION_PREFIX):
            return  # Kafka destinations are written with the source cluster's access (_grant_kafka)
        if failure_queue is not None and destination == failure_queue.queue_arn:
            failure_queue.grant_send_messages(self.smm.role)
            return
        service = destination.split(":")[2]
        if service == "sqs":
            p.allow(self.smm.role, ["sqs:SendMessage"], [destination])
        elif service == "sns":
            p.allow(self.smm.role, ["sns:Publish"], [destination])
        else:
            p.allow(self.smm.role, ["s3:ListBucket"], [destination])
            p.allow(
                self.smm.role,
                ["s3:PutObject"],
                [f"{destination}/*"],
                wildcard_reason="the ESM names each failure record object itself, inside this bucket",
            )

    def _grant_kafka(self, deployment: Deployment) -> None:
        """MSK IAM access of the pollers (source) and the handler (source: offset syncs; target: records)."""
        flow = self.flow
        offset_syncs = flow.offset_syncs_topic()
        writes = (p.CREATE_TOPIC, p.ALTER_TOPIC, p.DESCRIBE_TOPIC, p.DESCRIBE_TOPIC_CONFIG, p.WRITE)
        source = (
            p.KafkaAccess()
            .on_cluster(p.DESCRIBE_CLUSTER_CONFIG, p.WRITE_IDEMPOTENTLY)
            .on_topics(["*"], p.DESCRIBE_TOPIC, p.DESCRIBE_TOPIC_CONFIG, p.READ)
            .on_topics([offset_syncs], p.CREATE_TOPIC, p.DESCRIBE_TOPIC, p.WRITE)
            .on_groups([f"{flow.consumer_group_id('')}*"], p.DESCRIBE_GROUP, p.ALTER_GROUP)
        )
        failure_topic = kafka_failure_topic(self.template)
        if failure_topic:
            source.on_topics([failure_topic], p.DESCRIBE_TOPIC, p.WRITE)
        target = (
            p.KafkaAccess()
            .on_cluster(p.WRITE_IDEMPOTENTLY, p.DESCRIBE_CLUSTER)
            .on_topics([remote_topic_pattern(flow), flow.settings.dead_letter_topic], *writes)
            .on_topics([offset_syncs], p.CREATE_TOPIC, p.DESCRIBE_TOPIC, p.WRITE)
        )
        if flow.exactly_once:  # per-partition transactions, ending with the source offset (functions/mirror)
            target.transactions([flow.transactional_id_pattern()]).on_topics(
                [flow.source_offsets_topic()], p.CREATE_TOPIC, p.DESCRIBE_TOPIC, p.READ, p.WRITE
            )
        p.grant_kafka_access(
            self.smm.role,
            deployment,
            {flow.source: source, flow.target: target},
            f"flow {flow.name} reads the source topics its console-editable filter selects and writes their "
            f"remote topics ({remote_topic_pattern(flow)})",
        )


def remote_topic_pattern(flow: FlowConfig) -> str:
    """The names remote topics of ``flow`` can have on the target, as an IAM pattern (``A.*``, or ``*``)."""
    return flow.policy().format_remote_topic(flow.source, "*")


def kafka_failure_topic(template: EventSourceTemplate) -> str | None:
    """The topic of a ``kafka://TOPIC`` failure destination (on the flow's source cluster), if that is one."""
    destination = template.on_failure or ""
    if not destination.startswith(KAFKA_DESTINATION_PREFIX):
        return None
    return destination.removeprefix(KAFKA_DESTINATION_PREFIX)


def access_configurations(
    source: ClusterPlan, secret_arn: str | None, root_ca_arn: str | None, network: Network | None
) -> tuple[tuple[str, str], ...]:
    """The SourceAccessConfigurations of an ESM reading ``source``."""
    if source.settings.is_msk:
        kind = _MSK_ACCESS.get(source.auth)
        return ((kind, secret_arn),) if kind and secret_arn else ()
    access: list[tuple[str, str]] = []
    kind = _SELF_MANAGED_ACCESS.get(source.auth)
    if kind and secret_arn:
        access.append((kind, secret_arn))
    if root_ca_arn:
        access.append(("SERVER_ROOT_CA_CERTIFICATE", root_ca_arn))
    if network:
        access.extend(("VPC_SUBNET", f"subnet:{s}") for s in network.subnet_ids)
        access.extend(("VPC_SECURITY_GROUP", f"security_group:{g}") for g in network.security_group_ids)
    return tuple(access)
