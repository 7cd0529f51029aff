"""Deployments other than the two examples: created MSK SCRAM secrets, mTLS, no enabled flow, a pinned runtime,
exactly-once without group offset sync, a configuration too large for SSM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.settings import SettingsError
from tests.infra.support import EXAMPLES, Synthesized, as_list, granted, statements, synthesize

MSK_A = "arn:aws:kafka:eu-west-1:123456789012:cluster/a/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
MSK_PRIMARY = "arn:aws:kafka:eu-west-1:123456789012:cluster/primary/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
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
    orders, invoices = scram_and_mtls.mapping("a->b", "orders"), scram_and_mtls.mapping("b->a", "invoices")
    created = f"{scram_and_mtls.logical_id(scram_and_mtls.stack.secrets.credentials['a'])}-physical"
    assert orders["SourceAccessConfigurations"] == [{"Type": "SASL_SCRAM_512_AUTH", "URI": created}]
    assert orders["EventSourceArn"] == MSK_A
    assert invoices["SourceAccessConfigurations"] == [
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
    ((_, hook),) = s.of_type("Custom::SmmConfigSync").items()  # still run: it disables a paused flow's mappings
    assert hook["Properties"]["MirrorFunctions"] == []


@pytest.fixture(scope="module")
def exactly_once_without_group_sync(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The MSK example with exactly-once delivery on dr and consumer-group offset sync off."""
    lines = (EXAMPLES / "msk" / "mm2.properties").read_text().splitlines()
    properties = [line for line in lines if "sync.group.offsets.enabled" not in line]
    properties.append("dr.exactly.once.source.support = enabled")
    return synthesize("msk", tmp_path_factory.mktemp("exactly-once"), properties="\n".join(properties) + "\n")


def test_exactly_once_mirror_may_use_its_transactional_ids_and_offsets_topic(
    exactly_once_without_group_sync: Synthesized,
) -> None:
    s = exactly_once_without_group_sync
    dr = "arn:aws:kafka:eu-west-1:123456789012:{kind}/dr/9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0-3"
    grants = granted(s, s.stack.mirrors[0].smm.role)
    assert grants[dr.format(kind="transactional-id") + "/smm:primary:dr:*"] == {
        "kafka-cluster:DescribeTransactionalId",
        "kafka-cluster:AlterTransactionalId",
    }
    offsets_topic = grants[dr.format(kind="topic") + "/mm2-offsets.primary.internal"]
    assert {"kafka-cluster:ReadData", "kafka-cluster:WriteData", "kafka-cluster:CreateTopic"} <= offsets_topic
    assert "kafka-cluster:WriteDataIdempotently" in grants[dr.format(kind="cluster")]


def test_without_group_offset_sync_checkpoints_leave_the_targets_groups_alone(
    exactly_once_without_group_sync: Synthesized,
) -> None:
    s = exactly_once_without_group_sync
    assert not any(f.settings.sync_group_offsets_enabled for f in s.deployment.mirrored_flows)
    groups = granted(s, s.stack.checkpoints.scheduled.smm.role, "group")
    assert groups == {f"{MSK_PRIMARY.replace(':cluster/', ':group/')}/*": {"kafka-cluster:DescribeGroup"}}
    alter = {a for grants in granted(s, s.stack.checkpoints.scheduled.smm.role).values() for a in grants}
    assert "kafka-cluster:AlterGroup" not in alter


def test_a_configuration_over_8_kb_is_refused(tmp_path: Path) -> None:
    """SSM's advanced (and intelligent) tier holds at most 8 KB: synth says so instead of a failed deploy."""
    properties = (EXAMPLES / "msk" / "mm2.properties").read_text() + "# padding\n" * 1000
    with pytest.raises(SettingsError, match=r"mm2\.properties: about \d+ bytes; an SSM parameter holds at most 8 KB"):
        synthesize("msk", tmp_path, properties=properties)
