"""The deployment's CloudWatch dashboard and alarms.

The functions publish EMF metrics through Powertools in namespace ``ServerlessMirrorMaker`` with dimensions
``Flow`` ("A->B") and ``service`` (Powertools adds the service name to every metric), so each metric here names
both. ESM lag comes from Lambda itself (``AWS/Lambda`` ``OffsetLag`` per function).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.constructs.function import METRICS_NAMESPACE
from infra.constructs.mirror import MirrorFunction
from infra.constructs.scheduled import ScheduledFunction
from infra.settings import AlarmSettings

MIRROR_SERVICE = "smm-mirror"
CHECKPOINTS_SERVICE = "smm-checkpoints"
# What the checkpoints function publishes per flow: age of the newest checkpoint it emitted (milliseconds).
CHECKPOINT_AGE_METRIC = "CheckpointAge"
FIVE_MINUTES = Duration.minutes(5)


def flow_metric(
    flow: str, name: str, statistic: str, service: str = MIRROR_SERVICE, label: str | None = None
) -> cw.Metric:
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"Flow": flow, "service": service},
        statistic=statistic,
        period=FIVE_MINUTES,
        label=label,
    )


def offset_lag(function: lambda_.IFunction, label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/Lambda",
        metric_name="OffsetLag",
        dimensions_map={"FunctionName": function.function_name},
        statistic="Maximum",
        period=FIVE_MINUTES,
        label=label,
    )


class Observability(Construct):
    """One dashboard for the deployment; alarms on replication latency, data loss, errors and lag."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        mirrors: Sequence[MirrorFunction],
        scheduled: Sequence[ScheduledFunction],
        alarms: AlarmSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cw.Alarm] = []
        action = (
            cw_actions.SnsAction(sns.Topic.from_topic_arn(self, "AlarmTopic", alarms.topic_arn))
            if alarms.topic_arn
            else None
        )
        flows = [m.flow.name for m in mirrors]
        for mirror in mirrors:
            self._mirror_alarms(mirror, alarms)
        for job in scheduled:
            period = Duration.seconds(max(300, job.period_seconds))
            self._alarm(
                f"{job.node.id}-errors",
                job.function.metric_errors(period=period, statistic="Sum"),
                f"{job.node.id} failed in two schedule periods in a row",
                threshold=1,
                periods=2,
            )
        if action:
            for alarm in self.alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{name}-mirrormaker")

        def per_flow(metric: str, statistic: str, service: str = MIRROR_SERVICE) -> list[cw.IMetric]:
            return [flow_metric(f, metric, statistic, service, f"{f} {metric} ({statistic})") for f in flows]

        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# Serverless MirrorMaker `{name}`\nFlows: {', '.join(flows) or 'none'}. "
                "Latency comes from MM2 heartbeats crossing each flow.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            _graph(
                "Replication latency (heartbeats, ms)",
                per_flow("ReplicationLatency", "p99") + per_flow("ReplicationLatency", "Maximum"),
            ),
            _graph("Record age at mirroring (ms, max)", per_flow("RecordAge", "Maximum")),
        )
        self.dashboard.add_widgets(
            _graph("Records mirrored", per_flow("Records", "Sum")),
            _graph("Bytes mirrored", per_flow("Bytes", "Sum")),
        )
        self.dashboard.add_widgets(
            _graph(
                "Function errors",
                [m.function.metric_errors(period=FIVE_MINUTES, label=f"{m.flow.name} mirror") for m in mirrors]
                + [j.function.metric_errors(period=FIVE_MINUTES, label=j.node.id) for j in scheduled],
            ),
            _graph(
                "Records lost, dead-lettered or skipped",
                per_flow("GapRecords", "Sum")
                + per_flow("DeadLetteredRecords", "Sum")
                + per_flow("SkippedRecords", "Sum"),
            ),
        )
        self.dashboard.add_widgets(
            _graph(
                "Event-source offset lag (records)",
                [offset_lag(m.function, f"{m.flow.name} offset lag") for m in mirrors],
            ),
            _graph("Checkpoint age (ms)", per_flow(CHECKPOINT_AGE_METRIC, "Maximum", CHECKPOINTS_SERVICE)),
        )
        if self.alarms:
            self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24))

    def _mirror_alarms(self, mirror: MirrorFunction, alarms: AlarmSettings) -> None:
        flow = mirror.flow.name
        self._alarm(
            f"{flow}-latency",
            flow_metric(flow, "ReplicationLatency", "Maximum"),
            f"{flow}: heartbeats take longer than {alarms.replication_latency_seconds} s to cross",
            threshold=alarms.replication_latency_seconds * 1000,
            periods=3,
        )
        self._alarm(
            f"{flow}-lost-records",
            flow_metric(flow, "GapRecords", "Sum"),
            f"{flow}: records were deleted from the source before they were mirrored",
            threshold=1,
            periods=1,
        )
        self._alarm(
            f"{flow}-errors",
            mirror.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            f"{flow}: the mirror function fails (the event source retries; the flow may be stuck)",
            threshold=1,
            periods=2,
        )
        self._alarm(
            f"{flow}-lag",
            offset_lag(mirror.function),
            f"{flow}: more than {alarms.offset_lag_records} records behind the source",
            threshold=alarms.offset_lag_records,
            periods=3,
        )

    def _alarm(
        self, construct_id: str, metric: cw.IMetric, description: str, *, threshold: float, periods: int
    ) -> None:
        self.alarms.append(
            cw.Alarm(
                self,
                construct_id,
                metric=metric,
                alarm_description=description,
                threshold=threshold,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                # No data means no traffic (or no heartbeats yet): not a failure in itself; lag and errors tell.
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        )


def _graph(title: str, metrics: Sequence[cw.IMetric]) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=list(metrics), width=12, height=6)
