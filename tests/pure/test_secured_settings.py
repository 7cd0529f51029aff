"""Secured-cluster settings without brokers: local listeners, TLS files, librdkafka mapping, hidden secrets.

The broker side runs in ``tests/kafka/test_secured.py``; these check the pieces it is built from, fast.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import shutil
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from shared.kafka import settings as client_settings
from shared.kafka.clients import ClusterAuthenticationError, ClusterError, _connect
from shared.local import certs
from shared.local.broker import BrokerError, ListenerSecurity, LocalBroker, brokers_for
from shared.mm2 import config
from shared.mm2.client_settings import CONNECTION_TABLE, HIDDEN, ROLE_KEYS, HideSecretsFilter
from shared.mm2.config import ClusterConfig, MirrorConfig

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
PASSWORD = 'pa55,word "x" \\ y'
KEY_PASSWORD = "key-pa55"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


def _config(files: Path, **extra: str) -> MirrorConfig:
    return config.parse(
        {
            "clusters": "S, M",
            "S.bootstrap.servers": "127.0.0.1:19092",
            "S.security.protocol": "SASL_SSL",
            "S.sasl.mechanism": "SCRAM-SHA-512",
            "S.sasl.jaas.config": f'{SCRAM} required username="alice" password="pa55,word \\"x\\" \\\\ y";',
            "S.ssl.truststore.location": str(files / "ca.pem"),
            "M.bootstrap.servers": "localhost:19093",
            "M.security.protocol": "SSL",
            "M.ssl.truststore.location": str(files / "ca.pem"),
            "M.ssl.keystore.location": str(files / "client.pem"),
            "M.ssl.key.password": KEY_PASSWORD,
            **extra,
        }
    )


def _brokers(tmp_path: Path, **extra: str) -> dict[str, LocalBroker]:
    return {b.alias: b for b in brokers_for(_config(tmp_path / "files", **extra), tmp_path / "state")}


def test_listener_security_follows_the_client_settings(tmp_path: Path) -> None:
    brokers = _brokers(tmp_path)
    sasl, mtls = brokers["S"].security, brokers["M"].security
    assert (sasl.protocol, sasl.mechanism, sasl.username, sasl.password) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "alice",
        PASSWORD,
    )
    assert sasl.tls and sasl.sasl and sasl.keystore is None
    assert (mtls.protocol, mtls.keystore, mtls.key_password) == ("SSL", tmp_path / "files" / "client.pem", KEY_PASSWORD)
    assert mtls.cluster is not None and mtls.cluster.role_settings("admin")["ssl.keystore.location"] == str(
        tmp_path / "files" / "client.pem"
    )
    assert PASSWORD not in repr(sasl) and KEY_PASSWORD not in repr(mtls) and "cluster=" not in repr(mtls)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"S.ssl.truststore.location": ""}, r"S\.ssl\.truststore\.location: missing; a local SASL_SSL cluster writes"),
        ({"S.sasl.mechanism": "PLAIN"}, r"S\.sasl\.mechanism = PLAIN: a local broker can check SCRAM-SHA-256 and"),
        (
            {"S.sasl.jaas.config": f'{SCRAM} required username="a,b" password="p";'},
            r"S\.sasl\.jaas\.config: a local SCRAM user name cannot contain ','",
        ),
    ],
    ids=["no-truststore", "plain-mechanism", "comma-in-user-name"],
)
def test_what_a_local_secured_broker_cannot_do_is_refused_naming_the_key(
    tmp_path: Path, extra: dict[str, str], error: str
) -> None:
    with pytest.raises(BrokerError, match=error):
        _brokers(tmp_path, **extra)


def test_scram_user_is_created_from_a_salted_password() -> None:
    """The format tool gets what Kafka stores, PBKDF2 of the password: commas in it cannot split the argument."""
    broker = LocalBroker(
        "S", 1, Path("/nonexistent"), security=ListenerSecurity("S", "SASL_SSL", "SCRAM-SHA-512", "alice", PASSWORD)
    )
    argument = broker._scram_argument()
    match = re.fullmatch(r"SCRAM-SHA-512=\[name=alice,salt=(\S+),saltedpassword=(\S+),iterations=4096\]", argument)
    assert match is not None and PASSWORD not in argument
    salt, salted = (base64.b64decode(g) for g in match.groups())
    assert salted == hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(), salt, 4096)


@needs_openssl
def test_tls_files_are_written_where_the_config_names_them(tmp_path: Path) -> None:
    brokers = _brokers(tmp_path)
    for broker in brokers.values():
        broker._prepare_tls()
    files, state = tmp_path / "files", tmp_path / "state"
    assert (files / "ca.pem").read_text() == (state / "tls" / "ca.pem").read_text()  # one CA for the state dir
    assert certs.Authority(state / "tls" / "ca.pem", state / "tls" / "ca-key.pem").issued(files / "client.pem")
    for private in (files / "client.pem", state / "tls" / "ca-key.pem", state / "M-19093" / "tls" / "broker-key.pem"):
        assert private.stat().st_mode & 0o077 == 0, private
    # The client key is encrypted with ssl.key.password, and Python's TLS (kafka-python's) loads it with it.
    assert "BEGIN ENCRYPTED PRIVATE KEY" in (files / "client.pem").read_text()
    ssl.create_default_context(cafile=str(files / "ca.pem")).load_cert_chain(
        files / "client.pem", password=KEY_PASSWORD
    )
    properties = brokers["S"]._server_properties(19999)
    assert "listeners=SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19999" in properties
    assert "ssl.keystore.type=PEM" in properties and "sasl.enabled.mechanisms=SCRAM-SHA-512" in properties
    assert "ssl.client.auth=required" in brokers["M"]._server_properties(19998)


@needs_openssl
def test_a_truststore_from_another_ca_is_refused_naming_the_key_and_the_fix(tmp_path: Path) -> None:
    stranger = certs.authority(tmp_path / "other")
    (tmp_path / "files").mkdir()
    shutil.copy(stranger.cert, tmp_path / "files" / "ca.pem")
    broker = _brokers(tmp_path)["S"]
    with pytest.raises(
        BrokerError, match=r"S\.ssl\.truststore\.location = .*ca\.pem does not hold the local CA .*delete"
    ):
        broker._prepare_tls()


# --- librdkafka (smm.producer.backend = confluent-kafka) -------------------------------------------------


def _sample(key: str, files: Path) -> str:
    """A valid value for each client key the config accepts; a key without one fails the test below."""
    samples = {
        "security.protocol": "SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": f'{SCRAM} required username="u" password="p";',
        "ssl.truststore.location": str(files / "ca.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.password": "unused",
        "ssl.keystore.location": str(files / "client.pem"),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.password": KEY_PASSWORD,
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "",
        "client.id": "smm-test",
        "compression.type": "gzip",
        "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "ssl.protocol": "TLSv1.2",
        "ssl.cipher.suites": "ECDHE-RSA-AES128-GCM-SHA256",
        "ssl.truststore.certificates": (files / "ca.pem").read_text(),
        "ssl.keystore.key": (files / "client-key.pem").read_text(),
        "ssl.keystore.certificate.chain": (files / "client-chain.pem").read_text(),
        "client.dns.lookup": "use_all_dns_ips",
        "max.in.flight.requests.per.connection": "5",
    }
    return samples.get(key, "1000")


@pytest.fixture(scope="module")
def client_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    files = tmp_path_factory.mktemp("librdkafka")
    ca = certs.authority(files)
    client = certs.issue(ca, "client", client_only=True, key_password=KEY_PASSWORD)
    certs.write_private(files / "client.pem", client.key + client.chain)
    certs.write_private(files / "client-key.pem", client.key)
    certs.write_private(files / "client-chain.pem", client.chain)
    return files


def _cluster(**java: str) -> ClusterConfig:
    connection = {k: v for k, v in java.items() if k in CONNECTION_TABLE}
    role = {k: v for k, v in java.items() if k not in CONNECTION_TABLE}
    return ClusterConfig("P", ("127.0.0.1:1",), connection, {"producer": role})


@pytest.mark.parametrize(
    "key", sorted({*CONNECTION_TABLE, *ROLE_KEYS["producer"]} - {"sasl.client.callback.handler.class"})
)
def test_every_producer_setting_is_one_librdkafka_accepts(key: str, client_files: Path) -> None:
    """Each key alone, through the mapping, into a real librdkafka producer (which checks names and values)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    settings = {key: _sample(key, client_files)}
    if key in ("ssl.keystore.key", "ssl.keystore.certificate.chain"):  # inline PEM: both, and the key's password
        settings |= {k: _sample(k, client_files) for k in ("ssl.keystore.key", "ssl.keystore.certificate.chain")}
        settings["ssl.key.password"] = KEY_PASSWORD
    elif key.startswith("ssl.keystore") or key == "ssl.key.password":  # a keystore needs its location and password
        settings |= {k: _sample(k, client_files) for k in ("ssl.keystore.location", "ssl.key.password")}
    if key.startswith(("ssl.", "sasl.")):
        settings.setdefault("security.protocol", "SASL_SSL" if key.startswith("sasl.") else "SSL")
    if key in ("sasl.jaas.config", "sasl.mechanism"):
        settings |= {k: _sample(k, client_files) for k in ("sasl.jaas.config", "sasl.mechanism")}
    config = client_settings.librdkafka(_cluster(**settings), "producer", {})
    producer = confluent_kafka.Producer({**config, "log_level": 0})
    producer.flush(0)


