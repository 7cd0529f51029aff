"""The synthesized stacks of both examples (MSK with IAM; self-managed with SASL/SCRAM, VPC and a private CA).

Both were synthesized with cdk-nag's AwsSolutions checks, which fail synth on any finding without a written
acknowledgment, so every test here also stands on a nag-clean template.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aws_cdk.assertions import Match

from infra.constructs.observability import CHECKPOINT_AGE_METRIC
from infra.permissions import STAR_ONLY_ACTIONS
from shared.aws import config_source, secrets
from tests.infra.support import ACCOUNT, HANDLERS, Synthesized, as_list, granted, render, statements

MSK_PRIMARY = "arn:aws:kafka:eu-west-1:123456789012:cluster/primary/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
MSK_DR = "arn:aws:kafka:eu-west-1:123456789012:cluster/dr/9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0-3"
MSK_CLOUD = "arn:aws:kafka:eu-west-1:123456789012:cluster/cloud/1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809-1"
CLOUD_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_smm_cloud-QwErTy"
ONPREM_CA = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:smm/onprem-root-ca-AbCdEf"


def mirror_id(s: Synthesized, flow: str) -> str:
    return next(s.logical_id(m.function) for m in s.stack.mirrors if m.flow.name == flow)


# --- event-source mappings: config sync's, created by a run at deploy time ------------------------------------


def test_the_stack_declares_no_event_source_mapping(example: Synthesized) -> None:
    """Config sync owns them all: a create-only change in the stack would make CloudFormation replace a mapping,
    and Lambda refuses a second mapping of the same function, source and topic."""
    assert not example.of_type("AWS::Lambda::EventSourceMapping")
    assert sorted(example.templates()) == sorted(f.name for f in example.deployment.mirrored_flows)


def test_msk_mappings_use_iam_auth_and_the_flows_settings(msk: Synthesized) -> None:
    for topic in ("orders", "audit-2026"):  # listed by name or matched by a regex: the same mapping
        assert msk.mapping("primary->dr", topic) == {
            "FunctionName": f"{mirror_id(msk, 'primary->dr')}-physical",
            "EventSourceArn": MSK_PRIMARY,
            "Topics": [topic],
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"smm:primary:dr:{topic}"},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 500,
            "MaximumBatchingWindowInSeconds": 1,
            "Enabled": True,
            "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 6},
            "DestinationConfig": {"OnFailure": {"Destination": "kafka://smm-esm-failures"}},
            "MaximumRetryAttempts": 10,
            "MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]},
            "Tags": {config_source.DEPLOYMENT_TAG: "smm-msk", config_source.FLOW_TAG: "primary->dr"},
        }  # no SourceAccessConfigurations: with IAM the execution role is the credential


def test_self_managed_mappings_use_scram_the_private_ca_and_the_vpc(self_managed: Synthesized) -> None:
    created_secret = self_managed.logical_id(self_managed.stack.secrets.credentials["onprem"])
    for topic in ("orders", "customers"):
        props = self_managed.mapping("onprem->cloud", topic)
        assert props["FunctionName"] == f"{mirror_id(self_managed, 'onprem->cloud')}-physical"
        assert props["SelfManagedEventSource"] == {
            "Endpoints": {
                "KAFKA_BOOTSTRAP_SERVERS": [
                    "kafka-1.dc1.example.com:9093",
                    "kafka-2.dc1.example.com:9093",
                    "kafka-3.dc1.example.com:9093",
                ]
            }
        }
        assert props["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": f"smm:onprem:cloud:{topic}"}
        assert props["SourceAccessConfigurations"] == [
            {"Type": "SASL_SCRAM_512_AUTH", "URI": f"{created_secret}-physical"},
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ONPREM_CA},
            {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0123456789abcdef1"},
            {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0123456789abcdef2"},
            {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-0123456789abcdef3"},
        ]
        assert "ProvisionedPollerConfig" not in props and "MaximumRetryAttempts" not in props  # on-demand mode
        assert "DestinationConfig" not in props  # retried until it succeeds: nothing is skipped
        assert props["Tags"] == {config_source.DEPLOYMENT_TAG: "smm-hybrid", config_source.FLOW_TAG: "onprem->cloud"}
    returns = self_managed.mapping("cloud->onprem", "returns")
    assert returns["EventSourceArn"] == MSK_CLOUD
    assert returns["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "smm:cloud:onprem:returns"}
    assert returns["SourceAccessConfigurations"] == [{"Type": "SASL_SCRAM_512_AUTH", "URI": CLOUD_SECRET}]
    assert returns["ProvisionedPollerConfig"] == {"MinimumPollers": 1, "MaximumPollers": 2}
    assert returns["BisectBatchOnFunctionError"] is True and "MaximumRetryAttempts" not in returns


def test_mirrors_recover_what_their_mappings_may_skip(msk: Synthesized, self_managed: Synthesized) -> None:
    """A retry limit, a record age or a failure destination lets a mapping move past a batch: the mirror is told
    to copy such a range from the source itself."""
    for synthesized, expected in ((msk, {"primary->dr": "true"}), (self_managed, {})):
        found = {}
        for mirror in synthesized.stack.mirrors:
            env = synthesized.resources[mirror_id(synthesized, mirror.flow.name)]["Properties"]["Environment"]
            if config_source.RECOVER_SKIPPED_ENV in env["Variables"]:
                found[mirror.flow.name] = env["Variables"][config_source.RECOVER_SKIPPED_ENV]
            assert mirror.template.may_skip == (mirror.flow.name in expected)
        assert found == expected


def test_a_config_sync_run_at_deploy_time_creates_and_at_delete_removes_the_mappings(example: Synthesized) -> None:
    ((hook_id, hook),) = example.of_type("Custom::SmmConfigSync").items()
    stack = example.stack
    parameter = example.resources[example.logical_id(stack.event_sources_parameter)]["Properties"]
    timeout = example.deployment.settings.functions["config_sync"].timeout_seconds
    assert hook["Properties"] == {
        "ServiceToken": {"Fn::GetAtt": [example.logical_id(stack.config_sync.function), "Arn"]},
        "ServiceTimeout": str(timeout + 60),
        "Deployment": example.deployment.settings.name,
        "MirrorFunctions": [{"Ref": example.logical_id(m.function)} for m in stack.mirrors],
        "ConfigDigest": hashlib.sha256(example.deployment.config_text.encode()).hexdigest(),
        "EventSources": parameter["Value"],  # the very JSON config sync reads: a changed setting is an update
    }
    # created after, and deleted before, everything the run uses
    roles = [stack.config_sync.scheduled.smm.role, *(m.smm.role for m in stack.mirrors)]
    needed = [
        stack.config_sync.function,
        *roles,
        *(r.node.find_child("DefaultPolicy") for r in roles),
        *(m.function for m in stack.mirrors),
        stack.config_parameter,
        stack.event_sources_parameter,
        *stack.secrets.credentials.values(),
    ]
    needed += [stack.failure_queue] if stack.failure_queue else []
    expected = {example.logical_id(c) for c in needed if c.node.default_child is not None}  # not imported ones
    assert expected <= set(hook["DependsOn"]), expected - set(hook["DependsOn"])
    # no scheduled run before the first deploy-time run, nor after the delete-time one
    schedule = example.resources[example.logical_id(stack.config_sync.scheduled.schedule)]
    assert hook_id in schedule["DependsOn"]


# --- functions and schedules -----------------------------------------------------------------------------


def test_four_function_kinds_one_mirror_per_flow(example: Synthesized) -> None:
    functions = example.of_type("AWS::Lambda::Function").values()
    handlers = [f["Properties"]["Handler"] for f in functions]
    assert set(handlers) == HANDLERS
    assert handlers.count("functions.mirror.handler.lambda_handler") == len(example.deployment.mirrored_flows)
    for function in functions:
        props = function["Properties"]
        assert props["Runtime"] == "python3.14" and props["Architectures"] == ["arm64"]
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"].startswith("smm-")
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ServerlessMirrorMaker"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
        assert env[config_source.CONFIG_PARAMETER_ENV] == {"Ref": example.logical_id(example.stack.config_parameter)}
        assert props["VpcConfig"]["SubnetIds"] and props["VpcConfig"]["SecurityGroupIds"]
        assert props["Timeout"] >= 60 and props["MemorySize"] >= 256
    flows = {f["Properties"]["Environment"]["Variables"].get(config_source.FLOW_ENV) for f in functions} - {None}
    assert flows == {f.name for f in example.deployment.mirrored_flows}


def test_three_schedules_at_the_configured_intervals(msk: Synthesized, self_managed: Synthesized) -> None:
    expected = {
        # config sync: the shortest of refresh.topics / sync.topic.configs / sync.topic.acls intervals
        # heartbeats: 1 s (MM2's default) or 5 s -> every minute, looping inside
        # checkpoints: emit.checkpoints.interval.seconds (60)
        "msk": {"config-sync": "rate(10 minutes)", "heartbeats": "rate(1 minute)", "checkpoints": "rate(1 minute)"},
        "self_managed": {
            "config-sync": "rate(5 minutes)",
            "heartbeats": "rate(1 minute)",
            "checkpoints": "rate(1 minute)",
        },
    }
    for name, synthesized in (("msk", msk), ("self_managed", self_managed)):
        schedules = synthesized.of_type("AWS::Scheduler::Schedule").values()
        found = {}
        for schedule in schedules:
            target = schedule["Properties"]["Target"]
            payload = json.loads(target["Input"])
            found[payload["schedule"]] = schedule["Properties"]["ScheduleExpression"]
            assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
        assert found == expected[name]
    synthesized_env = {
        f["Properties"]["Handler"]: f["Properties"]["Environment"]["Variables"]
        for f in msk.of_type("AWS::Lambda::Function").values()
    }
    assert synthesized_env["functions.heartbeats.handler.lambda_handler"]["SMM_SCHEDULE_PERIOD_SECONDS"] == "60"


def test_config_sync_is_told_where_the_event_sources_are(example: Synthesized) -> None:
    example.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "functions.config_sync.handler.lambda_handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        config_source.EVENT_SOURCES_PARAMETER_ENV: {
                            "Ref": example.logical_id(example.stack.event_sources_parameter)
                        }
                    }
                )
            },
        },
    )


# --- secrets and configuration ---------------------------------------------------------------------------


def test_secrets_are_referenced_never_inlined(example: Synthesized) -> None:
    assert "SecretString" not in _keys(example.template.to_json())
    for secret in example.of_type("AWS::SecretsManager::Secret").values():
        generated = secret["Properties"]["GenerateSecretString"]  # the password is made by Secrets Manager
        assert generated["GenerateStringKey"] == "password"
        assert "password" not in json.loads(generated["SecretStringTemplate"])
    text = example.deployment.config_text
    assert "password" not in text
    assert all("IAMLoginModule required" in line for line in text.splitlines() if "jaas" in line)  # no credential
    values = example.refs()
    for function in example.of_type("AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        for name in (secrets.CLUSTER_SECRETS_ENV, secrets.CLUSTER_CA_SECRETS_ENV):
            if name in env:
                for alias, arn in json.loads(render(env[name], values)).items():
                    assert alias in example.deployment.config.clusters
                    assert arn.startswith("arn:aws:secretsmanager:") or arn.endswith("-physical")


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_self_managed_functions_get_the_secret_arns_of_their_clusters(self_managed: Synthesized) -> None:
    values = self_managed.refs()
    created = self_managed.logical_id(self_managed.stack.secrets.credentials["onprem"])
    mirror = self_managed.resources[mirror_id(self_managed, "onprem->cloud")]
    env = mirror["Properties"]["Environment"]["Variables"]
    assert json.loads(render(env[secrets.CLUSTER_SECRETS_ENV], values)) == {
        "cloud": CLOUD_SECRET,
        "onprem": f"{created}-physical",
    }
    assert json.loads(render(env[secrets.CLUSTER_CA_SECRETS_ENV], values)) == {"onprem": ONPREM_CA}


def test_the_configuration_parameter_holds_the_file(example: Synthesized) -> None:
    parameter = example.resources[example.logical_id(example.stack.config_parameter)]["Properties"]
    assert parameter["Value"] == example.deployment.config_text
    assert parameter["Type"] == "String" and parameter["Name"].endswith("/mm2.properties")


def test_the_configuration_parameter_takes_console_edits_past_4_kb(example: Synthesized) -> None:
    """Intelligent-Tiering: a write over the standard tier's 4 KB becomes advanced instead of failing."""
    configuration = example.resources[example.logical_id(example.stack.config_parameter)]["Properties"]
    assert configuration["Tier"] == "Intelligent-Tiering"
    event_sources = example.resources[example.logical_id(example.stack.event_sources_parameter)]["Properties"]
    assert event_sources["Tier"] == "Standard"  # written by the stack only, in the smallest tier it fits


