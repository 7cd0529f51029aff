"""AWS's MSK config providers (Secrets Manager, SSM Parameter Store) through the deployed functions' reading path.

``config_source.parse_text`` is what every function does with the configuration text; the secrets and
parameters live in moto. Values never reach a message or a log line; a missing one is an error naming the
reference.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from moto import mock_aws

from shared.aws import config_source, providers
from shared.mm2.config import ConfigError

PASSWORD = "pr0vider-pa55word"
HEADER = """\
clusters = onprem, msk
onprem.bootstrap.servers = kafka-1.dc1:9093
msk.bootstrap.servers = b-1.mirror.kafka.eu-west-1.amazonaws.com:9096
onprem->msk.enabled = true
config.providers = secretsmanager, ssm
config.providers.secretsmanager.class = com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider
config.providers.ssm.class = com.amazonaws.kafka.config.providers.SsmParamStoreConfigProvider
msk.security.protocol = SASL_SSL
msk.sasl.mechanism = SCRAM-SHA-512
"""


def reset_parameters() -> None:
    parameters_base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        reset_parameters()
        sm = boto3.client("secretsmanager")
        arn = sm.create_secret(
            Name="AmazonMSK_mirror", SecretString=json.dumps({"username": "mirror", "password": PASSWORD})
        )["ARN"]
        sm.create_secret(Name="raw-client-id", SecretString="client-from-a-raw-secret")
        boto3.client("ssm").put_parameter(Name="/kafka/onprem/linger", Value="25", Type="SecureString")
        yield {"arn": arn}
        reset_parameters()


def jaas(username: str, password: str) -> str:
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f'msk.sasl.jaas.config = {module} required username="{username}" password="{password}";\n'


def test_secrets_and_parameters_resolve_in_every_msk_syntax(aws: dict[str, str]) -> None:
    encoded_arn = urllib.parse.quote(aws["arn"], safe="")
    text = (
        HEADER
        + jaas("${secretsmanager:AmazonMSK_mirror:username}", f"${{secretsmanager:{encoded_arn}:password?ttl=60000}}")
        + "msk.producer.client.id = ${secretsmanager:raw-client-id}\n"
        + "onprem.producer.linger.ms = ${ssm::/kafka/onprem/linger}\n"
    )
    mirror_config = config_source.parse_text(text)
    msk = mirror_config.cluster("msk").settings("producer")
    assert (msk.username, msk.password) == ("mirror", PASSWORD)
    assert msk.java["client.id"] == "client-from-a-raw-secret"
    assert mirror_config.cluster("onprem").settings("producer").kafka_python["linger_ms"] == 25


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("${secretsmanager:gone:password}", "cannot read secret gone (ResourceNotFoundException)"),
        ("${secretsmanager:AmazonMSK_mirror:pass}", "no 'pass' in AmazonMSK_mirror for provider 'secretsmanager'"),
        ("${ssm::/kafka/missing}", "no '/kafka/missing' for provider 'ssm'"),
    ],
)
def test_a_missing_secret_or_parameter_is_an_error_naming_the_reference(
    aws: dict[str, str], value: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO)
    with pytest.raises(ConfigError) as caught:
        config_source.parse_text(HEADER + jaas("${secretsmanager:AmazonMSK_mirror:username}", value))
    assert any(p.startswith("msk.sasl.jaas.config: ") and fragment in p for p in caught.value.problems), caught.value
    assert PASSWORD not in str(caught.value) and PASSWORD not in caplog.text


def test_the_references_a_deployment_must_be_allowed_to_read() -> None:
    raw = {
        "config.providers": "secretsmanager,ssm,env",
        "config.providers.secretsmanager.class": providers.SECRETS_MANAGER_PROVIDER,
        "config.providers.secretsmanager.param.region": "us-east-1",
        "config.providers.ssm.class": providers.SSM_PROVIDER,
        "a": "${secretsmanager:AmazonMSK_mirror:username} ${secretsmanager:AmazonMSK_mirror:password}",
        "b": "${secretsmanager:arn%3Aaws%3Asecretsmanager%3Aus-east-1%3A123456789012%3Asecret%3Ax-AbCdEf:k}",
        "c": "${ssm::/kafka/x?ttl=5}",
        "d": "${env:HOME}",
    }
    assert providers.aws_references(raw) == [
        providers.AwsReference("secretsmanager", "AmazonMSK_mirror", "us-east-1"),
        providers.AwsReference(
            "secretsmanager", "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf", "us-east-1"
        ),
        providers.AwsReference("ssm", "/kafka/x", None),
    ]
