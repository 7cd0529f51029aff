"""Config sync as the deployment's custom resource: every request is answered, cluster trouble does not fail a
deploy, an invalid configuration does, and delete removes the deployment's mappings only.

CloudFormation's side is a local HTTP server standing in for the pre-signed response URL; Lambda's API is
botocore's Stubber (its calls checked against the service model).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions import scheduled
from functions.config_sync import deployment
from shared.aws import clients as aws_clients
from shared.aws import custom_resource
from shared.mm2.config import ConfigError


class Answers:
    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def event(self, kind: str, properties: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
        event = {
            "RequestType": kind,
            "ResponseURL": f"http://127.0.0.1:{self.server.server_port}/",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/smm/1",
            "RequestId": "r-1",
            "LogicalResourceId": "ConfigSyncOnDeploy",
            "ResourceProperties": properties,
        }
        if old is not None:
            event["OldResourceProperties"] = old
        return event


@pytest.fixture
def answers() -> Iterator[Answers]:
    a = Answers()
    yield a
    a.server.shutdown()
    a.server.server_close()


class Context:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


class Flaky:
    """A config-sync task whose first ``failures`` runs fail like an unreachable cluster."""

    name = "config-sync"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    def interval_seconds(self) -> float:
        return 600.0

    def run_once(self) -> dict[str, Any]:
        self.runs += 1
        if self.runs <= self.failures:
            raise OSError("cluster A unreachable")
        return {"esm": {"created": ["orders"]}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_only_cloudformation_requests_are_taken_for_one() -> None:
    assert not custom_resource.is_request({"schedule": "config-sync", "periodSeconds": 600})
    assert custom_resource.is_request(
        {k: "x" for k in ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId")}
        | {"ResourceProperties": {}}
    )


def test_a_briefly_unreachable_cluster_is_retried_with_a_capped_backoff(answers: Answers) -> None:
    task, clock = Flaky(failures=3), Clock()
    result = deployment.on_request(
        answers.event("Create", {"Deployment": "smm"}), Context(300), lambda: {"A->B": task}, clock, clock.sleep
    )
    assert result["Status"] == "SUCCESS" and task.runs == 4 and clock.slept == [1, 2, 4]
    (answer,) = answers.received
    assert answer == {
        "Status": "SUCCESS",
        "Reason": "config sync ran for 1 flow(s); 1 event-source mapping(s) created",
        "PhysicalResourceId": "smm-config-sync",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/smm/1",
        "RequestId": "r-1",
        "LogicalResourceId": "ConfigSyncOnDeploy",
        "NoEcho": False,
        "Data": {},
    }


def test_a_cluster_down_for_the_whole_budget_does_not_fail_the_deploy(answers: Answers) -> None:
    task, clock = Flaky(failures=1000), Clock()
    # 100 s left, 30 kept for the answer: retried for at most 70 s, backoff capped at 30 s
    deployment.on_request(
        answers.event("Update", {"Deployment": "smm"}, {}), Context(100), lambda: {"A->B": task}, clock, clock.sleep
    )
    (answer,) = answers.received
    assert answer["Status"] == "SUCCESS"
    assert answer["Reason"].endswith("not finished, retried by the schedule: A->B: OSError: cluster A unreachable")
    assert clock.now <= 70 and max(clock.slept) <= scheduled.RETRY_MAX_SECONDS


def test_an_invalid_configuration_fails_the_deploy(answers: Answers) -> None:
    def invalid() -> dict[str, Any]:
        raise ConfigError(["A->B.topics = (: not a regular expression"])

    deployment.on_request(answers.event("Create", {"Deployment": "smm"}), Context(300), invalid)
    (answer,) = answers.received
    assert answer["Status"] == "FAILED" and "A->B.topics = (" in answer["Reason"]


def test_an_unexpected_failure_is_still_answered(answers: Answers) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    assert deployment.on_request(answers.event("Create", {"Deployment": "smm"}), Context(300), broken)["Status"] == (
        "FAILED"
    )
    assert answers.received[0]["Reason"] == "RuntimeError: boom"


@pytest.fixture
def lambda_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(aws_clients, "lambda_client", lambda: client)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _mapping(uuid: str) -> dict[str, Any]:
    return {"UUID": uuid, "EventSourceMappingArn": f"arn:aws:lambda:eu-west-1:123456789012:event-source-mapping:{uuid}"}


def test_delete_removes_the_deployments_mappings(answers: Answers, lambda_api: Stubber) -> None:
    ours, theirs = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    lambda_api.add_response(
        "list_event_source_mappings", {"EventSourceMappings": [_mapping(ours), _mapping(theirs)]}, {"FunctionName": "m"}
    )
    lambda_api.add_response(
        "list_tags", {"Tags": {"smm:deployment": "smm"}}, {"Resource": _mapping(ours)["EventSourceMappingArn"]}
    )
    lambda_api.add_response("delete_event_source_mapping", {}, {"UUID": ours})
    lambda_api.add_response("list_tags", {"Tags": {}}, {"Resource": _mapping(theirs)["EventSourceMappingArn"]})
    event = answers.event("Delete", {"Deployment": "smm", "MirrorFunctions": ["m"]})
    deployment.on_request(event, Context(300), lambda: {})
    assert answers.received[0]["Status"] == "SUCCESS"
    assert answers.received[0]["Reason"] == "deleted 1 event-source mapping(s) of deployment smm"


def test_an_update_that_drops_a_flow_removes_its_functions_mappings(answers: Answers, lambda_api: Stubber) -> None:
    uuid = "33333333-3333-3333-3333-333333333333"
    lambda_api.add_response(
        "list_event_source_mappings", {"EventSourceMappings": [_mapping(uuid)]}, {"FunctionName": "dropped"}
    )
    lambda_api.add_response(
        "list_tags", {"Tags": {"smm:deployment": "smm"}}, {"Resource": _mapping(uuid)["EventSourceMappingArn"]}
    )
    lambda_api.add_response("delete_event_source_mapping", {}, {"UUID": uuid})
    event = answers.event(
        "Update",
        {"Deployment": "smm", "MirrorFunctions": ["kept"]},
        {"Deployment": "smm", "MirrorFunctions": ["kept", "dropped"]},
    )
    deployment.on_request(event, Context(300), lambda: {"A->B": Flaky(0)})
    assert answers.received[0]["Status"] == "SUCCESS"
    assert answers.received[0]["Reason"].endswith("; deleted 1 event-source mapping(s) of deployment smm")


def test_a_failed_delete_says_what_failed(answers: Answers, lambda_api: Stubber) -> None:
    lambda_api.add_client_error("list_event_source_mappings", "AccessDeniedException", "not allowed", 403)
    deployment.on_request(answers.event("Delete", {"Deployment": "smm", "MirrorFunctions": ["m"]}), Context(300), dict)
    assert answers.received[0]["Status"] == "FAILED"
    assert "listing the event-source mappings of Lambda function 'm'" in answers.received[0]["Reason"]