def test_pem_keystore_and_credentials_map_to_librdkafka_names(client_files: Path) -> None:
    cluster = _cluster(
        **{
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": f'{SCRAM} required username="alice" password="s3cret";',
            "ssl.keystore.location": str(client_files / "client.pem"),
            "ssl.key.password": KEY_PASSWORD,
            "buffer.memory": "33554432",
        }
    )
    mapped = client_settings.librdkafka(cluster, "producer", {})
    assert "BEGIN PRIVATE KEY" in mapped["ssl.key.pem"] and "BEGIN CERTIFICATE" in mapped["ssl.certificate.pem"]
    assert not any(k.startswith("ssl.keystore") or k == "ssl.key.password" for k in mapped)  # decrypted in memory
    assert (mapped["sasl.username"], mapped["sasl.password"]) == ("alice", "s3cret")
    assert "sasl.jaas.config" not in mapped
    assert mapped["queue.buffering.max.kbytes"] == 32768 and "buffer.memory" not in mapped


# --- secrets stay out of logs and error messages -------------------------------------------------------


def test_client_configuration_logged_by_kafka_python_shows_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    settings: dict[str, Any] = {"sasl_plain_username": "alice", "sasl_plain_password": "s3cret", "ssl_password": "k"}
    logger = logging.getLogger("kafka.admin.client")
    assert any(isinstance(f, HideSecretsFilter) for f in logger.filters)
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        logger.debug("Starting KafkaAdminClient with configuration: %s", settings)
    assert caplog.messages == [
        f"Starting KafkaAdminClient with configuration: {{'sasl_plain_username': 'alice', "
        f"'sasl_plain_password': '{HIDDEN}', 'ssl_password': '{HIDDEN}'}}"
    ]
    assert settings["sasl_plain_password"] == "s3cret"  # the client's own config is left alone


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _failing_client(logged: BaseException | None) -> Any:
    """A stand-in for a kafka-python client class: its IO thread logs ``logged``, then bootstrap times out."""

    def factory(**settings: Any) -> None:
        if logged is not None:
            thread = threading.Thread(
                target=logging.getLogger("kafka.net.manager").warning,
                args=("Bootstrap connection to %s failed: %s", "bootstrap-0", logged),
                name=f"kafka-io-{settings['client_id']}",
            )
            thread.start()
            thread.join()
        raise KafkaTimeoutError("Unable to bootstrap")

    return factory


