"""Kafka client settings of ``mm2.properties`` (Java names) and their kafka-python equivalents.

A user brings the client keys MM2 uses (``A.security.protocol``, ``A.producer.linger.ms``, ...); this table says
which ones this runtime understands and how each becomes a kafka-python argument. Anything else is rejected
by the config parser with the list of what is allowed.

The passwords these settings carry must not reach a log: kafka-python's admin client logs its whole
configuration at DEBUG, so importing this module puts a filter on that logger which hides them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("producer", "consumer", "admin")


class SettingError(ValueError):
    """A client setting whose value cannot be used; the message says what is allowed."""


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise SettingError("must be a whole number") from None


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        v = value.strip()
        if v not in allowed:
            raise SettingError(f"must be one of {', '.join(allowed)}")
        return v

    return convert


def _text(value: str) -> str:
    return value.strip()


def _endpoint_check(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("", "https"):
        raise SettingError("must be https or empty")
    return v == "https"


_JAAS_HEAD = re.compile(r"^\s*[\w.$]+\s+(required|requisite|sufficient|optional)\b", re.IGNORECASE)
_JAAS_OPTION = re.compile(r"""(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([^\s;"']+))""")
_BACKSLASH_ESCAPE = re.compile(r"\\(.)")


def parse_jaas(value: str) -> dict[str, str]:
    """Options of a PlainLoginModule or ScramLoginModule ``sasl.jaas.config``, quoted the way Kafka reads them."""
    head = _JAAS_HEAD.match(value)
    if head is None:
        raise SettingError('must look like: <LoginModule class> required username="..." password="...";')
    options = {
        name: _BACKSLASH_ESCAPE.sub(r"\1", double or single or bare)
        for name, double, single, bare in _JAAS_OPTION.findall(value[head.end() :])
    }
    missing = [k for k in ("username", "password") if k not in options]
    if missing:
        raise SettingError(f"lacks {' and '.join(missing)}")
    return options


def _range(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        number = _int(value)
        if not low <= number <= high:
            raise SettingError(f"must be between {low} and {high}")
        return number

    return convert


def _compression(value: str) -> str | None:
    v = _choice("none", "gzip", "snappy", "lz4", "zstd")(value)
    return None if v == "none" else v


@dataclass(frozen=True)
class ClientKey:
    """One Java client key: its kafka-python argument (None: checked, not passed on) and converter."""

    python_name: str | None
    convert: Callable[[str], Any]


COMMON_KEYS: dict[str, ClientKey] = {
    "security.protocol": ClientKey("security_protocol", _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    "sasl.mechanism": ClientKey(
        "sasl_mechanism", _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM")
    ),
    "sasl.jaas.config": ClientKey("sasl_jaas_config", parse_jaas),
    "ssl.truststore.location": ClientKey("ssl_cafile", _text),
    "ssl.truststore.type": ClientKey(None, _choice("PEM")),
    "ssl.truststore.password": ClientKey(None, _text),
    "ssl.keystore.location": ClientKey("ssl_certfile", _text),
    "ssl.keystore.type": ClientKey(None, _choice("PEM")),
    "ssl.keystore.password": ClientKey("ssl_password", _text),
    "ssl.key.password": ClientKey("ssl_password", _text),
    "ssl.endpoint.identification.algorithm": ClientKey("ssl_check_hostname", _endpoint_check),
    "client.id": ClientKey("client_id", _text),
    "request.timeout.ms": ClientKey("request_timeout_ms", _int),
    "metadata.max.age.ms": ClientKey("metadata_max_age_ms", _int),
    "connections.max.idle.ms": ClientKey("connections_max_idle_ms", _int),
    "reconnect.backoff.ms": ClientKey("reconnect_backoff_ms", _int),
    "reconnect.backoff.max.ms": ClientKey("reconnect_backoff_max_ms", _int),
    "retry.backoff.ms": ClientKey("retry_backoff_ms", _int),
}

ROLE_KEYS: dict[str, dict[str, ClientKey]] = {
    "producer": {
        "linger.ms": ClientKey("linger_ms", _int),
        "batch.size": ClientKey("batch_size", _int),
        "compression.type": ClientKey("compression_type", _compression),
        "max.request.size": ClientKey("max_request_size", _int),
        "buffer.memory": ClientKey("buffer_memory", _int),
        "delivery.timeout.ms": ClientKey("delivery_timeout_ms", _int),
        "max.in.flight.requests.per.connection": ClientKey("max_in_flight_requests_per_connection", _range(1, 5)),
        # Kept at acks=all and idempotence on: anything weaker could lose or duplicate records.
        "acks": ClientKey(None, _choice("all", "-1")),
        "enable.idempotence": ClientKey(None, _choice("true")),
    },
    "consumer": {
        "max.poll.records": ClientKey("max_poll_records", _int),
        "fetch.min.bytes": ClientKey("fetch_min_bytes", _int),
        "fetch.max.wait.ms": ClientKey("fetch_max_wait_ms", _int),
        "fetch.max.bytes": ClientKey("fetch_max_bytes", _int),
        "max.partition.fetch.bytes": ClientKey("max_partition_fetch_bytes", _int),
        "isolation.level": ClientKey("isolation_level", _choice("read_uncommitted", "read_committed")),
        "session.timeout.ms": ClientKey("session_timeout_ms", _int),
        "heartbeat.interval.ms": ClientKey("heartbeat_interval_ms", _int),
        "auto.offset.reset": ClientKey("auto_offset_reset", _choice("earliest", "latest")),
    },
    "admin": {},
}


def to_kafka_python(raw: Mapping[str, str], table: Mapping[str, ClientKey]) -> dict[str, Any]:
    """kafka-python keyword arguments for settings already validated against ``table``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        spec = table[key]
        converted = spec.convert(value)
        if spec.python_name == "sasl_jaas_config":
            out["sasl_plain_username"] = converted["username"]
            out["sasl_plain_password"] = converted["password"]
        elif spec.python_name is not None:
            out[spec.python_name] = converted
    return out


# kafka-python arguments whose values are secrets.
SECRET_ARGUMENTS = frozenset({"sasl_plain_password", "ssl_password"})
HIDDEN = "[hidden]"


def hide_secrets(value: Any) -> Any:
    """A copy of ``value`` (kafka-python settings, or a tuple of log arguments) with secret values hidden."""
    if isinstance(value, Mapping):
        return {k: HIDDEN if k in SECRET_ARGUMENTS and v is not None else v for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(hide_secrets(v) if isinstance(v, Mapping) else v for v in value)
    return value


class HideSecretsFilter(logging.Filter):
    """Replaces secret values in a record's arguments (a copy: the arguments may be a client's live config)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = hide_secrets(record.args)
        return True


# Loggers known to log client configurations (found by reading kafka-python 3.0.12; see tests/kafka/test_secured).
for _name in ("kafka.admin.client",):
    logging.getLogger(_name).addFilter(HideSecretsFilter())
