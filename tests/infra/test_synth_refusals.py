"""What synth refuses because AWS would (SASL over plaintext, a Kafka failure topic that cannot work, a heartbeat
alarm that never clears), and what it warns about (settings that let a mapping skip, a network path it cannot
see). ``Deployment.resolve`` only: no synth."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from infra import app
from infra.settings import EventSourceSettings, skipping_settings
from shared.aws.config_source import EventSourceTemplate
from tests.infra.support import EXAMPLES
from tests.infra.test_settings import MSK_ARN, NETWORK, SECRET, resolve, resolve_problems

PROVISIONED = {"provisioned_pollers": {"minimum": 1, "maximum": 2}}
SCRAM = {"a.security.protocol": "SASL_SSL", "a.sasl.mechanism": "SCRAM-SHA-512"}
NAT = {**NETWORK, "egress": "nat"}


def failure_topic_problems(topic: str, **properties: str) -> list[str]:
    settings = {"network": NAT, "event_source": {**PROVISIONED, "on_failure": f"kafka://{topic}"}}
    return resolve_problems(properties, settings)


def warnings(properties: dict[str, str], settings: dict[str, Any]) -> list[str]:
    return list(resolve(properties, settings).warnings)


# --- refusals ----------------------------------------------------------------------------------------------


def test_sasl_over_plaintext_is_refused_for_a_flows_source() -> None:
    (problem,) = resolve_problems(
        {"a.security.protocol": "SASL_PLAINTEXT", "a.sasl.mechanism": "SCRAM-SHA-256"},
        {"clusters": {"a": {"secret_arn": SECRET}}, "network": NAT},
    )
    assert problem.startswith("a->b: a.security.protocol = SASL_PLAINTEXT: ")
    assert "Lambda's Kafka event source speaks SASL only over TLS" in problem and "allowed: SASL_SSL" in problem
    # the target of a flow is written by the functions, which speak SASL over plaintext: not refused
    target = resolve(
        {"b.security.protocol": "SASL_PLAINTEXT", "b.sasl.mechanism": "PLAIN"},
        {"clusters": {"b": {"secret_arn": SECRET}}, "network": NAT},
    )
    assert target.clusters["b"].config.client["security.protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize(
    ("topic", "properties", "rule"),
    [
        ("orders", {"a->b.topics": "orders, audit-.*"}, "a->b.topics lists it"),
        ("audit-failures", {"a->b.topics": "orders, audit-.*"}, "a->b's topic filter (topics, topics.exclude) selects"),
        ("esm-failures", {}, "a->b's topic filter (topics, topics.exclude) selects"),  # the default .* does
        ("mm2-offset-syncs.b.internal", {}, "an internal topic"),
        ("heartbeats", {"a->b.topics": "orders"}, "an internal topic"),
        ("__consumer_offsets", {}, "an internal topic"),
        (".failures", {}, "Kafka and Lambda refuse this topic name"),
    ],
)
def test_a_kafka_failure_topic_that_cannot_work_is_refused(topic: str, properties: dict[str, str], rule: str) -> None:
    (problem,) = failure_topic_problems(topic, **properties)
    assert problem.startswith(f'a->b: event_source.on_failure = "kafka://{topic}": '), problem
    assert rule in problem


def test_a_failure_topic_the_flow_does_not_select_is_created_by_the_deployment() -> None:
    for properties in ({"a->b.topics": "orders, audit-.*"}, {"a->b.topics.exclude": "esm-failures"}):
        deployment = resolve(
            properties, {"network": NAT, "event_source": {**PROVISIONED, "on_failure": "kafka://esm-failures"}}
        )
        assert deployment.settings.event_source.on_failure == "kafka://esm-failures"


def test_the_heartbeat_alarm_must_outlast_the_time_between_two_heartbeats() -> None:
    (problem,) = resolve_problems({"emit.heartbeats.interval.seconds": "200"}, {"network": NAT})
    assert problem.startswith("alarms.heartbeat_age_seconds = 300: heartbeats reach a every 200 s at best")
    assert "emit.heartbeats.interval.seconds of b->a" in problem and "allowed: at least 400" in problem
    resolve({"emit.heartbeats.interval.seconds": "200"}, {"network": NAT, "alarms": {"heartbeat_age_seconds": 400}})


def test_every_refusal_is_listed_at_once() -> None:
    found = resolve_problems(
        {
            "a.security.protocol": "SASL_PLAINTEXT",
            "a.sasl.mechanism": "PLAIN",
            "emit.heartbeats.interval.seconds": "600",
        },
        {
            "clusters": {"a": {"secret_arn": SECRET}},
            "network": NAT,
            "event_source": {**PROVISIONED, "on_failure": "kafka://heartbeats"},
        },
    )
    assert [p.split(":")[0] for p in found] == ["a->b", "a->b", "alarms.heartbeat_age_seconds = 300"], found


# --- warnings ----------------------------------------------------------------------------------------------


def test_settings_that_let_a_mapping_skip_are_named_with_what_happens() -> None:
    (warning,) = warnings({}, {"network": NAT, "event_source": {**PROVISIONED, "max_retry_attempts": 3}})
    assert warning.startswith("a->b: event_source.max_retry_attempts = 3: the event-source mappings may move past")
    assert "copies the skipped range from the source itself" in warning and "RecoveredRecords alarm" in warning
    (both,) = warnings(
        {},
        {
            "network": NAT,
            "flow_event_sources": {"a->b": {**PROVISIONED, "max_record_age_seconds": 120, "on_failure": "sqs"}},
        },
    )
    assert both.startswith(
        'a->b: flow_event_sources.a->b.max_record_age_seconds = 120 and flow_event_sources.a->b.on_failure = "sqs": '
    )
    # -1 is Lambda's "forever": nothing is skipped
    assert warnings({}, {"network": NAT, "event_source": {**PROVISIONED, "max_retry_attempts": -1}}) == []


def test_the_warning_follows_what_lets_the_mapping_skip() -> None:
    """``skipping_settings`` names exactly the settings that make the mapping template's ``may_skip`` true."""
    for retries, age, destination in itertools.product((None, -1, 0, 5), (None, -1, 60), (None, "sqs", "kafka://f")):
        options = EventSourceSettings(max_retry_attempts=retries, max_record_age_seconds=age, on_failure=destination)
        template = EventSourceTemplate(
            "f", max_retry_attempts=retries, max_record_age_seconds=age, on_failure=destination
        )
        assert bool(skipping_settings(options)) == template.may_skip, (retries, age, destination)


