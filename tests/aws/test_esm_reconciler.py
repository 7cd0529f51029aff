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


def self_managed(client: Any, flow: FlowConfig = FLOW) -> LambdaEsmReconciler:
    servers = ("b-1.onprem:9096", "b-2.onprem:9096")
    return LambdaEsmReconciler(flow, FUNCTION, client, servers, access_configurations=ACCESS)


def esm(topic: str, state: str = "Enabled", uuid: str | None = None, group: str | None = None) -> dict[str, Any]:
    """A ListEventSourceMappings entry of a self-managed Kafka ESM."""
    return {
        "UUID": uuid or uuid_of(topic),
        "FunctionArn": FUNCTION_ARN,
        "State": state,
        "Topics": [topic],
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.onprem:9096"]}},
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group or FLOW.consumer_group_id(topic)},
    }


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
    reconciler = LambdaEsmReconciler(flow, FUNCTION, lambda_client, ["b-1.onprem:9098"], source_cluster_arn=MSK_ARN)
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


def test_from_environment(lambda_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = mirror_config()
    for name in ("SMM_MIRROR_FUNCTION", "SMM_EVENT_SOURCES", "SMM_EVENT_SOURCES_PARAMETER"):
        monkeypatch.delenv(name, raising=False)
    assert LambdaEsmReconciler.from_environment(FLOW, cfg, lambda_client) is None
    monkeypatch.setenv("SMM_MIRROR_FUNCTION", FUNCTION)
    monkeypatch.setenv("SMM_SOURCE_CLUSTER_ARN", MSK_ARN)
    monkeypatch.setenv("SMM_SOURCE_ACCESS_CONFIGURATIONS", json.dumps(ACCESS))
    reconciler = LambdaEsmReconciler.from_environment(FLOW, cfg, lambda_client)
    assert reconciler is not None
    params = reconciler.create_parameters("orders")
    assert params["EventSourceArn"] == MSK_ARN and params["SourceAccessConfigurations"] == ACCESS
    assert "SelfManagedEventSource" not in params


def test_the_deployments_event_source_template_wins(
    lambda_client: Any, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic found later gets an ESM with the same parameters as those the stack made for listed topics."""
    template = {
        "FunctionName": FUNCTION,
        "SourceAccessConfigurations": ACCESS,
        "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 3},
        "DestinationConfig": {"OnFailure": {"Destination": "kafka://smm-dead-letter"}},
        "MaximumRetryAttempts": 10,
    }
    monkeypatch.setenv("SMM_EVENT_SOURCES", json.dumps({"onprem->cloud": template}))
    monkeypatch.setenv("SMM_MIRROR_FUNCTION", "ignored-when-a-template-exists")
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
