"""LambdaEsmReconciler against the Lambda API model, with botocore's Stubber (moto cannot model Kafka ESMs).

The Stubber checks every request against botocore's service model and the exact parameters expected here,
and fails on any call that was not expected, so "no call" is asserted too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from shared.aws import esm as esm_module
from shared.aws.config_source import EventSourceTemplate, ProvisionedPollers
from shared.aws.esm import EsmError, LambdaEsmReconciler
from shared.mm2 import config
from shared.mm2.config import FlowConfig, MirrorConfig

FUNCTION = "smm-mirror-onprem-cloud"
FUNCTION_ARN = f"arn:aws:lambda:eu-west-1:123456789012:function:{FUNCTION}"
MSK_ARN = "arn:aws:kafka:eu-west-1:123456789012:cluster/onprem/11111111-2222-3333-4444-555555555555-1"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_onprem-AbCdEf"
ACCESS = [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}]


def mirror_config(**settings: str) -> MirrorConfig:
    return config.parse(
        {
            "clusters": "onprem, cloud",
            "onprem.bootstrap.servers": "b-1.onprem:9096,b-2.onprem:9096",
            "cloud.bootstrap.servers": "b-1.cloud:9096",
            "onprem->cloud.enabled": "true",
            **settings,
        }
    )


FLOW: FlowConfig = mirror_config().flow("onprem", "cloud")


@pytest.fixture
def lambda_client() -> Iterator[Any]:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    yield client


@pytest.fixture
def stub(lambda_client: Any) -> Iterator[Stubber]:
    with Stubber(lambda_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def uuid_of(topic: str) -> str:
    """ESM UUIDs are 36-character UUIDs; one per topic, stable within a test."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, topic))


SERVERS = ("b-1.onprem:9096", "b-2.onprem:9096")
SELF_MANAGED = EventSourceTemplate(FUNCTION, access_configurations=(("SASL_SCRAM_512_AUTH", SECRET),))


def self_managed(client: Any, flow: FlowConfig = FLOW) -> LambdaEsmReconciler:
    return LambdaEsmReconciler(flow, client, SERVERS, SELF_MANAGED)


def esm(
    topic: str, state: str = "Enabled", uuid: str | None = None, group: str | None = None, **settings: Any
) -> dict[str, Any]:
    """A ListEventSourceMappings entry of a self-managed Kafka ESM."""
    return {
        "UUID": uuid or uuid_of(topic),
        "EventSourceMappingArn": arn_of(topic),
        "FunctionArn": FUNCTION_ARN,
        "State": state,
        "Topics": [topic],
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 100,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": False,
        "SourceAccessConfigurations": ACCESS,
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": list(SERVERS)}},
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group or FLOW.consumer_group_id(topic)},
        **settings,
    }


def arn_of(topic: str) -> str:
    return f"arn:aws:lambda:eu-west-1:123456789012:event-source-mapping:{uuid_of(topic)}"


def expect_list(
    stub: Stubber, *mappings: dict[str, Any], marker: str | None = None, next_marker: str | None = None
) -> None:
    params: dict[str, Any] = {"FunctionName": FUNCTION}
    if marker:
        params["Marker"] = marker
    response: dict[str, Any] = {"EventSourceMappings": list(mappings)}
    if next_marker:
        response["NextMarker"] = next_marker
    stub.add_response("list_event_source_mappings", response, params)


def test_creates_a_self_managed_esm_with_the_flows_consumer_group_and_auth(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub)
    stub.add_response(
        "create_event_source_mapping",
        {"UUID": uuid_of("orders"), "State": "Creating"},
        {
            "FunctionName": FUNCTION,
            "Topics": ["orders"],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "Enabled": True,
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.onprem:9096", "b-2.onprem:9096"]}
            },
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "smm:onprem:cloud:orders"},
            "SourceAccessConfigurations": ACCESS,
        },
    )
    changes = self_managed(lambda_client).reconcile(["orders"], ["orders"])
    assert changes.created == ["orders"] and changes.outcome == {"orders": "enabled"}