@pytest.mark.parametrize(
    ("settings", "logged", "expected"),
    [
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_password": "s3cret"},
            SaslAuthenticationFailedError("invalid credentials with SASL mechanism SCRAM-SHA-512"),
            "cannot log in to cluster 'S' at {servers} (security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512): "
            "the broker refused the SCRAM-SHA-512 credentials",
        ),
        (
            {"security_protocol": "SSL", "ssl_certfile": "/k.pem"},
            ConnectionError("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"),
            "the broker refused the client certificate of mutual TLS",
        ),
        (
            {"security_protocol": "SSL"},
            ConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "the broker's certificate is not trusted",
        ),
        ({}, None, "cluster 'S' at {servers} (security.protocol=PLAINTEXT) is unreachable (no answer)"),
    ],
    ids=["scram", "client-certificate", "server-certificate", "unreachable"],
)
def test_failed_connections_say_which_cluster_how_and_why(
    settings: dict[str, Any], logged: BaseException | None, expected: str
) -> None:
    servers = f"127.0.0.1:{_closed_port()}"
    all_settings = {"bootstrap_servers": [servers], "client_id": f"test-{id(settings)}", **settings}
    with pytest.raises(ClusterError) as raised:
        _connect("S", _failing_client(logged), all_settings)
    assert expected.format(servers=servers) in str(raised.value)
    assert "s3cret" not in str(raised.value)
    # Refused credentials or certificates are final; an unreachable cluster may come up later.
    assert isinstance(raised.value, ClusterAuthenticationError) == (logged is not None)
