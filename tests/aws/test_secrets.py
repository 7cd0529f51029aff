"""Cluster credentials from Secrets Manager (moto) into client settings, and never into a log line."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from shared.aws import config_source, secrets
from shared.mm2.client_settings import parse_jaas
from shared.mm2.config import ConfigError

PASSWORD = 'p@ss "quoted" \\ back-slashed \u00e9'
KEY_PASSWORD = "k3y-pa55-9f8e7d"
CERT = "-----BEGIN CERTIFICATE-----\nMIIclientcert0123456789\n-----END CERTIFICATE-----"
KEY = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIclientkey0123456789\n-----END ENCRYPTED PRIVATE KEY-----"
CA = "-----BEGIN CERTIFICATE-----\nMIIrootca0123456789\n-----END CERTIFICATE-----"
SECRET_VALUES = (PASSWORD, KEY_PASSWORD, "MIIclientcert0123456789", "MIIclientkey0123456789", "MIIrootca0123456789")

CONFIG = """
clusters = onprem, cloud, lab
onprem.bootstrap.servers = kafka-1.dc1:9093
onprem.security.protocol = SASL_SSL
onprem.sasl.mechanism = SCRAM-SHA-512
cloud.bootstrap.servers = b-1.cloud:9094
cloud.security.protocol = SSL
lab.bootstrap.servers = lab-1:9092
lab.security.protocol = SASL_PLAINTEXT
lab.sasl.mechanism = PLAIN
onprem->cloud.enabled = true
"""


def reset_parameters() -> None:
    """Powertools keeps providers (holding boto3 clients made outside the mock) and cached values module-wide."""
    parameters_base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Three secrets in a mocked Secrets Manager; their ARNs by name."""
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        secrets.SECRETS_DIR_ENV: str(tmp_path / "secrets"),
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        reset_parameters()
        client = boto3.client("secretsmanager")
        arns = {
            name: client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
            for name, value in {
                "AmazonMSK_onprem": {"username": "mirror", "password": PASSWORD},
                "cloud-client": {"certificate": CERT, "privateKey": KEY, "privateKeyPassword": KEY_PASSWORD},
                "onprem-ca": {"certificate": CA},
                "lab": {"username": "lab-user", "password": "lab-pa55w0rd"},
                "not-json": "just text",
                "wrong-keys": {"user": "x", "pass": "hunter2-secret"},
            }.items()
        }
        client.put_secret_value(SecretId=arns["not-json"], SecretString="no {json here")
        yield arns
        reset_parameters()


def configure(
    monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str], authorities: dict[str, str] | None = None
) -> None:
    monkeypatch.setenv(secrets.CLUSTER_SECRETS_ENV, json.dumps(credentials))
    if authorities:
        monkeypatch.setenv(secrets.CLUSTER_CA_SECRETS_ENV, json.dumps(authorities))