def test_on_demand_pollers_in_a_vpc_get_the_endpoints_they_need_listed() -> None:
    settings = {"region": "eu-west-1", "network": NETWORK}
    (plain,) = warnings({}, settings)
    assert plain.startswith("a->b: on-demand event-source pollers (no event_source.provisioned_pollers) read a inside")
    assert "com.amazonaws.eu-west-1.lambda, com.amazonaws.eu-west-1.sts, or a NAT gateway" in plain
    assert 'set network.egress to "endpoints" or "nat"' in plain and "secretsmanager" not in plain
    (scram,) = warnings(SCRAM, {**settings, "clusters": {"a": {"secret_arn": SECRET}}})
    assert "com.amazonaws.eu-west-1.sts, com.amazonaws.eu-west-1.secretsmanager, or a NAT gateway" in scram
    own = {"a": {"event_source_network": NETWORK}}
    (separate,) = warnings({}, {"network": NAT, "clusters": own})
    assert "com.amazonaws.<region>.lambda" in separate  # no region pinned
    assert 'set clusters.a.event_source_network.egress to "endpoints"' in separate


def test_msk_pollers_need_their_security_group_to_admit_themselves() -> None:
    iam = {"a.security.protocol": "SASL_SSL", "a.sasl.mechanism": "AWS_MSK_IAM"}
    (warning,) = warnings(iam, {"network": NETWORK, "clusters": {"a": {"msk_cluster_arn": MSK_ARN}}})
    assert "read MSK cluster a, in the cluster's own subnets and security groups" in warning
    assert "allow inbound traffic from themselves" in warning


@pytest.mark.parametrize(
    "settings",
    [
        {"network": NAT},  # the path is there
        {"network": {**NETWORK, "egress": "endpoints"}},
        {"network": NETWORK, "event_source": PROVISIONED},  # provisioned pollers need no endpoints
    ],
)
def test_no_network_warning_where_the_path_is_known_or_not_needed(settings: dict[str, Any]) -> None:
    assert warnings({}, settings) == []


def test_self_managed_pollers_outside_a_vpc_need_no_endpoints() -> None:
    assert warnings(SCRAM, {"clusters": {"a": {"secret_arn": SECRET}}}) == []


def test_the_examples_pass_and_only_the_msk_retry_limit_is_worth_a_warning() -> None:
    def deployment(example: str) -> Any:
        return app.deployment_from(EXAMPLES / example / "mm2.properties", EXAMPLES / example / "deploy.json")

    (warning,) = deployment("msk").warnings
    assert warning.startswith(
        'primary->dr: event_source.max_retry_attempts = 10 and event_source.on_failure = "kafka://smm-esm-failures"'
    )
    hybrid = deployment("self-managed")
    assert hybrid.warnings == ()
    for flow in hybrid.mirrored_flows:  # unlimited retries: nothing lets a mapping skip
        assert skipping_settings(hybrid.settings.event_source_for(flow.name)) == []