def test_creates_an_msk_esm_from_the_cluster_arn_with_the_flows_settings(lambda_client: Any, stub: Stubber) -> None:
    flow = mirror_config(
        **{"smm.batch.size": "500", "smm.batching.window.ms": "2000", "smm.starting.position": "LATEST"}
    ).flow("onprem", "cloud")
    expect_list(stub)
    stub.add_response(
        "create_event_source_mapping",
        {"UUID": uuid_of("payments")},
        {
            "FunctionName": FUNCTION,
            "Topics": ["payments"],
            "StartingPosition": "LATEST",
            "BatchSize": 500,
            "MaximumBatchingWindowInSeconds": 2,
            "Enabled": True,
            "EventSourceArn": MSK_ARN,
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "smm:onprem:cloud:payments"},
        },
    )
    reconciler = LambdaEsmReconciler(flow, lambda_client, ["b-1.onprem:9098"], EventSourceTemplate(FUNCTION, MSK_ARN))
    assert reconciler.reconcile(["payments"], ["payments"]).created == ["payments"]


def test_disables_an_unmatched_topic_and_deletes_one_gone_from_the_source(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub, esm("orders"), esm("legacy"), esm("dropped"))
    # calls go in topic order: dropped, legacy, orders
    stub.add_response(
        "delete_event_source_mapping", {"UUID": uuid_of("dropped"), "State": "Deleting"}, {"UUID": uuid_of("dropped")}
    )
    stub.add_response(
        "update_event_source_mapping",
        {"UUID": uuid_of("legacy"), "State": "Disabling"},
        {"UUID": uuid_of("legacy"), "Enabled": False},
    )
    changes = self_managed(lambda_client).reconcile(["orders"], ["orders", "legacy"])
    assert changes.disabled == ["legacy"] and changes.deleted == ["dropped"] and not changes.created
    assert changes.outcome == {"orders": "enabled", "legacy": "disabled", "dropped": "deleted"}


def test_re_enables_a_disabled_esm_when_its_topic_matches_again(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub, esm("orders", state="Disabled"))
    stub.add_response(
        "update_event_source_mapping", {"UUID": uuid_of("orders")}, {"UUID": uuid_of("orders"), "Enabled": True}
    )
    assert self_managed(lambda_client).reconcile(["orders"], ["orders"]).enabled == ["orders"]


def test_a_second_run_changes_nothing(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub, esm("orders"), esm("legacy", state="Disabled"))
    changes = self_managed(lambda_client).reconcile(["orders"], ["orders", "legacy"])
    assert not changes and changes.outcome == {"orders": "enabled", "legacy": "disabled"}


def test_leaves_other_mappings_and_transitions_alone(lambda_client: Any, stub: Stubber) -> None:
    other_flow = mirror_config(**{"cloud->onprem.enabled": "true"}).flow("cloud", "onprem")
    expect_list(
        stub,
        esm("orders", group="a-console-made-group"),  # not this flow's group id: not ours
        esm("payments", group=other_flow.consumer_group_id("payments")),
        esm("refunds", state="Creating"),
    )
    # "orders" and "payments" have no ESM of this flow, so they get one; "refunds" is still being created.
    for topic in ("orders", "payments"):
        stub.add_response("create_event_source_mapping", {"UUID": uuid_of(topic)})
    changes = self_managed(lambda_client).reconcile(
        ["orders", "payments", "refunds"], ["orders", "payments", "refunds"]
    )
    assert changes.created == ["orders", "payments"]
    assert changes.outcome["refunds"] == "pending:Creating"


def test_follows_pagination(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub, esm("a"), next_marker="page-2")
    expect_list(stub, esm("b"), marker="page-2")
    assert sorted(self_managed(lambda_client).mappings()) == ["a", "b"]