def test_scram_mtls_plain_and_root_ca_become_client_settings(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(
        monkeypatch,
        {"onprem": aws["AmazonMSK_onprem"], "cloud": aws["cloud-client"], "lab": aws["lab"]},
        {"onprem": aws["onprem-ca"]},
    )
    mirror_config = config_source.parse_text(CONFIG)

    onprem = mirror_config.cluster("onprem").role_settings("producer")
    assert onprem["sasl.mechanism"] == "SCRAM-SHA-512" and onprem["security.protocol"] == "SASL_SSL"
    jaas = parse_jaas(onprem["sasl.jaas.config"])
    assert (jaas["username"], jaas["password"]) == ("mirror", PASSWORD)
    assert Path(onprem["ssl.truststore.location"]).read_text() == CA + "\n"

    cloud = mirror_config.cluster("cloud").role_settings("consumer")
    # key and chain in one PEM file, as load_cert_chain reads them
    assert Path(cloud["ssl.keystore.location"]).read_text() == f"{KEY}\n{CERT}\n"
    assert cloud["ssl.key.password"] == KEY_PASSWORD and cloud["security.protocol"] == "SSL"

    lab = parse_jaas(mirror_config.cluster("lab").role_settings("admin")["sasl.jaas.config"])
    assert (lab["username"], lab["password"]) == ("lab-user", "lab-pa55w0rd")

    for path in (Path(onprem["ssl.truststore.location"]), Path(cloud["ssl.keystore.location"])):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_parsed_configuration_itself_stays_pure(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret settings are on a copy; parsing without the environment gives the file's settings only."""
    configure(monkeypatch, {"onprem": aws["AmazonMSK_onprem"]})
    with_secrets = config_source.parse_text(CONFIG)
    monkeypatch.delenv(secrets.CLUSTER_SECRETS_ENV)
    plain = config_source.parse_text(CONFIG)
    assert "sasl.jaas.config" in with_secrets.cluster("onprem").client
    assert "sasl.jaas.config" not in plain.cluster("onprem").client
    assert with_secrets.flows == plain.flows


def test_without_the_environment_nothing_is_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(secrets.CLUSTER_SECRETS_ENV, raising=False)
    monkeypatch.delenv(secrets.CLUSTER_CA_SECRETS_ENV, raising=False)

    def fail(secret_id: str) -> Any:
        raise AssertionError("no secret should be read")

    mirror_config = config_source.parse_text(CONFIG)
    assert secrets.apply(mirror_config, {}, {}, fetch=fail) == mirror_config


def test_a_rotated_secret_gets_a_new_file(tmp_path: Path) -> None:
    mirror_config = config_source.parse_text(CONFIG)
    values = iter([{"certificate": CA}, {"certificate": CA.replace("rootca", "rotated")}])
    first, second = (
        secrets.apply(mirror_config, {}, {"onprem": "ca"}, fetch=lambda _: next(values), directory=tmp_path)
        for _ in range(2)
    )
    paths = {c.cluster("onprem").client["ssl.truststore.location"] for c in (first, second)}
    assert len(paths) == 2 and all(Path(p).exists() for p in paths)


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            {"onprem": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"},
            "cannot read it (ResourceNotFoundException)",
        ),
        ({"onprem": "@not-json"}, "its value is not a JSON object"),
        (
            {"onprem": "@wrong-keys"},
            "allowed keys: username and password (SASL), or certificate and privateKey (mTLS); found: pass, user",
        ),
        ({"elsewhere": "@lab"}, "SMM_CLUSTER_SECRETS: no cluster 'elsewhere'"),
        ({"cloud": "@lab"}, "cloud.sasl.mechanism = (not set): secret"),
    ],
)
def test_problems_name_the_cluster_and_secret_never_the_value(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str], message: str
) -> None:
    configure(monkeypatch, {k: aws.get(v.lstrip("@"), v) for k, v in credentials.items()})
    with pytest.raises(ConfigError) as caught:
        config_source.parse_text(CONFIG)
    text = str(caught.value)
    assert message in text
    assert "hunter2" not in text and "lab-pa55w0rd" not in text and "no {json" not in text
    error = caught.value  # no chained exception carries the AWS response along
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_malformed_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.CLUSTER_SECRETS_ENV, '["not", "an", "object"]')
    with pytest.raises(ConfigError, match="SMM_CLUSTER_SECRETS: allowed: a JSON object of cluster alias"):
        config_source.parse_text(CONFIG)


def test_no_secret_value_appears_in_any_log_line(
    aws: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Everything our code and Powertools log, at DEBUG, on success and on failure."""
    caplog.set_level(logging.DEBUG)
    # botocore's wire log (DEBUG, off unless someone turns it on) prints response bodies: out of scope here.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO)
    secrets.logger.setLevel(logging.DEBUG)
    configure(
        monkeypatch,
        {"onprem": aws["AmazonMSK_onprem"], "cloud": aws["cloud-client"], "lab": aws["lab"]},
        {"onprem": aws["onprem-ca"]},
    )
    config_source.parse_text(CONFIG)
    configure(monkeypatch, {"onprem": aws["wrong-keys"]})
    with pytest.raises(ConfigError):
        config_source.parse_text(CONFIG)
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err
    assert "cluster settings from secrets" in logged  # the debug line was emitted (and captured)
    for value in (*SECRET_VALUES, "lab-pa55w0rd", "hunter2-secret"):
        assert value not in logged
    assert os.environ[secrets.CLUSTER_SECRETS_ENV].startswith("{")  # only ARNs live in the environment
