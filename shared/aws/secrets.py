"""Cluster credentials from AWS Secrets Manager, turned into the Kafka client settings of ``mm2.properties``.

A deployment keeps credentials out of the configuration text (which lives in a console-editable SSM parameter)
and out of the function environment: the environment only names secrets, per cluster alias. The secrets have
the shapes Lambda's Kafka event-source mappings read, so one secret serves both the ESM and our own clients:

* ``SMM_CLUSTER_SECRETS``: ``{"alias": "<secret ARN or name>"}``; the secret holds
  ``{"username", "password"}`` (SASL/SCRAM or SASL/PLAIN) or ``{"certificate", "privateKey"[,
  "privateKeyPassword"]}`` (mTLS, PEM).
* ``SMM_CLUSTER_CA_SECRETS``: ``{"alias": "<secret>"}``; the secret holds ``{"certificate"}``, the PEM root CA
  of a self-managed cluster.

The settings are added as Java client keys (``sasl.jaas.config``, ``ssl.keystore.location``, ...) to a copy of
the cluster's ``ClusterConfig``, so a cluster's client settings stay a pure function of its data.
PEM material is written to private files because ``ssl.SSLContext.load_cert_chain`` only reads files.
Secret values never appear in a log line or an error message: only aliases, secret names and key names do.

Fetched secrets are cached for ``SMM_SECRETS_MAX_AGE_SECONDS``; ``shared.aws.live_config`` reads them again when
that age has passed, and bypasses the cache (``fetched_fresh``) after a cluster refused the login, so a rotated
password is picked up on the next invocation.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from shared.mm2.config import ClusterConfig, ConfigError, MirrorConfig

CLUSTER_SECRETS_ENV = "SMM_CLUSTER_SECRETS"
CLUSTER_CA_SECRETS_ENV = "SMM_CLUSTER_CA_SECRETS"
SECRETS_DIR_ENV = "SMM_SECRETS_DIR"
SECRETS_MAX_AGE_ENV = "SMM_SECRETS_MAX_AGE_SECONDS"
DEFAULT_SECRETS_MAX_AGE_SECONDS = 300

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}

logger = Logger(service="smm-secrets")

SecretFetcher = Callable[[str], Mapping[str, Any]]

_fresh = contextvars.ContextVar("smm_fresh_secrets", default=False)


def max_age_seconds() -> int:
    """How long a fetched secret is reused: ``SMM_SECRETS_MAX_AGE_SECONDS`` (default 300)."""
    raw = os.environ.get(SECRETS_MAX_AGE_ENV, "").strip() or str(DEFAULT_SECRETS_MAX_AGE_SECONDS)
    if not raw.isdigit():
        raise ConfigError([f"{SECRETS_MAX_AGE_ENV}={raw!r}: allowed: a whole number of seconds, 0 or more"])
    return int(raw)


@contextmanager
def fetched_fresh(fresh: bool = True) -> Iterator[None]:
    """Within the block (when ``fresh``), secrets are read from Secrets Manager rather than from the cache."""
    token = _fresh.set(fresh)
    try:
        yield
    finally:
        _fresh.reset(token)


def fetch_secret(secret_id: str) -> Mapping[str, Any]:
    """The JSON of ``secret_id`` through Powertools Parameters (cached for ``max_age_seconds``, unless
    ``fetched_fresh``)."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(secret_id, transform="json", max_age=max_age_seconds(), force_fetch=_fresh.get())
    except parameters.TransformParameterError:
        raise ConfigError([f"secret {secret_id}: its value is not a JSON object"]) from None
    except parameters.GetParameterError as exc:
        raise ConfigError([f"secret {secret_id}: cannot read it ({aws_error_code(exc)})"]) from None
    if not isinstance(value, Mapping):
        raise ConfigError([f"secret {secret_id}: its value is not a JSON object"])
    return value


def apply_from_environment(config: MirrorConfig) -> MirrorConfig:
    """``config`` with the secrets named by ``SMM_CLUSTER_SECRETS``/``SMM_CLUSTER_CA_SECRETS`` applied."""
    credentials = _secret_map(CLUSTER_SECRETS_ENV)
    authorities = _secret_map(CLUSTER_CA_SECRETS_ENV)
    if not credentials and not authorities:
        return config
    return apply(config, credentials, authorities)


