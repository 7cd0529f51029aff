"""Offline checks of the synthesized templates, as CloudFormation would judge them.

- cfn-lint (its bundled resource schemas and rules) finds no error in either shipped example.
- Changing an event-source mapping setting that Lambda treats as create-only (the MSK cluster, the starting
  position, self-managed bootstrap servers, the topic list) and deploying again replaces nothing: the stack holds
  no mapping to replace, and every resource that changes is updated in place (judged by the resource schemas'
  ``createOnlyProperties``), the deploy hook's properties among them, so config sync runs and re-creates the
  mappings itself, keeping their consumer groups.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from infra.constructs.deploy_hook import RESOURCE_TYPE
from tests.infra.support import EXAMPLES, REGION, Synthesized, synthesize

# Custom resources are judged as AWS::CloudFormation::CustomResource (ServiceToken is create-only).
_CUSTOM = "AWS::CloudFormation::CustomResource"


def errors(s: Synthesized) -> list[str]:
    """cfn-lint's errors (not warnings or notes) on the synthesized template."""
    found = lint(json.dumps(s.template.to_json()), regions=[REGION])
    return [
        f"{m.rule.id} {'/'.join(map(str, getattr(m, 'path', ())))}: {m.message}"
        for m in found
        if m.rule.severity == "error"
    ]


def test_cfn_lint_finds_no_error_in_either_example(example: Synthesized) -> None:
    assert errors(example) == []


def _properties(name: str, change: Callable[[str], str]) -> Callable[[], dict[str, Any]]:
    """A change of the example's ``mm2.properties``."""
    return lambda: {"properties": change((EXAMPLES / name / "mm2.properties").read_text())}


def _settings(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[], dict[str, Any]]:
    """A change of the example's deploy settings."""

    def changed() -> dict[str, Any]:
        settings = json.loads((EXAMPLES / name / "deploy.json").read_text())
        change(settings)
        return {"settings": settings}

    return changed


def _other_cluster(settings: dict[str, Any]) -> None:
    settings["clusters"]["primary"]["msk_cluster_arn"] = (
        "arn:aws:kafka:eu-west-1:123456789012:cluster/primary-2/1c2d3e4f-5061-7283-94a5-b6c7d8e9f0a1-1"
    )


# Create-only setting -> (example, what changes it).
CREATE_ONLY: Mapping[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "EventSourceArn": ("msk", _settings("msk", _other_cluster)),
    "StartingPosition": ("msk", _properties("msk", lambda text: text + "smm.starting.position = LATEST\n")),
    "SelfManagedEventSource": (
        "self-managed",
        _properties("self-managed", lambda text: text.replace("kafka-3.dc1.example.com", "kafka-4.dc1.example.com")),
    ),
    "Topics": (
        "msk",
        _properties("msk", lambda text: text.replace("primary->dr.topics = orders,", "primary->dr.topics = refunds,")),
    ),
}


def create_only(kind: str) -> list[tuple[str, ...]]:
    """The create-only property paths of a resource type (a change to one makes CloudFormation replace it)."""
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, _CUSTOM if kind.startswith("Custom::") else kind)
    pointers: list[str] = schema.schema.get("createOnlyProperties", [])
    return [tuple(p.removeprefix("/properties/").split("/")) for p in pointers]


def at(properties: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = properties
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def replaced(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[str]]:
    """Logical id -> the create-only properties whose change makes CloudFormation replace the resource."""
    found: dict[str, list[str]] = {}
    for logical_id, old in before.items():
        new = after[logical_id]
        if new["Type"] != old["Type"]:
            found[logical_id] = ["Type"]
            continue
        props = old.get("Properties", {}), new.get("Properties", {})
        changed = ["/".join(p) for p in create_only(old["Type"]) if at(props[0], p) != at(props[1], p)]
        if changed:
            found[logical_id] = changed
    return found


@pytest.mark.parametrize("setting", sorted(CREATE_ONLY))
def test_changing_a_create_only_mapping_setting_replaces_nothing(
    setting: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    example, change = CREATE_ONLY[setting]
    before_synth: Synthesized = request.getfixturevalue(example.replace("-", "_"))
    after_synth = synthesize(example, tmp_path, **change())
    before, after = before_synth.resources, after_synth.resources
    for resources in (before, after):
        assert not [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert set(before) == set(after)  # nothing added or removed either
    changed = {logical_id for logical_id in before if before[logical_id] != after[logical_id]}
    (hook_id,) = [logical_id for logical_id, r in before.items() if r["Type"] == RESOURCE_TYPE]
    assert hook_id in changed  # an update of the deploy hook: config sync runs and re-creates the mappings
    assert replaced(before, after) == {}
    assert before[hook_id]["Properties"]["ServiceToken"] == after[hook_id]["Properties"]["ServiceToken"]
    # the setting reaches config sync through the hook's EventSources (the template) or ConfigDigest (the file)
    hook_before, hook_after = before[hook_id]["Properties"], after[hook_id]["Properties"]
    assert (hook_before["EventSources"], hook_before["ConfigDigest"]) != (
        hook_after["EventSources"],
        hook_after["ConfigDigest"],
    )


def test_the_check_sees_a_replacement() -> None:
    """``replaced`` is not blind: a changed create-only property of a mapping or a parameter is caught."""
    mapping = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {"StartingPosition": "TRIM_HORIZON"}}
    parameter = {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/a", "Value": "x"}}
    hook = {"Type": RESOURCE_TYPE, "Properties": {"ServiceToken": "arn:1", "EventSources": "{}"}}
    before = {"M": mapping, "P": parameter, "H": hook}
    after = {
        "M": {**mapping, "Properties": {"StartingPosition": "LATEST"}},
        "P": {**parameter, "Properties": {"Name": "/b", "Value": "x"}},
        "H": {**hook, "Properties": {"ServiceToken": "arn:1", "EventSources": '{"a": 1}'}},
    }
    assert replaced(before, after) == {"M": ["StartingPosition"], "P": ["Name"]}
    after["H"] = {**hook, "Properties": {"ServiceToken": "arn:2", "EventSources": "{}"}}
    assert replaced(before, after)["H"] == ["ServiceToken"]
