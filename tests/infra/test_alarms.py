"""Every stall alarms: the alarms and dashboard of ``Observability``, read from synthesized templates.

Each example stack is synthesized once for the module (cdk-nag included); the periods that follow the heartbeats
and config-sync schedules are checked too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra import app as infra_app
from infra.constructs.observability import SERVICES
from infra.settings import Deployment
from infra.stack import MirrorMakerStack
from tests.infra.support import EXAMPLES

NAMESPACE = "ServerlessMirrorMaker"


@dataclass
class Observed:
    deployment: Deployment
    stack: MirrorMakerStack
    resources: dict[str, Any]

    def alarms(self) -> dict[str, dict[str, Any]]:
        """Alarm properties by construct id (``A->B-heartbeat-age``)."""
        return {
            a.node.id: self.resources[self.stack.get_logical_id(a.node.default_child)]["Properties"]  # type: ignore[arg-type]
            for a in self.stack.observability.alarms
        }

    def dashboard_body(self) -> str:
        construct = self.stack.observability
        logical_id = self.stack.get_logical_id(construct.dashboard.node.default_child)  # type: ignore[arg-type]
        return json.dumps(self.resources[logical_id]["Properties"]["DashboardBody"])


def observe(example: str, outdir: Path, settings: dict[str, Any] | None = None) -> Observed:
    code_dir = outdir / "code"
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "placeholder.py").write_text("")
    deployment = infra_app.deployment_from(
        EXAMPLES / example / "mm2.properties", settings or EXAMPLES / example / "deploy.json"
    )
    app = cdk.App(outdir=str(outdir / "cdk.out"))
    stack = infra_app.add_stack(app, deployment, code=lambda_.Code.from_asset(str(code_dir)))
    infra_app.check(app)
    app.synth()
    return Observed(deployment, stack, Template.from_stack(stack).to_json()["Resources"])


@pytest.fixture(scope="module")
def msk(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return observe("msk", tmp_path_factory.mktemp("alarms-msk"))


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """The self-managed example with the stack's SQS failure queue as every mapping's destination."""
    settings = json.loads((EXAMPLES / "self-managed" / "deploy.json").read_text())
    settings["event_source"] = {"on_failure": "sqs"}
    return observe("self-managed", tmp_path_factory.mktemp("alarms-hybrid"), settings)


@pytest.fixture(params=["msk", "hybrid"])
def observed(request: pytest.FixtureRequest) -> Observed:
    result: Observed = request.getfixturevalue(request.param)
    return result


def metric(props: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """(namespace, metric name, dimensions) of a single-metric alarm."""
    return props["Namespace"], props["MetricName"], {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


def flow_dims(flow: str, service: str) -> dict[str, str]:
    return {"Flow": flow, "service": service}


# --- stalls ------------------------------------------------------------------------------------------------


def test_no_heartbeat_crossing_a_flow_is_a_stall(observed: Observed) -> None:
    seconds = observed.deployment.settings.alarms.heartbeat_age_seconds
    flows = [f.name for f in observed.deployment.enabled_flows]
    assert flows and seconds == {"smm-msk": 180, "smm-hybrid": 300}[observed.deployment.settings.name]
    alarms = observed.alarms()
    for flow in flows:
        props = alarms[f"{flow}-heartbeat-age"]
        assert metric(props) == (NAMESPACE, "HeartbeatAge", flow_dims(flow, "smm-heartbeats"))
        assert (props["Statistic"], props["Threshold"]) == ("Maximum", seconds * 1000)
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["TreatMissingData"] == "breaching"  # no heartbeat at all is the worst stall
        assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == 2
    for flow in flows:  # the heartbeats function runs every minute: two datapoints' worth, at least 5 min
        assert observed.alarms()[f"{flow}-heartbeat-age"]["Period"] == 300


def test_mappings_that_are_not_enabled_alarm_over_config_syncs_period(observed: Observed) -> None:
    period = observed.stack.config_sync.scheduled.period_seconds
    assert period == {"smm-msk": 600, "smm-hybrid": 300}[observed.deployment.settings.name]
    for flow in observed.deployment.mirrored_flows:
        props = observed.alarms()[f"{flow.name}-mappings-not-enabled"]
        assert metric(props) == (NAMESPACE, "MappingsNotEnabled", flow_dims(flow.name, "smm-config-sync"))
        assert (props["Statistic"], props["Threshold"], props["Period"]) == ("Maximum", 1, max(300, period))
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert (props["DatapointsToAlarm"], props["EvaluationPeriods"]) == (2, 3)
        assert props["TreatMissingData"] == "notBreaching"  # config sync not running: its own errors alarm
        assert "its own errors alarm" in props["AlarmDescription"]


def test_records_waiting_while_the_mirror_is_idle_alarm(observed: Observed) -> None:
    for flow in observed.deployment.mirrored_flows:
        props = observed.alarms()[f"{flow.name}-idle-with-lag"]
        queries = {q["Id"]: q for q in props["Metrics"]}
        (expression,) = [q for q in queries.values() if "Expression" in q]
        assert expression["Expression"] == "IF(lag > 0 AND FILL(records, 0) == 0, 1, 0)"
        lag, records = queries["lag"]["MetricStat"], queries["records"]["MetricStat"]
        assert (lag["Metric"]["MetricName"], lag["Stat"], lag["Period"]) == ("SourceLag", "Minimum", 300)
        assert {d["Name"]: d["Value"] for d in lag["Metric"]["Dimensions"]} == flow_dims(flow.name, "smm-heartbeats")
        assert (records["Metric"]["MetricName"], records["Stat"], records["Period"]) == ("Records", "Sum", 300)
        assert {d["Name"]: d["Value"] for d in records["Metric"]["Dimensions"]} == flow_dims(flow.name, "smm-mirror")
        assert (props["Threshold"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 3, 3)
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching"


# --- skipped ranges, refused edits, failed batches -----------------------------------------------------------


def test_a_range_a_mapping_skipped_is_reported(observed: Observed) -> None:
    for flow in observed.deployment.mirrored_flows:
        props = observed.alarms()[f"{flow.name}-recovered-records"]
        assert metric(props) == (NAMESPACE, "RecoveredRecords", flow_dims(flow.name, "smm-mirror"))
        assert (props["Statistic"], props["Threshold"], props["EvaluationPeriods"]) == ("Sum", 1, 1)
        assert props["TreatMissingData"] == "notBreaching"
        assert "informational, nothing lost" in props["AlarmDescription"]


def test_a_rejected_configuration_edit_alarms_per_function_kind(observed: Observed) -> None:
    alarms = observed.alarms()
    for kind, service in SERVICES.items():
        props = alarms[f"config-rejected-{kind}"]
        assert metric(props) == (NAMESPACE, "ConfigRejected", {"service": service})  # no Flow: per function
        assert (props["Statistic"], props["Threshold"], props["EvaluationPeriods"]) == ("Sum", 1, 1)
        assert props["TreatMissingData"] == "notBreaching"
    assert sorted(SERVICES.values()) == ["smm-checkpoints", "smm-config-sync", "smm-heartbeats", "smm-mirror"]


def test_batches_in_the_failure_queue_alarm(hybrid: Observed, msk: Observed) -> None:
    props = hybrid.alarms()["failed-batches"]
    queue = hybrid.stack.get_logical_id(hybrid.stack.failure_queue.node.default_child)  # type: ignore[union-attr,arg-type]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (props["Statistic"], props["Threshold"], props["TreatMissingData"]) == ("Maximum", 1, "notBreaching")
    assert "failed-batches" not in msk.alarms()  # a Kafka failure topic: RecoveredRecords tells


# --- what the older alarms do with missing data ------------------------------------------------------------


def test_alarms_on_what_only_flowing_batches_publish_ignore_missing_data(observed: Observed) -> None:
    alarms = observed.alarms()
    latency = observed.deployment.settings.alarms.replication_latency_seconds
    for flow in observed.deployment.mirrored_flows:
        expected = {
            "latency": ("ReplicationLatency", latency * 1000),
            "lost-records": ("GapRecords", 1),
            "dead-lettered": ("DeadLetteredRecords", 1),
            "errors": ("Errors", 1),
            "lag": ("OffsetLag", observed.deployment.settings.alarms.offset_lag_records),
        }
        for suffix, (name, threshold) in expected.items():
            props = alarms[f"{flow.name}-{suffix}"]
            assert (props["MetricName"], props["Threshold"]) == (name, threshold), suffix
            assert props["TreatMissingData"] == "notBreaching", suffix  # the stall alarms cover no data


def test_every_alarm_notifies_the_topic(msk: Observed) -> None:
    for name, props in msk.alarms().items():
        assert props["AlarmActions"] == props["OKActions"] == ["arn:aws:sns:eu-west-1:123456789012:kafka-on-call"], name


def test_the_dashboard_shows_the_stall_signals(observed: Observed) -> None:
    body = observed.dashboard_body()
    for name in (
        "HeartbeatAge",
        "SourceLag",
        "MappingsNotEnabled",
        "RecoveredRecords",
        "SkippedRanges",
        "ConfigRejected",
    ):
        assert f'\\"{name}\\"' in body, name
    for flow in observed.deployment.enabled_flows:
        assert f'\\"HeartbeatAge\\",\\"Flow\\",\\"{flow.name}\\",\\"service\\",\\"smm-heartbeats\\"' in body
    assert ("ApproximateNumberOfMessagesVisible" in body) == (observed.stack.failure_queue is not None)
