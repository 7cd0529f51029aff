"""Deployments other than the two examples: created MSK SCRAM secrets, mTLS, no enabled flow, a pinned runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra.support import EXAMPLES, Synthesized, as_list, statements, synthesize

MSK_A = "arn:aws:kafka:eu-west-1:123456789012:cluster/a/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
MTLS_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:smm/b-client-AbCdEf"
NETWORK = {
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef1"],
    "security_group_ids": ["sg-0123456789abcdef2"],
}
PROPERTIES = """
clusters = a, b
a.bootstrap.servers = b-1.a.kafka.eu-west-1.amazonaws.com:9096
a.security.protocol = SASL_SSL
a.sasl.mechanism = SCRAM-SHA-512
b.bootstrap.servers = kafka-1.b.example.com:9094
b.security.protocol = SSL
a->b.enabled = {enabled}
a->b.topics = orders
b->a.enabled = {enabled}
b->a.topics = invoices
"""


def variant(tmp: Path, enabled: str, **settings: Any) -> Synthesized:
    data = {
        "name": "smm-variant",
        "network": NETWORK,
        "clusters": {"a": {"msk_cluster_arn": MSK_A, "create_secret": True}, "b": {"secret_arn": MTLS_SECRET}},
        **settings,
    }
    return synthesize("msk", tmp, settings=data, properties=PROPERTIES.format(enabled=enabled))


@pytest.fixture(scope="module")
def scram_and_mtls(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return variant(tmp_path_factory.mktemp("scram-mtls"), "true", runtime="python3.13", architecture="x86_64")


def test_a_created_msk_scram_secret_is_named_for_msk_and_has_its_own_rotating_key(scram_and_mtls: Synthesized) -> None:
    (key,) = scram_and_mtls.of_type("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    (secret,) = scram_and_mtls.of_type("AWS::SecretsManager::Secret").values()
    assert secret["Properties"]["Name"] == "AmazonMSK_smm-variant_a"
    assert secret["Properties"]["KmsKeyId"] == {
        "Fn::GetAtt": [next(iter(scram_and_mtls.of_type("AWS::KMS::Key"))), "Arn"]
    }


def test_msk_scram_and_self_managed_mtls_mappings(scram_and_mtls: Synthesized) -> None:
    mappings = {
        r["Properties"]["Topics"][0]: r["Properties"]
        for r in scram_and_mtls.of_type("AWS::Lambda::EventSourceMapping").values()
    }
    created = {"Ref": scram_and_mtls.logical_id(scram_and_mtls.stack.secrets.credentials["a"])}
    assert mappings["orders"]["SourceAccessConfigurations"] == [{"Type": "SASL_SCRAM_512_AUTH", "URI": created}]
    assert mappings["orders"]["EventSourceArn"] == MSK_A
    assert mappings["invoices"]["SourceAccessConfigurations"] == [
        {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": MTLS_SECRET},
        {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0123456789abcdef1"},
        {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-0123456789abcdef2"},
    ]


def test_no_kafka_cluster_grants_without_iam_clusters(scram_and_mtls: Synthesized) -> None:
    actions = {a for _, s in statements(scram_and_mtls.resources) for a in as_list(s["Action"])}
    assert not {a for a in actions if a.startswith("kafka-cluster:")}
    assert "kafka:GetBootstrapBrokers" in actions  # the MSK pollers still look the brokers up


def test_a_pinned_runtime_and_architecture(scram_and_mtls: Synthesized) -> None:
    for function in scram_and_mtls.of_type("AWS::Lambda::Function").values():
        assert function["Properties"]["Runtime"] == "python3.13"
        assert function["Properties"]["Architectures"] == ["x86_64"]
        rules = function.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        assert [r["id"] for r in rules] == ["AwsSolutions-L1"]  # acknowledged, with the settings as the reason


def test_no_enabled_flow_still_deploys_the_scheduled_functions(tmp_path: Path) -> None:
    s = variant(tmp_path, "false")
    handlers = sorted(f["Properties"]["Handler"] for f in s.of_type("AWS::Lambda::Function").values())
    assert handlers == [
        "functions.checkpoints.handler.lambda_handler",
        "functions.config_sync.handler.lambda_handler",
        "functions.heartbeats.handler.lambda_handler",
    ]
    assert not s.of_type("AWS::Lambda::EventSourceMapping")
    assert len(s.of_type("AWS::Scheduler::Schedule")) == 3


def test_exactly_once_mirror_may_use_its_transactional_ids_and_offsets_topic(tmp_path: Path) -> None:
    properties = (EXAMPLES / "msk" / "mm2.properties").read_text() + "dr.exactly.once.source.support = enabled\n"
    s = synthesize("msk", tmp_path, properties=properties)
    policy = s.logical_id(s.stack.mirrors[0].smm.role.node.find_child("DefaultPolicy"))
    dr = "arn:aws:kafka:eu-west-1:123456789012:{kind}/dr/9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0-3"
    granted: dict[str, set[str]] = {}
    for _, statement in statements(s.resources, policy):
        for resource in as_list(statement["Resource"]):
            if isinstance(resource, str):
                granted.setdefault(resource, set()).update(as_list(statement["Action"]))
    assert granted[dr.format(kind="transactional-id") + "/smm:primary:dr:*"] == {
        "kafka-cluster:DescribeTransactionalId",
        "kafka-cluster:AlterTransactionalId",
    }
    offsets_topic = granted[dr.format(kind="topic") + "/mm2-offsets.primary.internal"]
    assert {"kafka-cluster:ReadData", "kafka-cluster:WriteData", "kafka-cluster:CreateTopic"} <= offsets_topic
    assert "kafka-cluster:WriteDataIdempotently" in granted[dr.format(kind="cluster")]
