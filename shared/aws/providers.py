"""AWS's MSK config providers for ``mm2.properties``: ``${secretsmanager:...}`` and ``${ssm::...}`` references.

The syntax is that of ``aws-samples/msk-config-providers``, which MSK Connect and MM2 users already write:

    config.providers = secretsmanager, ssm
    config.providers.secretsmanager.class = com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider
    config.providers.ssm.class = com.amazonaws.kafka.config.providers.SsmParamStoreConfigProvider
    config.providers.secretsmanager.param.region = eu-west-1          (optional; else the function's region)
    A.sasl.jaas.config = ... password="${secretsmanager:AmazonMSK_mirror:password}";
    B.ssl.truststore.password = ${ssm::/kafka/truststore-password}

``${secretsmanager:<secret name, or URL-encoded ARN>:<JSON key>}`` reads one key of a JSON secret,
``${secretsmanager:<secret>}`` the whole secret string; a ``?ttl=<ms>`` suffix is accepted and ignored (values are
cached like other secrets, ``SMM_SECRETS_MAX_AGE_SECONDS``). ``${ssm::<parameter name>}`` reads a parameter,
decrypted. ``cdk synth`` resolves nothing (``deferred``): the text goes to the deployment as written, and the
functions resolve the references with their own role, which the stack grants exactly these secrets and parameters.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.aws.secrets import aws_error_code
from shared.mm2 import providers
from shared.mm2.providers import Deferred, ProviderError, ProviderFactory, Reference

SECRETS_MANAGER_PROVIDER = "com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider"
SSM_PROVIDER = "com.amazonaws.kafka.config.providers.SsmParamStoreConfigProvider"
AWS_PROVIDERS = (SECRETS_MANAGER_PROVIDER, SSM_PROVIDER)
_MAX_AGE_ENV = "SMM_SECRETS_MAX_AGE_SECONDS"


def _without_ttl(key: str) -> str:
    return key.split("?", 1)[0]


def _max_age() -> int:
    return int(os.environ.get(_MAX_AGE_ENV, "300"))


@dataclass
class SecretsManagerProvider:
    """``SecretsManagerConfigProvider``: a JSON key of a secret, or the whole secret string."""

    params: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        found: dict[str, str] = {}
        for key in keys:
            if path:
                secret = self._secret(urllib.parse.unquote(path))
                try:
                    document = json.loads(secret)
                except json.JSONDecodeError:
                    raise ProviderError(
                        f"secret {path} is not a JSON object; write ${{secretsmanager:{path}}}"
                    ) from None
                value = document.get(_without_ttl(key)) if isinstance(document, dict) else None
                if value is not None:
                    found[key] = str(value)
            else:
                found[key] = self._secret(urllib.parse.unquote(_without_ttl(key)))
        return found

    def _secret(self, secret_id: str) -> str:
        from aws_lambda_powertools.utilities import parameters

        region = self.params.get("region")
        try:
            if region:
                import boto3

                value = parameters.get_secret(
                    secret_id, max_age=_max_age(), boto3_client=boto3.client("secretsmanager", region_name=region)
                )
            else:
                value = parameters.get_secret(secret_id, max_age=_max_age())
        except parameters.GetParameterError as exc:
            raise ProviderError(f"cannot read secret {secret_id} ({aws_error_code(exc)})") from None
        return str(value)


@dataclass
class SsmProvider:
    """``SsmParamStoreConfigProvider``: ``${ssm::<name>}``, a parameter's value (SecureString decrypted)."""

    params: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        from aws_lambda_powertools.utilities import parameters

        region = self.params.get("region")
        found: dict[str, str] = {}
        for key in keys:
            name = _without_ttl(key)
            try:
                if region:
                    import boto3

                    client = boto3.client("ssm", region_name=region)
                    value: Any = parameters.get_parameter(name, decrypt=True, max_age=_max_age(), boto3_client=client)
                else:
                    value = parameters.get_parameter(name, decrypt=True, max_age=_max_age())
            except parameters.GetParameterError as exc:
                if "ParameterNotFound" in aws_error_code(exc):
                    continue
                raise ProviderError(f"cannot read parameter {name} ({aws_error_code(exc)})") from None
            found[key] = str(value)
        return found


def factories() -> dict[str, ProviderFactory]:
    """Every provider, resolving now: Kafka's own and AWS's."""
    return {
        **providers.KAFKA_PROVIDERS,
        SECRETS_MANAGER_PROVIDER: lambda params: SecretsManagerProvider(params),
        SSM_PROVIDER: lambda params: SsmProvider(params),
    }


def deferred_factories() -> dict[str, ProviderFactory]:
    """Every provider, resolving nothing: for ``cdk synth``, where no secret may be read or written down."""
    return {name: lambda _params: Deferred() for name in factories()}


@dataclass(frozen=True)
class AwsReference:
    """A secret or parameter a configuration reads, for the IAM policy that lets the functions read it."""

    service: str  # "secretsmanager" or "ssm"
    name: str  # secret name or ARN, parameter name
    region: str | None = None  # the provider's param.region; None: the function's own region


def aws_references(raw: Mapping[str, str]) -> list[AwsReference]:
    """The Secrets Manager secrets and SSM parameters the file's AWS provider references read."""
    found: list[AwsReference] = []
    for value in raw.values():
        for ref in providers.references(value):
            reference = _aws_reference(ref, raw)
            if reference is not None and reference not in found:
                found.append(reference)
    return found


def declared_class(raw: Mapping[str, str], provider: str) -> str | None:
    """The class of a provider the file declares in ``config.providers``, else None."""
    names = [n.strip() for n in raw.get(providers.PROVIDERS_KEY, "").split(",")]
    if provider not in names:
        return None
    return raw.get(f"{providers.PROVIDERS_KEY}.{provider}.class", "").strip() or None


def _aws_reference(ref: Reference, raw: Mapping[str, str]) -> AwsReference | None:
    cls = declared_class(raw, ref.provider)
    region = raw.get(f"{providers.PROVIDERS_KEY}.{ref.provider}.param.region", "").strip() or None
    if cls == SECRETS_MANAGER_PROVIDER:
        return AwsReference("secretsmanager", urllib.parse.unquote(ref.path or _without_ttl(ref.key)), region)
    if cls == SSM_PROVIDER:
        return AwsReference("ssm", _without_ttl(ref.key), region)
    return None
