"""Config sync's ESM reconciliation, driven through botocore's Stubber, against the IAM policy the stack grants.

Every Lambda API call the reconciler makes is checked against the synthesized config-sync policy (action,
resource ARN and the lambda:FunctionArn condition) before the Stubber answers it. moto cannot model Kafka ESMs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import boto3
import pytest
from botocore.stub import Stubber

from shared.aws import config_source
from shared.aws.config_source import EventSourceTemplate
from tests.infra.support import ACCOUNT, REGION, Policy, Synthesized, render

esm = pytest.importorskip("shared.aws.esm")

NEW = str(uuid5(NAMESPACE_URL, "created"))
OTHER_FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:someone-elses-function"


class CheckedLambda:
    """A Lambda client whose every call must be allowed by ``policy`` (denials are collected, not raised)."""

    def __init__(self, policy: Policy, function_arns: dict[str, str]) -> None:
        self.client = boto3.client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        self.policy = policy
        self.function_arns = function_arns  # function name -> ARN
        self.owners: dict[str, str] = {}  # ESM UUID -> function ARN
        self.calls: list[str] = []
        self.denied: list[str] = []
        self.client.meta.events.register("before-parameter-build.lambda.*", self._check)

    def _check(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        action = f"lambda:{model.name}"
        self.calls.append(action)
        context: dict[str, str] = {}
        resource = "*"
        if "UUID" in params:
            resource = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{params['UUID']}"
            context["lambda:FunctionArn"] = self.owners[params["UUID"]]
        elif model.name == "CreateEventSourceMapping":
            context["lambda:FunctionArn"] = self.function_arns.get(params["FunctionName"], OTHER_FUNCTION_ARN)
        if not self.policy.allows(action, resource, context):
            self.denied.append(f"{action} on {resource} {context}")


def deployed(s: Synthesized) -> tuple[Policy, dict[str, EventSourceTemplate], dict[str, str]]:
    """The config-sync policy and the event-source templates as deployed (Refs and ARNs made concrete)."""
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    for mirror in s.stack.mirrors:
        logical_id = s.logical_id(mirror.function)
        name = f"smm-mirror-{mirror.flow.source}-{mirror.flow.target}"
        refs[logical_id] = name
        refs[f"{logical_id}.Arn"] = arns[name] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    for logical_id in s.resources:
        refs.setdefault(logical_id, f"{logical_id}-physical")
        refs.setdefault(f"{logical_id}.Arn", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{logical_id}")
    role = s.stack.config_sync.scheduled.smm.role
    policy = Policy(s.resources, s.logical_id(role.node.find_child("DefaultPolicy")), refs)
    parameter = s.resources[s.logical_id(s.stack.event_sources_parameter)]["Properties"]["Value"]
    templates = {
        flow: EventSourceTemplate.from_json(flow, value) for flow, value in json.loads(render(parameter, refs)).items()
    }
    return policy, templates, arns


@pytest.fixture
def checked(example: Synthesized) -> Iterator[tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]]]:
    policy, templates, arns = deployed(example)
    lam = CheckedLambda(policy, arns)
    with Stubber(lam.client) as stubber:
        lam.stubber = stubber  # type: ignore[attr-defined]
        yield example, lam, templates
        stubber.assert_no_pending_responses()


def reconciler(s: Synthesized, lam: CheckedLambda, template: EventSourceTemplate, flow_name: str) -> Any:
    flow = next(f for f in s.deployment.mirrored_flows if f.name == flow_name)
    source = s.deployment.config.cluster(flow.source)
    access = [{"Type": t, "URI": u} for t, u in template.access_configurations]
    return flow, esm.LambdaEsmReconciler(
        flow, template.function_name, lam.client, source.bootstrap_servers, template.msk_cluster_arn, access
    )


def listed(
    flow: Any, template: EventSourceTemplate, lam: CheckedLambda, topic: str, state: str, owner: str
) -> dict[str, Any]:
    uuid = str(uuid5(NAMESPACE_URL, f"{flow.name}/{topic}"))
    lam.owners[uuid] = owner
    config = {"ConsumerGroupId": flow.consumer_group_id(topic)}
    kafka = (
        {"AmazonManagedKafkaEventSourceConfig": config}
        if template.msk_cluster_arn
        else {"SelfManagedKafkaEventSourceConfig": config}
    )
    return {"UUID": uuid, "FunctionArn": owner, "State": state, "Topics": [topic], **kafka}


def test_every_reconciling_call_is_allowed_for_the_deployments_mirror_functions(
    checked: tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]],
) -> None:
    s, lam, templates = checked
    stub: Stubber = lam.stubber  # type: ignore[attr-defined]
    for flow_name, template in templates.items():
        flow, rec = reconciler(s, lam, template, flow_name)
        owner = lam.function_arns[template.function_name]
        existing = [
            listed(flow, template, lam, "stays", "Enabled", owner),
            listed(flow, template, lam, "unmatched", "Enabled", owner),
            listed(flow, template, lam, "resumed", "Disabled", owner),
            listed(flow, template, lam, "gone", "Enabled", owner),
        ]
        stub.add_response(
            "list_event_source_mappings", {"EventSourceMappings": existing}, {"FunctionName": template.function_name}
        )
        stub.add_response("create_event_source_mapping", {"UUID": NEW})  # "discovered"
        stub.add_response("delete_event_source_mapping", {})  # "gone"
        stub.add_response("update_event_source_mapping", {})  # "resumed" (enable)
        stub.add_response("update_event_source_mapping", {})  # "unmatched" (disable)
        changes = rec.reconcile(["stays", "resumed", "discovered"], ["stays", "unmatched", "resumed", "discovered"])
        assert (changes.created, changes.enabled, changes.disabled, changes.deleted) == (
            ["discovered"],
            ["resumed"],
            ["unmatched"],
            ["gone"],
        )
    assert lam.denied == []
    assert set(lam.calls) == {
        "lambda:ListEventSourceMappings",
        "lambda:CreateEventSourceMapping",
        "lambda:UpdateEventSourceMapping",
        "lambda:DeleteEventSourceMapping",
    }


def test_the_same_calls_for_another_function_are_denied(
    checked: tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]],
) -> None:
    s, lam, templates = checked
    stub: Stubber = lam.stubber  # type: ignore[attr-defined]
    flow_name, template = next(iter(templates.items()))
    stranger = EventSourceTemplate("someone-elses-function", template.msk_cluster_arn, template.access_configurations)
    flow, rec = reconciler(s, lam, stranger, flow_name)
    stub.add_response(
        "list_event_source_mappings",
        {"EventSourceMappings": [listed(flow, stranger, lam, "old", "Enabled", OTHER_FUNCTION_ARN)]},
        {"FunctionName": "someone-elses-function"},
    )
    stub.add_response("create_event_source_mapping", {"UUID": NEW})
    stub.add_response("update_event_source_mapping", {})
    rec.reconcile(["new"], ["new", "old"])
    assert len(lam.denied) == 2
    assert lam.denied[0].startswith("lambda:CreateEventSourceMapping") and "UpdateEventSourceMapping" in lam.denied[1]


def test_the_stack_policy_matches_what_the_templates_name(example: Synthesized) -> None:
    """Each template names a mirror function of this deployment, and config sync may create ESMs for it."""
    policy, templates, arns = deployed(example)
    for template in templates.values():
        assert template.function_name in arns
        assert policy.allows(
            "lambda:CreateEventSourceMapping", "*", {"lambda:FunctionArn": arns[template.function_name]}
        )
    assert config_source.EVENT_SOURCES_PARAMETER_ENV == "SMM_EVENT_SOURCES_PARAMETER"
