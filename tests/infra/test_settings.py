"""Deploy settings: parsing with every problem reported at once, and the cross-check with mm2.properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import settings
from infra.settings import Auth, Deployment, SettingsError
from shared.mm2 import config

MSK_ARN = "arn:aws:kafka:eu-west-1:123456789012:cluster/a/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_a-AbCdEf"
NETWORK = {
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef1"],
    "security_group_ids": ["sg-0123456789abcdef2"],
}


def problems(data: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        settings.parse(data)
    return caught.value.problems


def resolve(properties: dict[str, str], data: dict[str, Any]) -> Deployment:
    props = {
        "clusters": "a, b",
        "a.bootstrap.servers": "a1:9098",
        "b.bootstrap.servers": "b1:9092",
        "a->b.enabled": "true",
    }
    props.update(properties)
    text = "\n".join(f"{k} = {v}" for k, v in props.items())
    return Deployment.resolve(config.parse(config.parse_properties(text)), text, settings.parse(data))


def resolve_problems(properties: dict[str, str], data: dict[str, Any]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        resolve(properties, data)
    return caught.value.problems


def test_defaults() -> None:
    s = settings.parse({})
    assert (s.name, s.runtime, s.architecture, s.log_retention_days) == ("smm", "python3.14", "arm64", 30)
    assert s.functions["mirror"].timeout_seconds == 120 and s.event_source.provisioned_pollers is None


def test_every_problem_is_reported_with_its_key_and_what_is_allowed() -> None:
    found = problems(
        {
            "name": "1-bad name",
            "runtime": "python3.9",
            "log_retention_days": 31,
            "clusters": {"a": {"secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders"}},
            "functions": {"mirror": {"memory_mb": 64}, "poller": {}},
            "surprise": 1,
        }
    )
    text = "\n".join(found)
    assert 'name = "1-bad name": allowed: 1-30 letters' in text
    assert 'runtime = "python3.9": allowed: "python3.14", "python3.13"' in text
    assert "log_retention_days = 31" in text
    assert "clusters.a.secret_arn" in text and "6-character suffix" in text
    assert "functions.mirror.memory_mb = 64: allowed: a whole number from 128 to 10240" in text
    assert "functions.poller: unknown function kind" in text
    assert "surprise: unknown setting" in text
    assert len(found) == 7


def test_provisioned_mode_options_need_pollers() -> None:
    (problem,) = problems({"event_source": {"max_retry_attempts": 3, "on_failure": "kafka://dlt", "metrics": True}})
    assert "max_retry_attempts, metrics, on_failure (kafka://) need provisioned mode" in problem


def test_flow_event_sources_override_the_shared_event_source_settings() -> None:
    s = settings.parse(
        {
            "event_source": {"on_failure": "sqs", "provisioned_pollers": {"minimum": 2, "maximum": 4}},
            "flow_event_sources": {"a->b": {"max_retry_attempts": 7}},
        }
    )
    flow = s.event_source_for("a->b")
    assert flow.on_failure == "sqs" and flow.max_retry_attempts == 7 and flow.provisioned_pollers is not None
    assert s.event_source_for("b->a").max_retry_attempts is None


def test_load_from_a_file_an_object_or_inline_json(tmp_path: Path) -> None:
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps({"name": "from-file"}))
    assert settings.load(path).name == "from-file"
    assert settings.load({"name": "from-context"}).name == "from-context"
    assert settings.load('{"name": "inline"}').name == "inline"
    with pytest.raises(SettingsError, match="cannot read it"):
        settings.load(tmp_path / "missing.json")
    path.write_text("{nope")
    with pytest.raises(SettingsError, match="not JSON"):
        settings.load(path)


def test_auth_comes_from_the_properties() -> None:
    deployment = resolve(
        {"a.security.protocol": "SASL_SSL", "a.sasl.mechanism": "AWS_MSK_IAM", "b.security.protocol": "SSL"},
        {"clusters": {"a": {"msk_cluster_arn": MSK_ARN}}, "network": NETWORK},
    )
    assert deployment.clusters["a"].auth is Auth.IAM and deployment.clusters["b"].auth is Auth.TLS
    assert [f.name for f in deployment.mirrored_flows] == ["a->b"]


def test_auth_and_settings_must_agree() -> None:
    found = resolve_problems(
        {
            "a.security.protocol": "SASL_SSL",
            "a.sasl.mechanism": "AWS_MSK_IAM",  # but a is not MSK
            "b.security.protocol": "SASL_SSL",
            "b.sasl.mechanism": "SCRAM-SHA-512",  # but no secret
        },
        {"clusters": {"c": {}}},
    )
    text = "\n".join(found)
    assert "clusters.c: no such cluster" in text
    assert "a: sasl.mechanism=AWS_MSK_IAM needs an MSK cluster" in text
    assert "b: sasl-scram-512 authentication needs credentials" in text


def test_credentials_in_the_properties_are_refused() -> None:
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";'
    found = resolve_problems(
        {"a.security.protocol": "SASL_SSL", "a.sasl.mechanism": "SCRAM-SHA-512", "a.sasl.jaas.config": jaas},
        {"clusters": {"a": {"secret_arn": SECRET}}, "network": NETWORK},
    )
    assert len(found) == 1 and "a.sasl.jaas.config in mm2.properties: not allowed" in found[0]
    assert "p;" not in found[0]


def test_a_self_managed_unauthenticated_source_needs_a_vpc() -> None:
    (problem,) = resolve_problems({}, {})
    assert "a->b: Lambda reads an unauthenticated self-managed cluster (a) only inside a VPC" in problem
    assert resolve({}, {"network": NETWORK}).clusters["a"].auth is Auth.NONE


def test_mtls_secrets_are_brought_not_created() -> None:
    found = resolve_problems(
        {"a.security.protocol": "SSL"}, {"clusters": {"a": {"create_secret": True}}, "network": NETWORK}
    )
    assert any("mTLS needs your client certificate" in p for p in found)


def test_deploy_disabled_flows_gives_every_flow_a_mirror_function() -> None:
    deployment = resolve({}, {"network": NETWORK, "deploy_disabled_flows": True})
    assert [(f.name, f.enabled) for f in deployment.mirrored_flows] == [("a->b", True), ("b->a", False)]