def test_the_created_msk_style_secret_is_not_created_for_self_managed(self_managed: Synthesized) -> None:
    """A created self-managed secret needs no AmazonMSK_ name nor its own key."""
    assert not self_managed.of_type("AWS::KMS::Key")
    (secret,) = self_managed.of_type("AWS::SecretsManager::Secret").values()
    assert "Name" not in secret["Properties"]


# --- observability -----------------------------------------------------------------------------------------


def test_dashboard_and_alarms(example: Synthesized) -> None:
    (dashboard,) = example.of_type("AWS::CloudWatch::Dashboard").values()
    body = render(dashboard["Properties"]["DashboardBody"], example.refs())
    for metric in ("ReplicationLatency", "RecordAge", "Records", "Bytes", "Errors", "OffsetLag", CHECKPOINT_AGE_METRIC):
        assert f'"{metric}"' in body, metric
    for flow in example.deployment.mirrored_flows:
        assert f'"Flow","{flow.name}","service","smm-mirror"' in body
    alarms = example.of_type("AWS::CloudWatch::Alarm").values()
    flows = len(example.deployment.mirrored_flows)
    # latency, lost records, errors, lag per flow; errors per scheduled job (the stall alarms: test_alarms.py)
    assert len(alarms) >= 4 * flows + 3
    names = [a["Properties"].get("MetricName") for a in alarms]
    assert names.count("ReplicationLatency") == flows and names.count("OffsetLag") == flows


