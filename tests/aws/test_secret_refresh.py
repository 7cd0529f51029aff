"""A deployed function's configuration under console edits and secret rotation (moto SSM and Secrets Manager).

The mirror function's container and a scheduled function's task cache run the last good configuration: which
one runs, with which credentials, and what is published and logged when an edit is rejected.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.mirror import handler as mirror_handler
from functions.mirror.mirror import Mirror
from functions.scheduled import TaskCache
from shared.aws import config_source, secrets
from shared.kafka.clients import ClusterAuthenticationError, KafkaClients
from shared.mm2.client_settings import parse_jaas
from shared.mm2.config import ConfigError, MirrorConfig
from tests.aws.test_secrets import reset_parameters

PARAMETER = "/smm/mm2.properties"
FIRST, ROTATED = "first-Pa55-7c1e", "rotated-Pa55-90ab"
TEXT = """
clusters = onprem, cloud
onprem.bootstrap.servers = kafka-1.dc1:9096
onprem.security.protocol = SASL_SSL
onprem.sasl.mechanism = SCRAM-SHA-512
cloud.bootstrap.servers = b-1.cloud:9098
onprem->cloud.enabled = true
onprem->cloud.topics = orders
"""
TYPO = TEXT.replace("onprem->cloud.topics = orders", "onprem->cloud.replication.factor = three")
NO_FLOW = TEXT.replace("cloud", "lab")  # the function serves onprem->cloud


@dataclass
class Aws:
    ssm: Any
    secrets: Any
    credentials: str  # the onprem cluster's secret ARN

    def edit(self, text: str) -> None:
        """A console edit of the configuration parameter."""
        self.ssm.put_parameter(Name=PARAMETER, Value=text, Type="String", Overwrite=True)

    def rotate(self, value: dict[str, str]) -> None:
        self.secrets.put_secret_value(SecretId=self.credentials, SecretString=json.dumps(value))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Aws]:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        config_source.CONFIG_PARAMETER_ENV: PARAMETER,
        config_source.CONFIG_MAX_AGE_ENV: "0",  # an edit is seen by the next invocation
        config_source.FLOW_ENV: "onprem->cloud",
        secrets.SECRETS_DIR_ENV: str(tmp_path / "secrets"),
        "POWERTOOLS_METRICS_DISABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (config_source.CONFIG_FILE_ENV, secrets.CLUSTER_CA_SECRETS_ENV, secrets.SECRETS_MAX_AGE_ENV):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        reset_parameters()
        ssm, manager = boto3.client("ssm"), boto3.client("secretsmanager")
        arn = manager.create_secret(
            Name="AmazonMSK_onprem", SecretString=json.dumps({"username": "mirror", "password": FIRST})
        )["ARN"]
        monkeypatch.setenv(secrets.CLUSTER_SECRETS_ENV, json.dumps({"onprem": arn}))
        deployed = Aws(ssm, manager, arn)
        deployed.edit(TEXT)
        yield deployed
        reset_parameters()


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[Mirror]:
    """Every Mirror closed during the test, in order."""
    seen: list[Mirror] = []
    close = Mirror.close

    def recording(mirror: Mirror) -> None:
        seen.append(mirror)
        close(mirror)

    monkeypatch.setattr(Mirror, "close", recording)
    return seen


@pytest.fixture
def container(closed: list[Mirror]) -> Iterator[Any]:
    """A fresh mirror-function container (as a cold start gets)."""
    made = mirror_handler._Container()
    yield made
    made.close()


def password(mirror: Mirror) -> str:
    return parse_jaas(mirror.clients.config.cluster("onprem").client["sasl.jaas.config"])["password"]


def rejections(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The ConfigRejected EMF documents printed since the last call."""
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return [d for d in documents if "ConfigRejected" in d]