def apply(
    config: MirrorConfig,
    credentials: Mapping[str, str],
    authorities: Mapping[str, str] | None = None,
    fetch: SecretFetcher = fetch_secret,
    directory: Path | None = None,
) -> MirrorConfig:
    """A copy of ``config`` whose clusters carry the client settings of their secrets."""
    authorities = authorities or {}
    problems = [
        f"{env}: no cluster {alias!r} in the configuration (clusters: {', '.join(config.clusters)})"
        for env, names in ((CLUSTER_SECRETS_ENV, credentials), (CLUSTER_CA_SECRETS_ENV, authorities))
        for alias in names
        if alias not in config.clusters
    ]
    if problems:
        raise ConfigError(problems)
    files = directory or Path(os.environ.get(SECRETS_DIR_ENV) or Path(tempfile.gettempdir(), "smm-secrets"))
    clusters = dict(config.clusters)
    for alias, cluster in config.clusters.items():
        extra: dict[str, str] = {}
        if alias in authorities:
            extra.update(_authority_settings(alias, authorities[alias], fetch(authorities[alias]), files))
        if alias in credentials:
            extra.update(_credential_settings(cluster, credentials[alias], fetch(credentials[alias]), files))
        if extra:
            clusters[alias] = dataclasses.replace(cluster, client={**cluster.client, **extra})
            logger.debug("cluster settings from secrets", extra={"cluster": alias, "settings": sorted(extra)})
    return dataclasses.replace(config, clusters=clusters)


def _credential_settings(
    cluster: ClusterConfig, secret_id: str, secret: Mapping[str, Any], files: Path
) -> dict[str, str]:
    if "username" in secret or "password" in secret:
        username, password = _strings(secret_id, secret, "username", "password")
        mechanism = cluster.client.get("sasl.mechanism", "").strip()
        module = _LOGIN_MODULES.get(mechanism)
        if module is None:
            raise ConfigError(
                [
                    f"{cluster.alias}.sasl.mechanism = {mechanism or '(not set)'}: secret {secret_id} holds a "
                    f"username and password; allowed: {', '.join(_LOGIN_MODULES)}"
                ]
            )
        return {"sasl.jaas.config": f'{module} required username="{_quote(username)}" password="{_quote(password)}";'}
    if "certificate" in secret or "privateKey" in secret:
        certificate, key = _strings(secret_id, secret, "certificate", "privateKey")
        path = _private_file(files, f"{cluster.alias}-client", f"{key.strip()}\n{certificate.strip()}\n")
        settings = {"ssl.keystore.location": str(path), "ssl.keystore.type": "PEM"}
        if secret.get("privateKeyPassword"):
            (settings["ssl.key.password"],) = _strings(secret_id, secret, "privateKeyPassword")
        return settings
    raise ConfigError(
        [
            f"secret {secret_id} (cluster {cluster.alias!r}): allowed keys: username and password (SASL), "
            f"or certificate and privateKey (mTLS); found: {', '.join(sorted(secret)) or 'none'}"
        ]
    )


def _authority_settings(alias: str, secret_id: str, secret: Mapping[str, Any], files: Path) -> dict[str, str]:
    (certificate,) = _strings(secret_id, secret, "certificate")
    path = _private_file(files, f"{alias}-ca", certificate.strip() + "\n")
    return {"ssl.truststore.location": str(path), "ssl.truststore.type": "PEM"}


def _strings(secret_id: str, secret: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    bad = [k for k in keys if not isinstance(secret.get(k), str) or not secret[k]]
    if bad:
        raise ConfigError([f"secret {secret_id}: {' and '.join(bad)} must be non-empty strings"])
    return tuple(str(secret[k]) for k in keys)


def _quote(value: str) -> str:
    """A value inside a double-quoted JAAS option, read back by ``client_settings.parse_jaas``."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _private_file(directory: Path, stem: str, content: str) -> Path:
    """``content`` in a file only this user can read; named by its digest so a rotated secret gets a new file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{stem}-{hashlib.sha256(content.encode()).hexdigest()[:16]}.pem"
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}-")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.replace(tmp, path)
    return path


def _secret_map(env: str) -> dict[str, str]:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError([f'{env}: allowed: a JSON object of cluster alias to secret ARN, e.g. {{"A": "arn:..."}}'])
    return value


def aws_error_code(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(cause).__name__))
    return type(cause or exc).__name__
