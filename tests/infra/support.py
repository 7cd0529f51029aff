"""Synthesizing the example deployments for the infra tests, and reading IAM out of the templates they produce."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra import app as infra_app
from infra.settings import Deployment
from infra.stack import MirrorMakerStack
from shared.aws.config_source import EventSourceTemplate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "infra" / "examples"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
HANDLERS = {
    "functions.mirror.handler.lambda_handler",
    "functions.config_sync.handler.lambda_handler",
    "functions.heartbeats.handler.lambda_handler",
    "functions.checkpoints.handler.lambda_handler",
}


@dataclass
class Synthesized:
    """One example deployment, synthesized with cdk-nag's checks (which fail synth on any open finding)."""

    deployment: Deployment
    stack: MirrorMakerStack
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template.to_json()["Resources"]
        return resources

    def of_type(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.get_logical_id(construct.node.default_child))

    def refs(self) -> dict[str, str]:
        """Deploy-time values of the stack's Refs/GetAtts, made up but distinct."""
        values: dict[str, str] = {}
        for logical_id, resource in self.resources.items():
            values[logical_id] = f"{logical_id}-physical"
            values[f"{logical_id}.Arn"] = (
                f"arn:aws:{resource['Type'].split('::')[1].lower()}:{REGION}:{ACCOUNT}:{logical_id}"
            )
        return values

    def templates(self) -> dict[str, EventSourceTemplate]:
        """The event-sources parameter, read back as config sync reads it."""
        parameter = self.resources[self.logical_id(self.stack.event_sources_parameter)]
        value = json.loads(render(parameter["Properties"]["Value"], self.refs()))
        return {flow: EventSourceTemplate.from_json(flow, v) for flow, v in value.items()}

    def mapping(self, flow_name: str, topic: str) -> dict[str, Any]:
        """The CreateEventSourceMapping arguments config sync sends for ``topic`` of the flow, as deployed."""
        flow = next(f for f in self.deployment.mirrored_flows if f.name == flow_name)
        source = self.deployment.config.cluster(flow.source)
        return self.templates()[flow_name].create_parameters(flow, topic, source)


def synthesize(
    example: str, outdir: Path, settings: Mapping[str, Any] | None = None, properties: str | None = None
) -> Synthesized:
    """The example's stack (or one of ``properties`` and ``settings``) with a stand-in code asset.

    The real asset has its own test; a placeholder keeps these synths fast and offline.
    """
    code_dir = outdir / "code"
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "placeholder.py").write_text("")
    source = settings if settings is not None else EXAMPLES / example / "deploy.json"
    config_path = EXAMPLES / example / "mm2.properties"
    if properties is not None:
        config_path = outdir / "mm2.properties"
        config_path.write_text(properties)
    deployment = infra_app.deployment_from(config_path, source)
    app = cdk.App(outdir=str(outdir / "cdk.out"))
    stack = infra_app.add_stack(app, deployment, code=lambda_.Code.from_asset(str(code_dir)))
    infra_app.check(app)
    app.synth()
    return Synthesized(deployment, stack, Template.from_stack(stack))


def statements(resources: Mapping[str, Any], policy_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(policy logical id, statement) of every IAM policy in the template, or of one."""
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Policy" or (policy_id and logical_id != policy_id):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            yield logical_id, statement


def granted(s: Synthesized, role: Any, kind: str = "") -> dict[str, set[str]]:
    """ARN -> actions ``role``'s default policy grants on it, for ARNs (not tokens) of the ``kind`` (``topic``,
    ``group``, ...) or of every kind."""
    policy = s.logical_id(role.node.find_child("DefaultPolicy"))
    grants: dict[str, set[str]] = {}
    for _, statement in statements(s.resources, policy):
        for resource in as_list(statement["Resource"]):
            if isinstance(resource, str) and (not kind or f":{kind}/" in resource):
                grants.setdefault(resource, set()).update(as_list(statement["Action"]))
    return grants


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any, refs: Mapping[str, str]) -> str:
    """A CloudFormation value as a string, with Refs/GetAtts replaced from ``refs`` (pseudo parameters built in)."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, **refs}
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return pseudo.get(value["Ref"], f"<{value['Ref']}>")
    if "Fn::GetAtt" in value:
        key = ".".join(value["Fn::GetAtt"])
        return pseudo.get(key, f"<{key}>")
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(p, refs) for p in parts)
    return json.dumps(value)


Context = Mapping[str, str | list[str]]


class Policy:
    """Just enough IAM evaluation for our statements: Allow only, exact actions, ARN globs, ArnEquals/StringEquals
    on single-valued keys and ForAllValues:StringEquals on multivalued ones (``aws:TagKeys``)."""

    def __init__(self, resources: Mapping[str, Any], policy_id: str, refs: Mapping[str, str]) -> None:
        self.statements = [s for _, s in statements(resources, policy_id)]
        self.refs = refs

    def allows(self, action: str, resource: str, context: Context) -> bool:
        for statement in self.statements:
            if statement.get("Effect", "Allow") != "Allow" or action not in as_list(statement["Action"]):
                continue
            if not any(fnmatch.fnmatchcase(resource, render(r, self.refs)) for r in as_list(statement["Resource"])):
                continue
            if all(self._holds(op, conditions, context) for op, conditions in statement.get("Condition", {}).items()):
                return True
        return False

    def _holds(self, operator: str, conditions: Mapping[str, Any], context: Context) -> bool:
        allowed = {key: [render(v, self.refs) for v in as_list(values)] for key, values in conditions.items()}
        if operator in ("ArnEquals", "StringEquals"):
            return all(key in context and context[key] in values for key, values in allowed.items())
        if operator == "ForAllValues:StringEquals":  # IAM: also true when the request has no such key
            return all(v in values for key, values in allowed.items() for v in as_list(context.get(key, [])))
        raise AssertionError(f"condition operator {operator} is not modelled by this test")
