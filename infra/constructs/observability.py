"""The deployment's CloudWatch dashboard and alarms.

The functions publish EMF metrics through Powertools in namespace ``ServerlessMirrorMaker`` with dimension
``service`` (Powertools adds the service name to every metric) and, for per-flow metrics, ``Flow`` ("A->B"), so
each metric here names both. ESM lag comes from Lambda itself (``AWS/Lambda`` ``OffsetLag`` per function).

Every way a flow can stop raises an alarm, including the silent ones: a mapping that cannot connect or
authenticate produces no invocation, hence no error and no latency datapoint. Those are caught by the age of the
newest heartbeat that crossed the flow (missing data counts as a stall), by config sync's report of mappings not
``Enabled``, and by records waiting on the source while the mirror mirrors nothing. What the others watch is
there only while batches flow, so for them missing data is not a failure: the stall alarms cover it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.heartbeats import health
from infra.constructs.function import METRICS_NAMESPACE
from infra.constructs.mirror import MirrorFunction
from infra.constructs.scheduled import ScheduledFunction
from infra.settings import AlarmSettings
from shared.mm2.config import MirrorConfig

MIRROR_SERVICE = "smm-mirror"
CONFIG_SYNC_SERVICE = "smm-config-sync"
HEARTBEATS_SERVICE = "smm-heartbeats"
CHECKPOINTS_SERVICE = "smm-checkpoints"
# The Powertools service of each function kind: ConfigRejected is published per service, without Flow.
SERVICES = {
    "mirror": MIRROR_SERVICE,
    "config_sync": CONFIG_SYNC_SERVICE,
    "heartbeats": HEARTBEATS_SERVICE,
    "checkpoints": CHECKPOINTS_SERVICE,
}
# What the checkpoints function publishes per flow: age of the newest checkpoint it emitted (milliseconds).
CHECKPOINT_AGE_METRIC = "CheckpointAge"
FIVE_MINUTES = Duration.minutes(5)
ALARMS_PER_WIDGET = 100  # the most an alarm status widget shows

GTE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD


def flow_metric(
    flow: str,
    name: str,
    statistic: str,
    service: str = MIRROR_SERVICE,
    label: str | None = None,
    period: Duration = FIVE_MINUTES,
) -> cw.Metric:
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"Flow": flow, "service": service},
        statistic=statistic,
        period=period,
        label=label,
    )


def service_metric(service: str, name: str, statistic: str, label: str | None = None) -> cw.Metric:
    """A metric published without ``Flow``: one per function kind."""
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
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


def alarm_period(publish_period_seconds: int) -> Duration:
    """An alarm period over a metric published every ``publish_period_seconds``: at least five minutes, and
    twice the publishing period, so a late or early invocation never leaves a period without a datapoint."""
    return Duration.seconds(max(300, 2 * publish_period_seconds))


class Observability(Construct):
    """One dashboard for the deployment; alarms on stalls, data loss, recovered skips, errors and lag.

    ``config`` (the deployed configuration) tells which flows heartbeats cross; without it every enabled flow
    that mirrors heartbeats is taken to carry them (MM2's default: every pair emits). ``heartbeats`` and
    ``config_sync`` (their scheduled functions) set the periods of the alarms on what they publish; without them
    the longest period of ``scheduled`` is used, which is never too short. ``failure_queue``: the queue of
    ``on_failure: "sqs"``, whose messages are batches a mapping gave up on.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        mirrors: Sequence[MirrorFunction],
        scheduled: Sequence[ScheduledFunction],
        alarms: AlarmSettings,
        config: MirrorConfig,
        heartbeats: ScheduledFunction,
        config_sync: ScheduledFunction,
        failure_queue: sqs.IQueue | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cw.Alarm] = []
        self._settings = alarms
        self._heartbeats_period = alarm_period(heartbeats.period_seconds)
        self._config_sync_period = Duration.seconds(max(300, config_sync.period_seconds))
        flows = [m.flow.name for m in mirrors]
        crossed = health.measured_flows(config)
        self.heartbeat_flows = [f.name for f in crossed if health.carries_heartbeats(f) and f.name in flows]
        for mirror in mirrors:
            self._mirror_alarms(mirror)
        for job in scheduled:
            period = Duration.seconds(max(300, job.period_seconds))
            self._alarm(
                f"{job.node.id}-errors",
                job.function.metric_errors(period=period, statistic="Sum"),
                f"{job.node.id} failed in two schedule periods in a row",
                threshold=1,
                periods=2,
                missing=cw.TreatMissingData.NOT_BREACHING,  # not invoked: no error (heartbeat age notices)
            )
        self._deployment_alarms(failure_queue)
        action = (
            cw_actions.SnsAction(sns.Topic.from_topic_arn(self, "AlarmTopic", alarms.topic_arn))
            if alarms.topic_arn
            else None
        )
        if action:
            for alarm in self.alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{name}-mirrormaker")
        self._widgets(name, mirrors, scheduled, flows, failure_queue)

    # --- alarms ------------------------------------------------------------------------------------------

    def _mirror_alarms(self, mirror: MirrorFunction) -> None:
        flow = mirror.flow.name
        alarms = self._settings
        if flow in self.heartbeat_flows:
            self._alarm(
                f"{flow}-heartbeat-age",
                flow_metric(flow, "HeartbeatAge", "Maximum", HEARTBEATS_SERVICE, period=self._heartbeats_period),
                f"{flow}: no heartbeat has crossed the flow for {alarms.heartbeat_age_seconds} s: it is stalled "
                "(a mapping that cannot connect or log in, a failing mirror, an unreachable cluster). No data "
                "means no heartbeat crossed at all, which is a stall too",
                threshold=alarms.heartbeat_age_seconds * 1000,
                periods=2,
                comparison=GT,
                missing=cw.TreatMissingData.BREACHING,
            )
        self._alarm(
            f"{flow}-mappings-not-enabled",
            flow_metric(flow, "MappingsNotEnabled", "Maximum", CONFIG_SYNC_SERVICE, period=self._config_sync_period),
            f"{flow}: event-source mappings that should poll are not Enabled (config sync logs each one's State "
            "and StateTransitionReason; a mapping that cannot reach or log in to the source ends up Disabled). "
            "No data is not a failure here: config sync not running raises its own errors alarm",
            threshold=1,
            periods=3,
            datapoints=2,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        self._alarm(
            f"{flow}-recovered-records",
            flow_metric(flow, "RecoveredRecords", "Sum"),
            # Informational, yet notified like the others: nothing was lost, but a mapping gave up on a batch after
            # its whole retry budget, which only a long target outage or a record that cannot be written explains.
            f"{flow} (informational, nothing lost): an event-source mapping skipped a range after its retry limit, "
            "record age or failure destination, and the mirror copied it from the source itself; look for the "
            "cause in the mirror's errors before it happens again",
            threshold=1,
            periods=1,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        idle = cw.MathExpression(
            # FILL: the mirror publishes nothing when it is not invoked, which is the very case looked for.
            expression="IF(lag > 0 AND FILL(records, 0) == 0, 1, 0)",
            using_metrics={
                "lag": flow_metric(flow, "SourceLag", "Minimum", HEARTBEATS_SERVICE),
                "records": flow_metric(flow, "Records", "Sum"),
            },
            period=self._heartbeats_period,
            label=f"{flow} records waiting while nothing is mirrored",
        )
        self._alarm(
            f"{flow}-idle-with-lag",
            idle,
            f"{flow}: records wait on the source (SourceLag > 0) while the mirror mirrored nothing for three periods: "
            "its mappings do not poll. No data (the heartbeats function did not measure) is not a failure here; "
            "the heartbeat-age alarm covers it",
            threshold=1,
            periods=3,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        # No latency datapoint means no heartbeat crossed: the heartbeat-age alarm's case, not this one's.
        self._alarm(
            f"{flow}-latency",
            flow_metric(flow, "ReplicationLatency", "Maximum"),
            f"{flow}: heartbeats take longer than {alarms.replication_latency_seconds} s to cross",
            threshold=alarms.replication_latency_seconds * 1000,
            periods=3,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        # No batch, nothing lost.
        self._alarm(
            f"{flow}-lost-records",
            flow_metric(flow, "GapRecords", "Sum"),
            f"{flow}: records were deleted from the source before they were mirrored",
            threshold=1,
            periods=1,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        # smm.oversized.record.action = dead-letter: the record's value is not mirrored (its coordinates are).
        self._alarm(
            f"{flow}-dead-lettered",
            flow_metric(flow, "DeadLetteredRecords", "Sum"),
            f"{flow}: records too large for their remote topic were dead-lettered: their key, headers and source "
            f"coordinates are in {mirror.flow.settings.dead_letter_topic} on {mirror.flow.target}, their values "
            "were not mirrored (raise the remote topic's max.message.bytes and copy them from the source)",
            threshold=1,
            periods=1,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        # No invocation, no error: a mapping that does not invoke is caught by the stall alarms above.
        self._alarm(
            f"{flow}-errors",
            mirror.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            f"{flow}: the mirror function fails (the event source retries; the flow may be stuck)",
            threshold=1,
            periods=2,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )
        # Lambda reports OffsetLag only while pollers run; lag no poller reads is the idle-with-lag alarm's case.
        self._alarm(
            f"{flow}-lag",
            offset_lag(mirror.function),
            f"{flow}: more than {alarms.offset_lag_records} records behind the source",
            threshold=alarms.offset_lag_records,
            periods=3,
            missing=cw.TreatMissingData.NOT_BREACHING,
        )

    def _deployment_alarms(self, failure_queue: sqs.IQueue | None) -> None:
        for kind, service in SERVICES.items():
            self._alarm(
                f"config-rejected-{kind}",
                service_metric(service, "ConfigRejected", "Sum"),
                f"the {kind} function refused an edited configuration and keeps running the last good one; its log "
                "names each problem with its key (fix the SSM parameter). No data: no bad edit",
                threshold=1,
                periods=1,
                missing=cw.TreatMissingData.NOT_BREACHING,
            )
        if failure_queue is not None:
            self._alarm(
                "failed-batches",
                failure_queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                "an event-source mapping gave up on a batch and sent its description to the failure queue (the "
                "mirror copies the skipped range itself: see RecoveredRecords). No data: SQS stops reporting an "
                "idle, empty queue",
                threshold=1,
                periods=1,
                missing=cw.TreatMissingData.NOT_BREACHING,
            )

    def _alarm(
        self,
        construct_id: str,
        metric: cw.IMetric,
        description: str,
        *,
        threshold: float,
        periods: int,
        missing: cw.TreatMissingData,
        datapoints: int | None = None,
        comparison: cw.ComparisonOperator = GTE,
    ) -> None:
        self.alarms.append(
            cw.Alarm(
                self,
                construct_id,
                metric=metric,
                alarm_description=description,
                threshold=threshold,
                comparison_operator=comparison,
                evaluation_periods=periods,
                datapoints_to_alarm=datapoints or periods,
                treat_missing_data=missing,
            )
        )

    # --- dashboard ---------------------------------------------------------------------------------------

    def _widgets(
        self,
        name: str,
        mirrors: Sequence[MirrorFunction],
        scheduled: Sequence[ScheduledFunction],
        flows: Sequence[str],
        failure_queue: sqs.IQueue | None,
    ) -> None:
        def per_flow(
            metric: str, statistic: str, service: str = MIRROR_SERVICE, only: Sequence[str] = flows
        ) -> list[cw.IMetric]:
            return [flow_metric(f, metric, statistic, service, f"{f} {metric} ({statistic})") for f in only]

        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# Serverless MirrorMaker `{name}`\nFlows: {', '.join(flows) or 'none'}. "
                "Latency and heartbeat age come from MM2 heartbeats crossing each flow; source lag is what the "
                "flow's mappings have not consumed yet.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            _graph(
                "Heartbeat age (ms since the newest heartbeat crossed)",
                per_flow("HeartbeatAge", "Maximum", HEARTBEATS_SERVICE, self.heartbeat_flows),
            ),
            _graph("Source lag (records not consumed yet)", per_flow("SourceLag", "Maximum", HEARTBEATS_SERVICE)),
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
            _graph("Mappings not enabled", per_flow("MappingsNotEnabled", "Maximum", CONFIG_SYNC_SERVICE)),
            _graph(
                "Ranges a mapping skipped, recovered by the mirror",
                per_flow("RecoveredRecords", "Sum") + per_flow("SkippedRanges", "Sum"),
            ),
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
        rejected = _graph(
            "Configuration edits rejected (last good one kept)",
            [service_metric(s, "ConfigRejected", "Sum", f"{kind} ConfigRejected") for kind, s in SERVICES.items()],
        )
        if failure_queue is None:
            self.dashboard.add_widgets(rejected)
        else:
            queued = failure_queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum", label="batches in the failure queue"
            )
            self.dashboard.add_widgets(rejected, _graph("Failure queue (batches a mapping gave up on)", [queued]))
        for first in range(0, len(self.alarms), ALARMS_PER_WIDGET):
            chunk = self.alarms[first : first + ALARMS_PER_WIDGET]
            self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=chunk, width=24))


def _graph(title: str, metrics: Sequence[cw.IMetric]) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=list(metrics), width=12, height=6)
