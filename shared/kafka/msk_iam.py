"""MSK IAM for both client libraries: SASL/OAUTHBEARER with tokens from ``aws-msk-iam-sasl-signer-python``.

MM2's files say ``sasl.mechanism = AWS_MSK_IAM`` with ``IAMLoginModule`` (and perhaps ``awsProfileName`` or
``awsRoleArn``). MSK's IAM listeners also take OAUTHBEARER with a token AWS's signer makes: a base64url, unpadded,
SigV4-presigned ``https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect`` URL that is valid for
900 s. Both kafka-python (``sasl_oauth_token_provider``) and librdkafka (``oauth_cb``) ask for a fresh token
when they connect, so credentials come from the default chain (the Lambda role on AWS), a named profile or an
assumed role, each time. The region is the one in the broker host names, else the process's AWS region.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from kafka.net.sasl.oauth import AbstractTokenProvider

from shared.mm2.client_settings import MskIam
from shared.mm2.config import ConfigError

_REGION_IN_HOST = re.compile(r"\.kafka(?:-serverless)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class MskIamError(ConfigError):
    """MSK IAM cannot be set up (no region); the message names the cluster and the fix."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def region_of(servers: Sequence[str], alias: str) -> str:
    """The AWS region of an MSK cluster, from its broker host names or the environment."""
    for server in servers:
        match = _REGION_IN_HOST.search(server.rsplit(":", 1)[0])
        if match:
            return match.group(1)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise MskIamError(
            f"cluster {alias!r} uses MSK IAM, but its region is neither in its broker host names nor in "
            "AWS_REGION / AWS_DEFAULT_REGION; set AWS_REGION"
        )
    return region


def token(iam: MskIam, region: str) -> tuple[str, int]:
    """A signed token and its expiry (epoch ms), with the login module's credentials."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    if iam.role_arn:
        session = iam.session_name or "MSKSASLDefaultSession"
        result = MSKAuthTokenProvider.generate_auth_token_from_role_arn(region, iam.role_arn, session)
    elif iam.profile:
        result = MSKAuthTokenProvider.generate_auth_token_from_profile(region, iam.profile)
    else:
        result = MSKAuthTokenProvider.generate_auth_token(region)
    signed, expiry_ms = result
    return str(signed), int(expiry_ms)


class TokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """kafka-python's OAUTHBEARER token source."""

    def __init__(self, iam: MskIam, region: str) -> None:
        super().__init__()
        self.iam = iam
        self.region = region

    def token(self) -> str:
        return token(self.iam, self.region)[0]


def kafka_python_settings(iam: MskIam, region: str) -> dict[str, Any]:
    return {"sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_provider": TokenProvider(iam, region)}


def librdkafka_settings(iam: MskIam, region: str) -> dict[str, Any]:
    def oauth_cb(_config: str) -> tuple[str, float]:
        signed, expiry_ms = token(iam, region)
        return signed, expiry_ms / 1000.0

    return {"sasl.mechanism": "OAUTHBEARER", "oauth_cb": oauth_cb}