def test_msk_alarms_notify_the_topic(msk: Synthesized) -> None:
    for alarm in msk.of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == ["arn:aws:sns:eu-west-1:123456789012:kafka-on-call"]


# --- IAM -----------------------------------------------------------------------------------------------------


def test_no_wildcard_actions_and_star_resources_only_where_aws_requires_it(example: Synthesized) -> None:
    for policy, statement in statements(example.resources):
        actions = as_list(statement["Action"])
        assert not [a for a in actions if "*" in a], (policy, actions)
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= STAR_ONLY_ACTIONS, (policy, actions)
            if "lambda:CreateEventSourceMapping" in actions:
                assert "lambda:FunctionArn" in statement["Condition"]["ArnEquals"]
    for role in example.of_type("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]  # every grant is an inline, scoped statement


def test_kafka_data_plane_is_scoped_to_the_configured_clusters(msk: Synthesized) -> None:
    clusters = {MSK_PRIMARY, MSK_DR}
    seen = set()
    for policy, statement in statements(msk.resources):
        actions = as_list(statement["Action"])
        if not any(a.startswith("kafka") for a in actions):
            continue
        for resource in as_list(statement["Resource"]):
            kind, _, rest = resource.partition(":kafka:eu-west-1:123456789012:")[2].partition("/")
            cluster = f"arn:aws:kafka:eu-west-1:123456789012:cluster/{'/'.join(rest.split('/')[:2])}"
            assert cluster in clusters, (policy, resource)
            assert kind in ("cluster", "topic", "group", "transactional-id")
            seen.add(kind)
    assert seen == {"cluster", "topic", "group", "transactional-id"}
    # the mirror reads only through its own consumer groups
    mirror_policy = msk.logical_id(msk.stack.mirrors[0].smm.role.node.find_child("DefaultPolicy"))
    groups = [
        r
        for _, s in statements(msk.resources, mirror_policy)
        for r in as_list(s["Resource"])
        if isinstance(r, str) and ":group/" in r
    ]
    assert groups == [MSK_PRIMARY.replace(":cluster/", ":group/") + "/smm:primary:dr:*"]


def test_secret_reads_are_scoped_to_the_secrets(self_managed: Synthesized) -> None:
    created = {"Ref": self_managed.logical_id(self_managed.stack.secrets.credentials["onprem"])}
    for policy, statement in statements(self_managed.resources):
        actions = as_list(statement["Action"])
        if any(a.startswith("secretsmanager:") for a in actions):
            assert set(actions) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
            assert statement["Resource"] in (CLOUD_SECRET, ONPREM_CA, created), (policy, statement["Resource"])
        if "kms:Decrypt" in actions:
            assert statement["Condition"]["StringEquals"]["kms:ViaService"]


def test_every_nag_acknowledgment_is_justified(example: Synthesized) -> None:
    acknowledged = [
        rule
        for resource in example.resources.values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert acknowledged
    for rule in acknowledged:
        assert len(rule["reason"]) > 40, rule
        assert rule["id"].startswith(("AwsSolutions-IAM5[Resource::", "AwsSolutions-SMG4", "AwsSolutions-SQS3")), rule


def test_heartbeats_may_write_every_pairs_target(msk: Synthesized) -> None:
    """MM2 emits heartbeats for every pair with emit.heartbeats.enabled, also dr->primary, which is disabled."""
    policy = msk.logical_id(msk.stack.heartbeats.scheduled.smm.role.node.find_child("DefaultPolicy"))
    writable = {
        r
        for _, s in statements(msk.resources, policy)
        if "kafka-cluster:WriteData" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    }
    assert writable == {f"{arn.replace(':cluster/', ':topic/')}/heartbeats" for arn in (MSK_PRIMARY, MSK_DR)}


def test_only_the_checkpoints_use_transactions_in_at_least_once_mode(msk: Synthesized) -> None:
    dr_ids = MSK_DR.replace(":cluster/", ":transactional-id/")
    assert granted(msk, msk.stack.checkpoints.scheduled.smm.role, "transactional-id") == {
        f"{dr_ids}/smm:checkpoints:primary:dr": {
            "kafka-cluster:DescribeTransactionalId",
            "kafka-cluster:AlterTransactionalId",
        }
    }
    assert granted(msk, msk.stack.mirrors[0].smm.role, "transactional-id") == {}


def test_checkpoints_may_alter_the_targets_groups_with_group_offset_sync(msk: Synthesized) -> None:
    """primary->dr syncs group offsets: only then may checkpoints look at and move dr's consumer groups."""
    assert granted(msk, msk.stack.checkpoints.scheduled.smm.role, "group") == {
        MSK_PRIMARY.replace(":cluster/", ":group/") + "/*": {"kafka-cluster:DescribeGroup"},  # source offsets
        MSK_DR.replace(":cluster/", ":group/") + "/*": {"kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"},
    }


def test_only_this_accounts_schedules_may_assume_the_scheduler_roles(
    msk: Synthesized, self_managed: Synthesized
) -> None:
    for synthesized, account in ((msk, ACCOUNT), (self_managed, {"Ref": "AWS::AccountId"})):
        trusts = [
            statement
            for role in synthesized.of_type("AWS::IAM::Role").values()
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            if statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
        ]
        assert len(trusts) == 3  # config sync, heartbeats, checkpoints
        for statement in trusts:
            assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}


def test_config_sync_may_create_the_kafka_failure_topic_on_the_source(msk: Synthesized) -> None:
    """Lambda writes failed records to kafka://smm-esm-failures on primary and needs it to exist."""
    topic = MSK_PRIMARY.replace(":cluster/", ":topic/") + "/smm-esm-failures"
    assert granted(msk, msk.stack.config_sync.scheduled.smm.role, "topic")[topic] == {
        "kafka-cluster:CreateTopic",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:DescribeTopicDynamicConfiguration",
    }
    assert granted(msk, msk.stack.mirrors[0].smm.role, "topic")[topic] == {
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:WriteData",
    }
