"""Config sync's ESM reconciliation, driven through botocore's Stubber, against the IAM policy the stack grants.

Every Lambda API call the reconciler makes is checked against the synthesized config-sync policy (action,
resource ARN, the lambda:FunctionArn condition and, for tags, aws:RequestTag and aws:TagKeys) before the Stubber
answers it. moto cannot model Kafka ESMs.
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
from shared.aws.config_source import DEPLOYMENT_TAG, FLOW_TAG, EventSourceTemplate
from tests.infra.support import ACCOUNT, REGION, Context, Policy, Synthesized, render

esm = pytest.importorskip("shared.aws.esm")

NEW = str(uuid5(NAMESPACE_URL, "created"))
OTHER_FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:someone-elses-function"
# What ListEventSourceMappings describes of a mapping, of what CreateEventSourceMapping took.
NOT_DESCRIBED = ("FunctionName", "Enabled", "Tags")


def mapping_arn(uuid: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid}"


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
        context: dict[str, str | list[str]] = {}
        resource = "*"
        if "UUID" in params:
            resource = mapping_arn(params["UUID"])
            context["lambda:FunctionArn"] = self.owners[params["UUID"]]
        elif model.name == "ListTags":
            resource = params["Resource"]
        elif model.name == "CreateEventSourceMapping":
            context["lambda:FunctionArn"] = self.function_arns.get(params["FunctionName"], OTHER_FUNCTION_ARN)
            if "Tags" in params:  # tagging on create is authorized as TagResource on the new mapping
                tags: dict[str, str] = params["Tags"]
                self._ask("lambda:TagResource", mapping_arn(NEW), {**_request_tags(tags)})
        self._ask(action, resource, context)

    def _ask(self, action: str, resource: str, context: Context) -> None:
        self.calls.append(action)
        if not self.policy.allows(action, resource, context):
            self.denied.append(f"{action} on {resource} {context}")


def _request_tags(tags: dict[str, str]) -> dict[str, str | list[str]]:
    """The IAM request context of a request that sets ``tags``."""
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


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
    return flow, esm.LambdaEsmReconciler(flow, lam.client, source.bootstrap_servers, template)


def listed(rec: Any, lam: CheckedLambda, topic: str, state: str, owner: str, **changed: Any) -> dict[str, Any]:
    """A ListEventSourceMappings entry of a mapping created as ``rec`` creates one (with ``changed`` settings)."""
    uuid = str(uuid5(NAMESPACE_URL, f"{rec.flow.name}/{topic}"))
    lam.owners[uuid] = owner
    created = {k: v for k, v in rec.create_parameters(topic).items() if k not in NOT_DESCRIBED}
    return {
        **created,
        "UUID": uuid,
        "EventSourceMappingArn": mapping_arn(uuid),
        "FunctionArn": owner,
        "State": state,
        **changed,
    }


def expect_tags(stub: Stubber, mapping: dict[str, Any], tags: dict[str, str]) -> None:
    stub.add_response("list_tags", {"Tags": tags}, {"Resource": mapping["EventSourceMappingArn"]})


def test_every_reconciling_call_is_allowed_for_the_deployments_mirror_functions(
    checked: tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]],
) -> None:
    s, lam, templates = checked
    stub: Stubber = lam.stubber  # type: ignore[attr-defined]
    for flow_name, template in templates.items():
        assert template.deployment == s.deployment.settings.name  # every mapping is created tagged
        flow, rec = reconciler(s, lam, template, flow_name)
        owner = lam.function_arns[template.function_name]
        moved_from = "LATEST" if flow.settings.starting_position == "TRIM_HORIZON" else "TRIM_HORIZON"
        existing = [
            listed(rec, lam, "stays", "Enabled", owner),
            listed(rec, lam, "unmatched", "Enabled", owner),
            listed(rec, lam, "resumed", "Disabled", owner),
            listed(rec, lam, "gone", "Enabled", owner),
            listed(rec, lam, "moved", "Enabled", owner, StartingPosition=moved_from),  # a create-only change
        ]
        stub.add_response(
            "list_event_source_mappings", {"EventSourceMappings": existing}, {"FunctionName": template.function_name}
        )
        for mapping in existing:
            expect_tags(stub, mapping, {DEPLOYMENT_TAG: template.deployment, FLOW_TAG: flow_name})
        stub.add_response("create_event_source_mapping", {"UUID": NEW})  # "discovered"
        stub.add_response("delete_event_source_mapping", {})  # "gone"
        stub.add_response("delete_event_source_mapping", {})  # "moved": deleted, gone, created again
        stub.add_client_error("get_event_source_mapping", "ResourceNotFoundException", http_status_code=404)
        stub.add_response("create_event_source_mapping", {"UUID": NEW})
        stub.add_response("update_event_source_mapping", {})  # "resumed" (enable)
        stub.add_response("update_event_source_mapping", {})  # "unmatched" (disable)
        changes = rec.reconcile(
            ["stays", "resumed", "discovered", "moved"], ["stays", "unmatched", "resumed", "discovered", "moved"]
        )
        assert (changes.created, changes.replaced, changes.enabled, changes.disabled, changes.deleted) == (
            ["discovered"],
            ["moved"],
            ["resumed"],
            ["unmatched"],
            ["gone"],
        )
    assert lam.denied == []
    assert set(lam.calls) == {
        "lambda:ListEventSourceMappings",
        "lambda:ListTags",
        "lambda:CreateEventSourceMapping",
        "lambda:TagResource",
        "lambda:GetEventSourceMapping",
        "lambda:UpdateEventSourceMapping",
        "lambda:DeleteEventSourceMapping",
    }


def test_the_delete_time_cleanup_is_allowed(
    checked: tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]],
) -> None:
    """What the deploy hook runs on ``cdk destroy``: every tagged mapping of the mirror functions goes."""
    s, lam, templates = checked
    stub: Stubber = lam.stubber  # type: ignore[attr-defined]
    names = sorted(t.function_name for t in templates.values())
    for name in names:
        flow_name = next(f for f, t in templates.items() if t.function_name == name)
        _, rec = reconciler(s, lam, templates[flow_name], flow_name)
        mapping = listed(rec, lam, "orders", "Enabled", lam.function_arns[name])
        stub.add_response("list_event_source_mappings", {"EventSourceMappings": [mapping]}, {"FunctionName": name})
        expect_tags(stub, mapping, {DEPLOYMENT_TAG: s.deployment.settings.name, FLOW_TAG: flow_name})
        stub.add_response("delete_event_source_mapping", {}, {"UUID": mapping["UUID"]})
    assert len(esm.delete_deployment_mappings(lam.client, names, s.deployment.settings.name)) == len(names)
    assert lam.denied == []


def test_the_same_calls_for_another_function_are_denied(
    checked: tuple[Synthesized, CheckedLambda, dict[str, EventSourceTemplate]],
) -> None:
    s, lam, templates = checked
    stub: Stubber = lam.stubber  # type: ignore[attr-defined]
    flow_name, template = next(iter(templates.items()))
    stranger = EventSourceTemplate("someone-elses-function", template.msk_cluster_arn, template.access_configurations)
    _, rec = reconciler(s, lam, stranger, flow_name)
    stub.add_response(
        "list_event_source_mappings",
        {"EventSourceMappings": [listed(rec, lam, "old", "Enabled", OTHER_FUNCTION_ARN)]},
        {"FunctionName": "someone-elses-function"},
    )
    stub.add_response("create_event_source_mapping", {"UUID": NEW})
    stub.add_response("update_event_source_mapping", {})
    rec.reconcile(["new"], ["new", "old"])
    assert len(lam.denied) == 2
    assert lam.denied[0].startswith("lambda:CreateEventSourceMapping") and "UpdateEventSourceMapping" in lam.denied[1]


def test_config_sync_may_tag_mappings_only_as_this_deployments(example: Synthesized) -> None:
    policy, templates, arns = deployed(example)
    name = example.deployment.settings.name
    flow = next(iter(templates))
    mapping = mapping_arn(NEW)
    ours = {DEPLOYMENT_TAG: name, FLOW_TAG: flow}
    assert policy.allows("lambda:TagResource", mapping, _request_tags(ours))
    assert not policy.allows("lambda:TagResource", mapping, _request_tags({**ours, DEPLOYMENT_TAG: "another"}))
    assert not policy.allows("lambda:TagResource", mapping, _request_tags({**ours, "owner": "me"}))
    assert not policy.allows("lambda:TagResource", mapping, _request_tags({FLOW_TAG: flow}))
    function = next(iter(arns.values()))
    assert not policy.allows("lambda:TagResource", function, _request_tags(ours))  # mappings only
    assert policy.allows("lambda:ListTags", mapping, {})  # how config sync tells its mappings from others
    assert not policy.allows("lambda:UntagResource", mapping, {})


def test_the_stack_policy_matches_what_the_templates_name(example: Synthesized) -> None:
    """Each template names a mirror function of this deployment, and config sync may create ESMs for it."""
    policy, templates, arns = deployed(example)
    for template in templates.values():
        assert template.function_name in arns
        assert policy.allows(
            "lambda:CreateEventSourceMapping", "*", {"lambda:FunctionArn": arns[template.function_name]}
        )
    assert config_source.EVENT_SOURCES_PARAMETER_ENV == "SMM_EVENT_SOURCES_PARAMETER"