def test_a_bad_console_edit_keeps_the_last_good_mirror_until_it_is_fixed(
    aws: Aws,
    container: Any,
    closed: list[Mirror],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=mirror_handler.SERVICE)
    good = container.mirror()
    assert good.flow.settings.topics == ("orders",) and password(good) == FIRST

    aws.edit(TYPO)
    for _ in range(3):  # three invocations while the typo is in the parameter
        assert container.mirror() is good
    assert closed == []
    published = rejections(capsys)
    assert [(d["ConfigRejected"], d["service"]) for d in published] == [([1.0], "smm-mirror")] * 3
    assert published[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == "configuration rejected: the last good configuration keeps running"
    assert error.__dict__["problems"] == ["onprem->cloud.replication.factor = 'three': allowed: a whole number >= -1"]

    aws.edit(TEXT.replace("= orders", "= orders, payments"))
    fixed = container.mirror()
    assert fixed is not good and fixed.flow.settings.topics == ("orders", "payments")
    assert closed == [good] and rejections(capsys) == []


def test_an_edit_without_the_functions_flow_is_rejected(
    aws: Aws, container: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    good = container.mirror()
    aws.edit(NO_FLOW)
    assert container.mirror() is good
    assert len(rejections(capsys)) == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.__dict__["problems"] == ["no flow onprem->cloud (flows: onprem->lab, lab->onprem)"]


def test_a_cold_start_with_a_bad_parameter_fails_with_the_problems(
    aws: Aws, container: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.edit(TYPO)
    with pytest.raises(ConfigError, match=r"onprem->cloud.replication.factor = 'three'"):
        container.mirror()
    assert len(rejections(capsys)) == 1


def test_a_rotated_secret_is_used_once_its_max_age_has_passed(
    aws: Aws, container: Any, closed: list[Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(secrets.SECRETS_MAX_AGE_ENV, "1")
    first = container.mirror()
    aws.rotate({"username": "mirror", "password": ROTATED})
    time.sleep(1.2)  # the secrets' max age (the text did not change)
    second = container.mirror()
    assert password(second) == ROTATED and closed == [first]  # new clients first, then the old ones closed
    time.sleep(1.2)
    assert container.mirror() is second  # read again, unchanged: the same clients go on


def test_a_refused_login_picks_up_a_rotated_password_on_the_next_invocation(
    aws: Aws, container: Any, closed: list[Mirror]
) -> None:
    first = container.mirror()
    aws.rotate({"username": "mirror", "password": ROTATED})
    assert container.mirror() is first  # within the secrets' max age (300 s) nothing is read

    container.failed(ClusterAuthenticationError("cannot log in to cluster 'onprem' at kafka-1.dc1:9096"))
    second = container.mirror()
    assert password(second) == ROTATED and closed == [first]


def test_a_rotated_secret_that_breaks_the_configuration_is_rejected_without_showing_it(
    aws: Aws,
    container: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    # botocore's wire log (DEBUG, off unless someone turns it on) prints response bodies: out of scope here.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO)
    good = container.mirror()
    aws.rotate({"user": "mirror", "pass": "hunter2-Secret-e5"})  # the wrong keys
    container.failed(ClusterAuthenticationError("cannot log in to cluster 'onprem'"))
    assert container.mirror() is good
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err + "".join(str(vars(r)) for r in caplog.records)
    assert "ConfigRejected" in out.out
    assert "allowed keys: username and password (SASL), or certificate and privateKey (mTLS)" in logged
    for value in (FIRST, "hunter2-Secret-e5"):
        assert value not in logged


@dataclass
class FlowTask:
    flow: str
    name: str = "role"

    def interval_seconds(self) -> float:
        return 60.0

    def run_once(self) -> dict[str, Any]:
        return {"flow": self.flow}


def test_a_scheduled_function_keeps_its_tasks_and_publishes_under_its_own_service(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    def build(mirror_config: MirrorConfig, clients: KafkaClients) -> dict[str, FlowTask]:
        return {f.name: FlowTask(f.name) for f in mirror_config.enabled_flows()}

    cache = TaskCache(build, client_id="smm-heartbeats")
    try:
        first = cache.tasks()
        assert list(first) == ["onprem->cloud"]
        aws.edit(TYPO)
        assert cache.tasks()["onprem->cloud"] is first["onprem->cloud"]  # the last good tasks go on
        [published] = rejections(capsys)
        assert published["service"] == "smm-heartbeats"
        aws.edit(NO_FLOW.replace("onprem->lab.topics", "lab->onprem.enabled = true\nlab->onprem.topics"))
        assert sorted(cache.tasks()) == ["lab->onprem", "onprem->lab"]
    finally:
        cache.close()
