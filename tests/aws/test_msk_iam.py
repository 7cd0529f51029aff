"""MSK IAM on both client libraries: the token each one sends, checked against AWS's documented format.

The signer (``aws-msk-iam-sasl-signer-python``) presigns ``GET https://kafka.<region>.amazonaws.com/?Action=
kafka-cluster:Connect`` with SigV4 query parameters, valid 900 s, adds its ``User-Agent`` and base64url-encodes
the URL without padding. With fixed credentials and a fixed clock the token is recomputed here, signature
included, from the SigV4 rules themselves; then both libraries' settings are shown to hand out that token. An
assumed role (``awsRoleArn``) goes through STS (moto) and signs with the role's credentials; a named profile
(``awsProfileName``) reads its own credentials. What this cannot prove offline: that MSK accepts the token.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import Credentials
from moto import mock_aws

from shared.kafka import msk_iam
from shared.kafka import settings as client_settings
from shared.mm2 import config

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0)
REGION = "eu-west-1"
ACCESS, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"
IAM = "software.amazon.msk.auth.iam.IAMLoginModule"
HANDLER = "software.amazon.msk.auth.iam.IAMClientCallbackHandler"
BROKERS = (
    "b-1.mirror.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.mirror.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"
)


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: NOW)


@pytest.fixture
def fixed_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        MSKAuthTokenProvider, "__load_default_credentials__", lambda: Credentials(ACCESS, SECRET, TOKEN)
    )


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def expected_url(access: str, secret: str, token: str | None) -> str:
    """The presigned URL, by SigV4's rules for query-string authentication (service kafka-cluster)."""
    date, stamp = NOW.strftime("%Y%m%d"), NOW.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{date}/{REGION}/kafka-cluster/aws4_request"
    params = {
        "Action": "kafka-cluster:Connect",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": "900",
        "X-Amz-SignedHeaders": "host",
    }
    if token:
        params["X-Amz-Security-Token"] = token
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    host = f"kafka.{REGION}.amazonaws.com"
    canonical = f"GET\n/\n{query}\nhost:{host}\n\nhost\n{hashlib.sha256(b'').hexdigest()}"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _sign(_sign(_sign(_sign(f"AWS4{secret}".encode(), date), REGION), "kafka-cluster"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"https://{host}/?{query}&X-Amz-Signature={signature}&User-Agent=aws-msk-iam-sasl-signer-python%2F1.0.2"


def expected(access: str, secret: str, token: str | None) -> tuple[str, str, str, list[tuple[str, str]]]:
    url = urllib.parse.urlsplit(expected_url(access, secret, token))
    return url.scheme, url.netloc, url.path, sorted(urllib.parse.parse_qsl(url.query, strict_parsing=True))


def decode(token: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    """A token's URL: scheme, host, path and its query parameters (in sorted order, signature included)."""
    url = urllib.parse.urlsplit(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    return url.scheme, url.netloc, url.path, sorted(urllib.parse.parse_qsl(url.query, strict_parsing=True))


def iam_config(**extra: str) -> config.MirrorConfig:
    jaas = f"{IAM} required{extra.pop('options', '')};"
    return config.parse(
        {
            "clusters": "onprem, msk",
            "onprem.bootstrap.servers": "kafka-1.dc1:9092",
            "msk.bootstrap.servers": BROKERS,
            "msk.security.protocol": "SASL_SSL",
            "msk.sasl.mechanism": "AWS_MSK_IAM",
            "msk.sasl.jaas.config": jaas,
            "msk.sasl.client.callback.handler.class": HANDLER,
            "onprem->msk.enabled": "true",
            **extra,
        }
    )


def test_the_token_is_the_documented_presigned_url(fixed_clock: None, fixed_credentials: None) -> None:
    signed, expiry_ms = msk_iam.token(msk_iam.MskIam(), REGION)
    assert "=" not in signed and "+" not in signed and "/" not in signed  # base64url, unpadded
    assert decode(signed) == expected(ACCESS, SECRET, TOKEN)
    assert expiry_ms == int(NOW.replace(tzinfo=datetime.UTC).timestamp() + 900) * 1000


def test_both_libraries_send_that_token(fixed_clock: None, fixed_credentials: None) -> None:
    mirror_config = iam_config()
    assert not [w for w in mirror_config.warnings if w.key.startswith("msk.")]  # MM2's IAM keys are all understood
    cluster = mirror_config.cluster("msk")
    python = client_settings.kafka_python(cluster, "producer")
    assert (python["security_protocol"], python["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert decode(python["sasl_oauth_token_provider"].token()) == expected(ACCESS, SECRET, TOKEN)
    librdkafka = client_settings.librdkafka(cluster, "producer", {})
    assert (librdkafka["security.protocol"], librdkafka["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    signed, expiry_seconds = librdkafka["oauth_cb"]("")
    assert decode(signed) == expected(ACCESS, SECRET, TOKEN)
    assert expiry_seconds == NOW.replace(tzinfo=datetime.UTC).timestamp() + 900
    assert "sasl.username" not in librdkafka and "sasl_plain_password" not in python


def test_the_region_comes_from_the_broker_names_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert msk_iam.region_of(BROKERS.split(","), "msk") == "eu-west-1"
    assert msk_iam.region_of(["boot-abc.c3.kafka-serverless.us-east-2.amazonaws.com:9098"], "s") == "us-east-2"
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert msk_iam.region_of(["10.0.0.1:9098"], "onprem") == "ap-south-1"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(msk_iam.MskIamError, match=r"cluster 'onprem' uses MSK IAM.*set AWS_REGION"):
        msk_iam.region_of(["10.0.0.1:9098"], "onprem")


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "caller",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def test_aws_role_arn_signs_with_the_assumed_role(fixed_clock: None, sts: None) -> None:
    role = boto3.client("iam").create_role(RoleName="mirror", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cluster = iam_config(options=f' awsRoleArn="{role}" awsRoleSessionName="smm"').cluster("msk")
    assert cluster.settings("consumer").iam == msk_iam.MskIam(role_arn=role, session_name="smm")
    query = dict(decode(client_settings.kafka_python(cluster, "consumer")["sasl_oauth_token_provider"].token())[3])
    credential = query["X-Amz-Credential"]
    assert credential.startswith("ASIA") and not credential.startswith("caller")  # moto's temporary credentials


def test_aws_profile_name_signs_with_that_profile(
    fixed_clock: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[mirror]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    cluster = iam_config(options=' awsProfileName="mirror"').cluster("msk")
    signed, _ = client_settings.librdkafka(cluster, "admin", {})["oauth_cb"]("")
    assert decode(signed) == expected("AKIDPROFILE", "profile-secret", None)
