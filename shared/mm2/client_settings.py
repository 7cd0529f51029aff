"""Kafka client settings of ``mm2.properties`` (Java names): which MM2 gives each client, and what each means here.

MM2 hands every client of a cluster the cluster's *connection* settings (``bootstrap.servers``,
``security.protocol``, ``ssl.*``, ``sasl.*``: ``MirrorClientConfig.CLIENT_CONFIG_DEF``), from ``A.<key>`` or else the
top-level ``<key>``, and on top of them the role's own ``A.producer.*``, ``A.consumer.*``, ``A.admin.*``. Any other
``A.<key>`` reaches no client. This module knows which Java keys the two client libraries here can honour
(kafka-python everywhere, librdkafka for the data path's ``confluent-kafka`` backend), turns them into each
library's terms, and says what happens to the rest: a key neither library has is reported and left out, unless
leaving it out would weaken security, which is an error.

The passwords these settings carry must not reach a log: kafka-python's admin client logs its whole
configuration at DEBUG, so importing this module puts a filter on that logger which hides them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.mm2.configdef import InvalidValue, parse_list, parse_number, trim
from shared.mm2.providers import REFERENCE

ROLES = ("producer", "consumer", "admin")
KAFKA_PYTHON = "kafka-python"
LIBRDKAFKA = "librdkafka"

# MirrorClientConfig.CLIENT_CONFIG_DEF of MM2 4.3.1: the keys a cluster's every client inherits.
CONNECTION_KEYS = frozenset(
    {
        "bootstrap.servers",
        "security.protocol",
        *(
            f"ssl.{k}"
            for k in [
                "cipher.suites",
                "enabled.protocols",
                "endpoint.identification.algorithm",
                "engine.factory.class",
                "key.password",
                "keymanager.algorithm",
                "keystore.certificate.chain",
                "keystore.key",
                "keystore.location",
                "keystore.password",
                "keystore.type",
                "protocol",
                "provider",
                "secure.random.implementation",
                "trustmanager.algorithm",
                "truststore.certificates",
                "truststore.location",
                "truststore.password",
                "truststore.type",
            ]
        ),
        *(
            f"sasl.{k}"
            for k in [
                "client.callback.handler.class",
                "jaas.config",
                "kerberos.kinit.cmd",
                "kerberos.min.time.before.relogin",
                "kerberos.service.name",
                "kerberos.ticket.renew.jitter",
                "kerberos.ticket.renew.window.factor",
                "login.callback.handler.class",
                "login.class",
                "login.connect.timeout.ms",
                "login.read.timeout.ms",
                "login.refresh.buffer.seconds",
                "login.refresh.min.period.seconds",
                "login.refresh.window.factor",
                "login.refresh.window.jitter",
                "login.retry.backoff.max.ms",
                "login.retry.backoff.ms",
                "mechanism",
                "oauthbearer.assertion.algorithm",
                "oauthbearer.assertion.claim.aud",
                "oauthbearer.assertion.claim.exp.seconds",
                "oauthbearer.assertion.claim.iss",
                "oauthbearer.assertion.claim.jti.include",
                "oauthbearer.assertion.claim.nbf.seconds",
                "oauthbearer.assertion.claim.sub",
                "oauthbearer.assertion.file",
                "oauthbearer.assertion.private.key.file",
                "oauthbearer.assertion.private.key.passphrase",
                "oauthbearer.assertion.template.file",
                "oauthbearer.client.credentials.client.id",
                "oauthbearer.client.credentials.client.secret",
                "oauthbearer.clock.skew.seconds",
                "oauthbearer.expected.audience",
                "oauthbearer.expected.issuer",
                "oauthbearer.header.urlencode",
                "oauthbearer.jwks.endpoint.refresh.ms",
                "oauthbearer.jwks.endpoint.retry.backoff.max.ms",
                "oauthbearer.jwks.endpoint.retry.backoff.ms",
                "oauthbearer.jwks.endpoint.url",
                "oauthbearer.jwt.retriever.class",
                "oauthbearer.jwt.validator.class",
                "oauthbearer.scope",
                "oauthbearer.scope.claim.name",
                "oauthbearer.sub.claim.name",
                "oauthbearer.token.endpoint.url",
            ]
        ),
    }
)

MSK_IAM_LOGIN_MODULE = "software.amazon.msk.auth.iam.IAMLoginModule"
MSK_IAM_CALLBACK_HANDLER = "software.amazon.msk.auth.iam.IAMClientCallbackHandler"
PASSWORD_LOGIN_MODULES = (
    "org.apache.kafka.common.security.plain.PlainLoginModule",
    "org.apache.kafka.common.security.scram.ScramLoginModule",
)
STORE_TYPES = ("PEM", "JKS", "PKCS12")


class SettingError(ValueError):
    """A client setting whose value cannot be used; the message says what is allowed."""


def _int(value: str) -> int:
    try:
        return parse_number(value, "INT")
    except InvalidValue:
        raise SettingError("must be a whole number") from None


def _choice(*allowed: str, case_insensitive: bool = False) -> Callable[[str], str]:
    def convert(value: str) -> str:
        v = trim(value)
        for a in allowed:
            if v == a or (case_insensitive and v.upper() == a.upper()):
                return a
        raise SettingError(f"must be one of {', '.join(allowed)}")

    return convert


def _text(value: str) -> str:
    return trim(value)


def _endpoint_check(value: str) -> bool:
    v = trim(value).lower()
    if v not in ("", "https"):
        raise SettingError("must be https or empty")
    return v == "https"


def _compression(value: str) -> str | None:
    v = _choice("none", "gzip", "snappy", "lz4", "zstd")(value)
    return None if v == "none" else v


def _range(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        number = _int(value)
        if not low <= number <= high:
            raise SettingError(f"must be between {low} and {high}")
        return number

    return convert


def _tls_protocols(value: str) -> tuple[str, ...]:
    allowed = ("TLSv1.2", "TLSv1.3")
    items = tuple(parse_list(value))
    bad = [p for p in items if p not in allowed]
    if bad or not items:
        raise SettingError(f"allowed: {', '.join(allowed)} (TLS 1.0 and 1.1 are not offered here)")
    return items


# --- sasl.jaas.config ----------------------------------------------------------------------------------------

_JAAS_HEAD = re.compile(r"^\s*([\w.$]+)\s+(required|requisite|sufficient|optional)\b", re.IGNORECASE)
_JAAS_OPTION = re.compile(r"""(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([^\s;"']+))""")
_BACKSLASH_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Jaas:
    """A ``sasl.jaas.config``: its login module and options, quoted the way Kafka reads them."""

    module: str
    options: Mapping[str, str]


def parse_jaas_config(value: str) -> Jaas:
    head = _JAAS_HEAD.match(value)
    if head is None:
        raise SettingError('must look like: <LoginModule class> required username="..." password="...";')
    options = {
        name: _BACKSLASH_ESCAPE.sub(r"\1", double or single or bare)
        for name, double, single, bare in _JAAS_OPTION.findall(value[head.end() :])
    }
    return Jaas(head.group(1), options)


def parse_jaas(value: str) -> dict[str, str]:
    """Options of a PlainLoginModule or ScramLoginModule ``sasl.jaas.config``: username and password required."""
    jaas = parse_jaas_config(value)
    missing = [k for k in ("username", "password") if k not in jaas.options]
    if missing:
        raise SettingError(f"lacks {' and '.join(missing)}")
    return dict(jaas.options)


def _jaas(value: str) -> Jaas:
    jaas = parse_jaas_config(value)
    if jaas.module == MSK_IAM_LOGIN_MODULE:
        return jaas
    if jaas.module not in PASSWORD_LOGIN_MODULES:
        allowed = ", ".join((*PASSWORD_LOGIN_MODULES, MSK_IAM_LOGIN_MODULE))
        raise SettingError(f"login module {jaas.module} is not supported here; allowed: {allowed}")
    parse_jaas(value)
    return jaas


# --- the key table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKey:
    """One Java client key: its kafka-python argument, its librdkafka property and how its value is read.

    ``python_name``/``librdkafka_name`` None: that library has no such setting. ``handled``: turned into each
    library's terms by ``ClientSettings`` (TLS stores, credentials) rather than passed on by name.
    """

    python_name: str | None
    convert: Callable[[str], Any]
    librdkafka_name: str | None = None
    handled: bool = False
    security: bool = False


def _same(java: str, python: str, convert: Callable[[str], Any] = _int) -> ClientKey:
    return ClientKey(python, convert, java)


CONNECTION_TABLE: dict[str, ClientKey] = {
    "security.protocol": ClientKey(
        "security_protocol",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", case_insensitive=True),
        "security.protocol",
        security=True,
    ),
    "sasl.mechanism": ClientKey(
        "sasl_mechanism",
        _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"),
        handled=True,
        security=True,
    ),
    "sasl.jaas.config": ClientKey(None, _jaas, handled=True, security=True),
    "sasl.client.callback.handler.class": ClientKey(None, _choice(MSK_IAM_CALLBACK_HANDLER), handled=True),
    "ssl.truststore.location": ClientKey(None, _text, handled=True, security=True),
    "ssl.truststore.type": ClientKey(None, _choice(*STORE_TYPES, case_insensitive=True), handled=True, security=True),
    "ssl.truststore.password": ClientKey(None, _text, handled=True),
    "ssl.truststore.certificates": ClientKey(None, _text, handled=True, security=True),
    "ssl.keystore.location": ClientKey(None, _text, handled=True, security=True),
    "ssl.keystore.type": ClientKey(None, _choice(*STORE_TYPES, case_insensitive=True), handled=True, security=True),
    "ssl.keystore.password": ClientKey(None, _text, handled=True),
    "ssl.keystore.key": ClientKey(None, _text, handled=True, security=True),
    "ssl.keystore.certificate.chain": ClientKey(None, _text, handled=True, security=True),
    "ssl.key.password": ClientKey(None, _text, handled=True),
    "ssl.endpoint.identification.algorithm": ClientKey(
        "ssl_check_hostname", _endpoint_check, handled=True, security=True
    ),
    "ssl.enabled.protocols": ClientKey(None, _tls_protocols, handled=True, security=True),
    "ssl.protocol": ClientKey(None, _choice("TLSv1.2", "TLSv1.3", "TLS"), handled=True, security=True),
    "ssl.cipher.suites": ClientKey("ssl_ciphers", lambda v: ":".join(parse_list(v)), "ssl.cipher.suites"),
}

_COMMON_ROLE_KEYS: dict[str, ClientKey] = {
    "client.id": _same("client.id", "client_id", _text),
    "request.timeout.ms": _same("request.timeout.ms", "request_timeout_ms"),
    "metadata.max.age.ms": _same("metadata.max.age.ms", "metadata_max_age_ms"),
    "connections.max.idle.ms": _same("connections.max.idle.ms", "connections_max_idle_ms"),
    "reconnect.backoff.ms": _same("reconnect.backoff.ms", "reconnect_backoff_ms"),
    "reconnect.backoff.max.ms": _same("reconnect.backoff.max.ms", "reconnect_backoff_max_ms"),
    "retry.backoff.ms": _same("retry.backoff.ms", "retry_backoff_ms"),
    "send.buffer.bytes": _same("socket.send.buffer.bytes", "send_buffer_bytes"),
    "receive.buffer.bytes": _same("socket.receive.buffer.bytes", "receive_buffer_bytes"),
    "client.dns.lookup": ClientKey(None, _text, "client.dns.lookup"),
}

ROLE_KEYS: dict[str, dict[str, ClientKey]] = {
    "producer": {
        **_COMMON_ROLE_KEYS,
        "linger.ms": _same("linger.ms", "linger_ms"),
        "batch.size": _same("batch.size", "batch_size"),
        "compression.type": ClientKey("compression_type", _compression, "compression.type"),
        "max.request.size": _same("message.max.bytes", "max_request_size"),
        "buffer.memory": ClientKey("buffer_memory", _int, handled=True),
        "delivery.timeout.ms": _same("delivery.timeout.ms", "delivery_timeout_ms"),
        "max.in.flight.requests.per.connection": ClientKey(
            "max_in_flight_requests_per_connection", _range(1, 5), "max.in.flight.requests.per.connection"
        ),
        "max.block.ms": ClientKey("max_block_ms", _int),
    },
    "consumer": {
        **_COMMON_ROLE_KEYS,
        "max.poll.records": ClientKey("max_poll_records", _int),
        "fetch.min.bytes": _same("fetch.min.bytes", "fetch_min_bytes"),
        "fetch.max.wait.ms": _same("fetch.wait.max.ms", "fetch_max_wait_ms"),
        "fetch.max.bytes": _same("fetch.max.bytes", "fetch_max_bytes"),
        "max.partition.fetch.bytes": _same("max.partition.fetch.bytes", "max_partition_fetch_bytes"),
        "isolation.level": ClientKey(
            "isolation_level", _choice("read_uncommitted", "read_committed"), "isolation.level"
        ),
        "session.timeout.ms": _same("session.timeout.ms", "session_timeout_ms"),
        "heartbeat.interval.ms": _same("heartbeat.interval.ms", "heartbeat_interval_ms"),
        "max.poll.interval.ms": _same("max.poll.interval.ms", "max_poll_interval_ms"),
        "auto.offset.reset": ClientKey("auto_offset_reset", _choice("earliest", "latest"), "auto.offset.reset"),
        "check.crcs": ClientKey("check_crcs", lambda v: _choice("true", "false")(v) == "true", "check.crcs"),
        "client.rack": _same("client.rack", "client_rack", _text),
    },
    "admin": {
        **_COMMON_ROLE_KEYS,
        "default.api.timeout.ms": ClientKey(None, _int),
    },
}

# Keys whose value MM2 fixes for its own clients, or that only the Java client has, in a role map: accepted,
# never passed on. (MM2 forces enable.auto.commit=false and ByteArray (de)serializers itself.)
IGNORED_ROLE_KEYS = frozenset(
    {
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "group.id",
        "group.instance.id",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
        "partitioner.class",
        "interceptor.classes",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.sample.window.ms",
        "metrics.recording.level",
        "retries",
        "transactional.id",
        "transaction.timeout.ms",
        "partition.assignment.strategy",
        "allow.auto.create.topics",
        "exclude.internal.topics",
        "auto.include.jmx.reporter",
    }
)


def table(role: str) -> Mapping[str, ClientKey]:
    return {**CONNECTION_TABLE, **ROLE_KEYS[role]}


@dataclass(frozen=True)
class Store:
    """A trust store or key store as a client key names it: a file (PEM, JKS or PKCS12) or inline PEM text."""

    location: str | None
    type: str | None  # None: not named; read from the file's first bytes (PEM text, JKS magic, else PKCS12)
    password: str | None = None
    pem: str | None = None


@dataclass(frozen=True)
class MskIam:
    """MSK IAM authentication (``AWS_MSK_IAM`` with ``IAMLoginModule``) and the login module's options."""

    profile: str | None = None
    role_arn: str | None = None
    session_name: str | None = None
    sts_region: str | None = None


@dataclass(frozen=True)
class ClientSettings:
    """Everything one client (a cluster's producer, consumer or admin) is configured with, read from Java keys.

    ``kafka_python`` holds the kwargs that map one to one; the TLS stores, the credentials and MSK IAM are
    turned into each library's terms by ``shared.kafka`` (stores may need converting, IAM needs a token).
    """

    java: Mapping[str, str]
    kafka_python: Mapping[str, Any] = field(default_factory=dict)
    librdkafka: Mapping[str, Any] = field(default_factory=dict)
    truststore: Store | None = None
    keystore: Store | None = None
    key_password: str | None = None
    username: str | None = None
    password: str | None = None
    iam: MskIam | None = None
    check_hostname: bool = True
    tls_versions: tuple[str, ...] = ()
    buffer_memory: int | None = None

    @property
    def protocol(self) -> str:
        return str(self.kafka_python.get("security_protocol", "PLAINTEXT"))

    @property
    def mechanism(self) -> str | None:
        return self.java.get("sasl.mechanism")


def read(java: Mapping[str, str], role: str) -> ClientSettings:
    """The settings of a ``role`` client from its Java keys (already checked by ``check``)."""
    keys = table(role)
    kafka_python: dict[str, Any] = {}
    librdkafka: dict[str, Any] = {}
    values: dict[str, str] = {}
    for key, raw in java.items():
        spec = keys.get(key)
        if spec is None or REFERENCE.search(raw):  # a reference resolved only where the functions run
            continue
        converted = spec.convert(raw)
        values[key] = trim(raw)
        if spec.handled:
            continue
        if spec.python_name is not None:
            kafka_python[spec.python_name] = converted
        if spec.librdkafka_name is not None:
            librdkafka[spec.librdkafka_name] = converted
    settings = ClientSettings(values, kafka_python, librdkafka)
    return _with_handled(settings, values)


def _with_handled(settings: ClientSettings, values: Mapping[str, str]) -> ClientSettings:
    changes: dict[str, Any] = {}
    mechanism = values.get("sasl.mechanism")
    jaas_text = values.get("sasl.jaas.config")
    if mechanism:
        changes["kafka_python"] = {**settings.kafka_python, "sasl_mechanism": mechanism}
    if jaas_text is not None:
        jaas = parse_jaas_config(jaas_text)
        if jaas.module == MSK_IAM_LOGIN_MODULE:
            o = jaas.options
            changes["iam"] = MskIam(
                o.get("awsProfileName"), o.get("awsRoleArn"), o.get("awsRoleSessionName"), o.get("awsStsRegion")
            )
        else:
            changes["username"] = jaas.options.get("username")
            changes["password"] = jaas.options.get("password")
    elif mechanism == "AWS_MSK_IAM":
        changes["iam"] = MskIam()
    if "ssl.truststore.location" in values or "ssl.truststore.certificates" in values:
        changes["truststore"] = Store(
            values.get("ssl.truststore.location"),
            "PEM" if "ssl.truststore.certificates" in values else _store_type(values.get("ssl.truststore.type")),
            values.get("ssl.truststore.password") or None,
            values.get("ssl.truststore.certificates"),
        )
    if "ssl.keystore.location" in values or "ssl.keystore.key" in values:
        pem = None
        if "ssl.keystore.key" in values:
            pem = f"{values['ssl.keystore.key'].strip()}\n{values.get('ssl.keystore.certificate.chain', '').strip()}\n"
        changes["keystore"] = Store(
            values.get("ssl.keystore.location"),
            "PEM" if pem else _store_type(values.get("ssl.keystore.type")),
            values.get("ssl.keystore.password") or None,
            pem,
        )
    changes["key_password"] = values.get("ssl.key.password") or None
    if "ssl.endpoint.identification.algorithm" in values:
        changes["check_hostname"] = _endpoint_check(values["ssl.endpoint.identification.algorithm"])
    if "ssl.enabled.protocols" in values:
        changes["tls_versions"] = _tls_protocols(values["ssl.enabled.protocols"])
    elif values.get("ssl.protocol") in ("TLSv1.2", "TLSv1.3"):
        changes["tls_versions"] = ("TLSv1.3",) if values["ssl.protocol"] == "TLSv1.3" else ("TLSv1.2", "TLSv1.3")
    if "buffer.memory" in values:
        changes["buffer_memory"] = _int(values["buffer.memory"])
    return dataclasses.replace(settings, **changes)


def _store_type(value: str | None) -> str | None:
    """The store type a key names; None when unset (Java's default is JKS: the file's content decides here)."""
    return None if value is None else _choice(*STORE_TYPES, case_insensitive=True)(value)


@dataclass(frozen=True)
class Verdict:
    """What becomes of one client key: used, or reported (a warning, or an error when security would suffer)."""

    error: str | None = None
    warning: str | None = None


def check(key: str, value: str, role: str | None) -> Verdict:
    """Is ``key = value`` usable by a ``role`` client (None: a cluster's connection key, for every role)?"""
    keys: Mapping[str, ClientKey] = CONNECTION_TABLE if role is None else table(role)
    spec = keys.get(key)
    if spec is None:
        if role == "producer" and key in ("acks", "enable.idempotence"):
            return Verdict(warning="the data path always writes with acks=all and idempotence on; ignored")
        if role is not None and key in IGNORED_ROLE_KEYS:
            return Verdict(warning="MM2 sets this itself or only the Java client has it; not used here")
        if key.startswith(("ssl.", "sasl.")) or key == "security.protocol":
            return Verdict(
                error="not supported by the client libraries here, and leaving it out could weaken security; "
                f"supported: {', '.join(sorted(k for k in CONNECTION_TABLE))}"
            )
        return Verdict(warning=f"no {KAFKA_PYTHON} or {LIBRDKAFKA} equivalent here; the library's default is used")
    try:
        spec.convert(value)
    except SettingError as exc:
        return Verdict(error=str(exc))
    if not spec.handled and spec.librdkafka_name is None and role == "producer":
        return Verdict(
            warning=f"{LIBRDKAFKA} (smm.producer.backend = confluent-kafka) has no equivalent; ignored there"
        )
    return Verdict()


def hidden(key: str) -> bool:
    """Whether a key's value is a secret that must not appear in a message."""
    return "password" in key or "jaas" in key or key.endswith((".key", "client.secret", "passphrase"))


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