def test_a_mapping_created_concurrently_is_not_an_error(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub)
    stub.add_client_error("create_event_source_mapping", "ResourceConflictException", http_status_code=409)
    assert self_managed(lambda_client).reconcile(["orders"], ["orders"]).created == ["orders"]


def test_api_failures_name_the_function_and_the_topic(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub)
    stub.add_client_error("create_event_source_mapping", "TooManyRequestsException", "Rate exceeded", 429)
    with pytest.raises(EsmError, match=r"creating the event-source mapping of topic 'orders' of Lambda function"):
        self_managed(lambda_client).reconcile(["orders"], ["orders"])


def test_no_template_for_the_flow_means_no_mirror_function_deployed(
    lambda_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMM_EVENT_SOURCES_PARAMETER", raising=False)
    monkeypatch.setenv("SMM_EVENT_SOURCES", json.dumps({"cloud->onprem": {"FunctionName": "other"}}))
    assert LambdaEsmReconciler.from_environment(FLOW, mirror_config(), lambda_client) is None


def test_the_deployments_event_source_template_wins(
    lambda_client: Any, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mapping gets the parameters of the template the stack wrote for the flow."""
    template = {
        "FunctionName": FUNCTION,
        "SourceAccessConfigurations": ACCESS,
        "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 3},
        "DestinationConfig": {"OnFailure": {"Destination": "kafka://smm-dead-letter"}},
        "MaximumRetryAttempts": 10,
    }
    monkeypatch.setenv("SMM_EVENT_SOURCES", json.dumps({"onprem->cloud": template}))
    reconciler = LambdaEsmReconciler.from_environment(FLOW, mirror_config(), lambda_client)
    assert reconciler is not None and reconciler.function_name == FUNCTION
    expect_list(stub)
    stub.add_response(
        "create_event_source_mapping",
        {"UUID": uuid_of("orders")},
        {
            **template,
            "Topics": ["orders"],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "Enabled": True,
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.onprem:9096", "b-2.onprem:9096"]}
            },
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "smm:onprem:cloud:orders"},
        },
    )
    assert reconciler.reconcile(["orders"], ["orders"]).created == ["orders"]


# --- a deployment's mappings: owned by tags, reconciled setting by setting, removed on delete ------------------

DEPLOYED = EventSourceTemplate(
    FUNCTION,
    access_configurations=(("SASL_SCRAM_512_AUTH", SECRET),),
    deployment="smm-prod",
)
OURS = {"smm:deployment": "smm-prod", "smm:flow": "onprem->cloud"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def deployed(
    client: Any, template: EventSourceTemplate = DEPLOYED, clock: FakeClock | None = None
) -> LambdaEsmReconciler:
    clock = clock or FakeClock()
    return LambdaEsmReconciler(FLOW, client, SERVERS, template, sleep=clock.sleep, clock=clock)


def expect_tags(stub: Stubber, topic: str, tags: dict[str, str]) -> None:
    stub.add_response("list_tags", {"Tags": tags}, {"Resource": arn_of(topic)})


def test_a_deployment_creates_tagged_mappings_and_touches_only_its_own(lambda_client: Any, stub: Stubber) -> None:
    expect_list(stub, esm("orders"), esm("payments"), esm("refunds"))
    expect_tags(stub, "orders", {})  # made by hand with our group id: not ours
    expect_tags(stub, "payments", {"smm:deployment": "smm-staging", "smm:flow": "onprem->cloud"})  # another stack
    expect_tags(stub, "refunds", OURS)
    for topic in ("orders", "payments"):
        params = deployed(lambda_client).create_parameters(topic)
        assert params["Tags"] == OURS
        stub.add_client_error("create_event_source_mapping", "ResourceConflictException", http_status_code=409)
    changes = deployed(lambda_client).reconcile(["orders", "payments", "refunds"], ["orders", "payments", "refunds"])
    # neither foreign mapping was updated, disabled or deleted; ours (refunds) matches the template: no call
    assert changes.created == ["orders", "payments"] and not changes.updated and not changes.disabled


def test_a_tag_lookup_is_made_once_per_mapping(lambda_client: Any, stub: Stubber) -> None:
    reconciler = deployed(lambda_client)
    expect_list(stub, esm("orders"))
    expect_tags(stub, "orders", OURS)
    expect_list(stub, esm("orders"))
    assert list(reconciler.mappings()) == ["orders"] and list(reconciler.mappings()) == ["orders"]


@pytest.mark.parametrize(
    ("template", "current", "update"),
    [
        (DEPLOYED, {"BatchSize": 10}, {"BatchSize": 100}),
        (
            EventSourceTemplate(
                FUNCTION,
                access_configurations=DEPLOYED.access_configurations,
                deployment="smm-prod",
                max_retry_attempts=5,
                bisect_batch_on_error=True,
                on_failure="kafka://smm-failed",
                metrics=("EventCount",),
            ),
            {},
            {
                "MaximumRetryAttempts": 5,
                "BisectBatchOnFunctionError": True,
                "DestinationConfig": {"OnFailure": {"Destination": "kafka://smm-failed"}},
                "MetricsConfig": {"Metrics": ["EventCount"]},
            },
        ),
        (  # settings removed from the deploy settings go back to Lambda's defaults
            DEPLOYED,
            {"MaximumRetryAttempts": 10, "DestinationConfig": {"OnFailure": {"Destination": "kafka://smm-failed"}}},
            {"MaximumRetryAttempts": -1, "DestinationConfig": {"OnFailure": {"Destination": ""}}},
        ),
        (
            DEPLOYED,
            {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": SECRET}]},
            {"SourceAccessConfigurations": ACCESS},
        ),
        (
            EventSourceTemplate(
                FUNCTION,
                access_configurations=DEPLOYED.access_configurations,
                deployment="smm-prod",
                pollers=ProvisionedPollers(1, 4),
            ),
            {"ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 2}},
            {"ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 4}},
        ),
    ],
    ids=["batch-size", "retries-bisect-destination-metrics", "back-to-defaults", "access", "pollers"],
)
def test_mutable_settings_are_updated_in_place(
    lambda_client: Any, stub: Stubber, template: EventSourceTemplate, current: dict[str, Any], update: dict[str, Any]
) -> None:
    expect_list(stub, esm("orders", **current))
    expect_tags(stub, "orders", OURS)
    stub.add_response("update_event_source_mapping", {}, {"UUID": uuid_of("orders"), **update})
    changes = deployed(lambda_client, template).reconcile(["orders"], ["orders"])
    assert changes.updated == ["orders"] and not changes.replaced and changes.outcome == {"orders": "enabled"}


@pytest.mark.parametrize(
    ("current", "template"),
    [
        ({"StartingPosition": "LATEST"}, DEPLOYED),
        ({"SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["old-broker:9096"]}}}, DEPLOYED),
        ({"ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 2}}, DEPLOYED),  # back to on-demand
    ],
    ids=["starting-position", "bootstrap-servers", "provisioned-to-on-demand"],
)
def test_create_only_settings_delete_and_re_create_with_the_same_group(
    lambda_client: Any, stub: Stubber, current: dict[str, Any], template: EventSourceTemplate
) -> None:
    expect_list(stub, esm("orders", **current))
    expect_tags(stub, "orders", OURS)
    stub.add_response("delete_event_source_mapping", {"State": "Deleting"}, {"UUID": uuid_of("orders")})
    stub.add_response("get_event_source_mapping", {"State": "Deleting"}, {"UUID": uuid_of("orders")})
    stub.add_client_error("get_event_source_mapping", "ResourceNotFoundException", http_status_code=404)
    reconciler = deployed(lambda_client, template)
    wanted = reconciler.create_parameters("orders")
    assert wanted["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": FLOW.consumer_group_id("orders")}
    stub.add_response("create_event_source_mapping", {"UUID": uuid_of("orders-new")}, wanted)
    changes = reconciler.reconcile(["orders"], ["orders"])
    assert changes.replaced == ["orders"] and changes.outcome == {"orders": "enabled"}


def test_a_replacement_whose_old_mapping_lingers_is_finished_by_the_next_run(lambda_client: Any, stub: Stubber) -> None:
    clock = FakeClock()
    expect_list(stub, esm("orders", StartingPosition="LATEST"))
    expect_tags(stub, "orders", OURS)
    stub.add_response("delete_event_source_mapping", {"State": "Deleting"}, {"UUID": uuid_of("orders")})
    for _ in range(13):  # checked before each of 12 waits (1, 2, 4, 8, then 10 s) and once past the 90 s budget
        stub.add_response("get_event_source_mapping", {"State": "Deleting"}, {"UUID": uuid_of("orders")})
    reconciler = deployed(lambda_client, clock=clock)
    changes = reconciler.reconcile(["orders"], ["orders"])
    assert changes.outcome == {"orders": "pending:Deleting"} and not changes.replaced
    assert clock.now == 95 and clock.slept[:5] == [1, 2, 4, 8, 10] and max(clock.slept) == 10  # capped backoff
    # next run: the old one is gone, so the topic simply gets its mapping
    expect_list(stub)
    stub.add_response(
        "create_event_source_mapping", {"UUID": uuid_of("orders-new")}, reconciler.create_parameters("orders")
    )
    assert reconciler.reconcile(["orders"], ["orders"]).created == ["orders"]


def test_mappings_that_do_not_poll_are_reported_with_their_reason(lambda_client: Any, stub: Stubber) -> None:
    expect_list(
        stub,
        esm("orders", LastProcessingResult="PROBLEM: SASL authentication failed"),
        esm("payments", state="Creating", StateTransitionReason="USER_INITIATED"),
        esm("refunds", LastProcessingResult="OK"),
    )
    for topic in ("orders", "payments", "refunds"):
        expect_tags(stub, topic, OURS)
    changes = deployed(lambda_client).reconcile(["orders", "payments", "refunds"], ["orders", "payments", "refunds"])
    assert changes.not_polling == {
        "orders": "Enabled: PROBLEM: SASL authentication failed",
        "payments": "Creating: USER_INITIATED",
    }


def test_deleting_a_deployment_removes_only_its_tagged_mappings(lambda_client: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "list_event_source_mappings",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params={"FunctionName": "smm-mirror-gone"},
    )
    expect_list(stub, esm("orders"), esm("payments"))
    expect_tags(stub, "orders", OURS)
    stub.add_response("delete_event_source_mapping", {}, {"UUID": uuid_of("orders")})
    expect_tags(stub, "payments", {"smm:deployment": "someone-else"})
    assert esm_module.delete_deployment_mappings(lambda_client, [FUNCTION, "smm-mirror-gone"], "smm-prod") == [
        uuid_of("orders")
    ]


def test_a_template_changed_by_a_deployment_is_followed_without_a_new_container(
    lambda_client: Any, stub: Stubber
) -> None:
    templates = [DEPLOYED]
    reconciler = LambdaEsmReconciler(FLOW, lambda_client, SERVERS, DEPLOYED, reload=lambda: templates[-1])
    expect_list(stub, esm("orders"))
    expect_tags(stub, "orders", OURS)
    assert not reconciler.reconcile(["orders"], ["orders"])
    templates.append(EventSourceTemplate(**{**vars(DEPLOYED), "max_retry_attempts": 3}))
    expect_list(stub, esm("orders"))
    stub.add_response("update_event_source_mapping", {}, {"UUID": uuid_of("orders"), "MaximumRetryAttempts": 3})
    assert reconciler.reconcile(["orders"], ["orders"]).updated == ["orders"]
