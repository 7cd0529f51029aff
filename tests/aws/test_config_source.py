"""Where functions find their configuration (file or SSM parameter via Powertools) and their ESM templates."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.aws import config_source
from shared.aws.config_source import EventSourceTemplate, ProvisionedPollers
from shared.mm2.config import ConfigError, MirrorConfig
from tests.aws.test_secrets import reset_parameters

TEXT = """
clusters = onprem, cloud
onprem.bootstrap.servers = kafka-1.dc1:9093,kafka-2.dc1:9093
cloud.bootstrap.servers = b-1.cloud:9098
onprem->cloud.enabled = true
onprem->cloud.topics = orders, payments.v1, audit-.*, __consumer_offsets, cloud.returns
onprem->cloud.topics.exclude = payments.*
smm.batch.size = 250
smm.batching.window.ms = 200
"""
MSK = "arn:aws:kafka:eu-west-1:123456789012:cluster/onprem/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_onprem-AbCdEf"


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (config_source.CONFIG_FILE_ENV, config_source.EVENT_SOURCES_ENV, "SMM_CLUSTER_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        reset_parameters()
        yield boto3.client("ssm")
        reset_parameters()


def parsed() -> MirrorConfig:
    return config_source.parse_text(TEXT)


def test_config_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mm2.properties"
    path.write_text(TEXT)
    monkeypatch.setenv(config_source.CONFIG_FILE_ENV, str(path))
    assert config_source.config_text() == TEXT
    monkeypatch.setenv(config_source.CONFIG_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read it"):
        config_source.config_text()


def test_config_from_the_ssm_parameter_is_cached_for_the_max_age(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ssm.put_parameter(Name="/smm/mm2.properties", Value=TEXT, Type="String")
    monkeypatch.setenv(config_source.CONFIG_PARAMETER_ENV, "/smm/mm2.properties")
    monkeypatch.setenv(config_source.CONFIG_MAX_AGE_ENV, "1")
    assert config_source.config_text() == TEXT
    edited = TEXT.replace("onprem->cloud.enabled = true", "onprem->cloud.enabled = false")
    ssm.put_parameter(Name="/smm/mm2.properties", Value=edited, Type="String", Overwrite=True)
    assert config_source.config_text() == TEXT  # still cached
    time.sleep(1.1)
    assert config_source.config_text() == edited  # a console edit is seen once the cache expires
    assert not config_source.parse_text(config_source.config_text()).enabled_flows()


def test_no_source_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config_source.CONFIG_FILE_ENV, raising=False)
    monkeypatch.delenv(config_source.CONFIG_PARAMETER_ENV, raising=False)
    with pytest.raises(ConfigError, match="set SMM_CONFIG_FILE"):
        config_source.config_text()


def test_flow_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config_source.FLOW_ENV, "onprem->cloud")
    assert config_source.flow_from_environment(parsed()).name == "onprem->cloud"
    monkeypatch.setenv(config_source.FLOW_ENV, "onprem")
    with pytest.raises(ConfigError, match="allowed: SOURCE->TARGET"):
        config_source.flow_from_environment(parsed())


@pytest.mark.parametrize(
    ("window_ms", "seconds"), [(500, None), (200, 0), (0, 0), (1000, 1), (1499, 1), (300_000, 300)]
)
def test_batching_window_in_whole_seconds(window_ms: int, seconds: int | None) -> None:
    assert config_source.batching_window_seconds(window_ms) == seconds


def test_msk_template_builds_create_parameters() -> None:
    flow = parsed().flow("onprem", "cloud")
    template = EventSourceTemplate(
        function_name="mirror-fn",
        msk_cluster_arn=MSK,
        access_configurations=(("SASL_SCRAM_512_AUTH", SECRET),),
        pollers=ProvisionedPollers(1, 4, "smm"),
        on_failure="kafka://failed",
        max_retry_attempts=5,
        max_record_age_seconds=3600,
        bisect_batch_on_error=True,
        metrics=("EventCount",),
    )
    assert template.create_parameters(flow, "orders", parsed().cluster("onprem")) == {
        "FunctionName": "mirror-fn",
        "EventSourceArn": MSK,
        "Topics": ["orders"],
        "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "smm:onprem:cloud:orders"},
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 250,
        "MaximumBatchingWindowInSeconds": 0,
        "Enabled": True,
        "SourceAccessConfigurations": [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}],
        "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 4, "PollerGroupName": "smm"},
        "DestinationConfig": {"OnFailure": {"Destination": "kafka://failed"}},
        "MaximumRetryAttempts": 5,
        "MaximumRecordAgeInSeconds": 3600,
        "BisectBatchOnFunctionError": True,
        "MetricsConfig": {"Metrics": ["EventCount"]},
    }


def test_self_managed_template_takes_the_servers_of_the_current_configuration() -> None:
    flow = parsed().flow("onprem", "cloud")
    params = EventSourceTemplate("mirror-fn").create_parameters(
        flow, "orders", parsed().cluster("onprem"), enabled=False
    )
    assert params["SelfManagedEventSource"] == {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka-1.dc1:9093", "kafka-2.dc1:9093"]}
    }
    assert params["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "smm:onprem:cloud:orders"}
    assert params["Enabled"] is False and "EventSourceArn" not in params


def test_templates_round_trip_through_json_env_and_parameter(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = {
        "onprem->cloud": EventSourceTemplate("a", MSK, (("SASL_SCRAM_512_AUTH", SECRET),), ProvisionedPollers(1, 2)),
        "cloud->onprem": EventSourceTemplate("b", on_failure="arn:aws:sqs:eu-west-1:123456789012:failed"),
    }
    text = json.dumps(config_source.event_sources_json(templates))
    monkeypatch.setenv(config_source.EVENT_SOURCES_ENV, text)
    assert config_source.event_sources() == templates
    monkeypatch.delenv(config_source.EVENT_SOURCES_ENV)
    ssm.put_parameter(Name="/smm/event-sources.json", Value=text, Type="String")
    monkeypatch.setenv(config_source.EVENT_SOURCES_PARAMETER_ENV, "/smm/event-sources.json")
    assert config_source.event_sources() == templates
    monkeypatch.delenv(config_source.EVENT_SOURCES_PARAMETER_ENV)
    assert config_source.event_sources() == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "SMM_EVENT_SOURCES: not JSON"),
        ("[]", "allowed: a JSON object of flow name to template"),
        ('{"a->b": {"Topics": ["x"]}}', "event sources of a->b: allowed: an object with FunctionName"),
        ('{"a->b": {"FunctionName": "f", "Topics": ["x"]}}', "unknown keys Topics"),
        ('{"a->b": {"FunctionName": "f", "ProvisionedPollerConfig": {"MinimumPollers": 1}}}', "malformed (KeyError"),
    ],
)
def test_malformed_templates_are_clear_errors(monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.setenv(config_source.EVENT_SOURCES_ENV, text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_source.event_sources()
