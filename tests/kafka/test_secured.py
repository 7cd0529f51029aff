"""Secured clusters on real brokers (issue 6, part 3; scenario 24): SASL_SSL with SCRAM-SHA-512 and mutual TLS.

Both brokers are started the way ``smm local up`` starts them, from the clusters' own ``mm2.properties`` client
settings: certificates made for the run, the SCRAM user created at format time. Records are mirrored from the
plain session cluster A into the SASL_SSL cluster S, and from the mTLS cluster M into the plain cluster B, with
each producer backend; every log line of those runs is captured and searched for the secrets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import TopicPartition

from shared.kafka.clients import ClusterError, KafkaClients
from shared.local import broker, certs
from shared.mm2.config import MirrorConfig
from tests.kafka.support import make_config, run_flows

pytestmark = pytest.mark.kafka

# Characters that break naive quoting: the SCRAM format tool splits at commas, JAAS needs \" and \\.
PASSWORD = 'al1ce,pa55 "quoted" \\ w0rd'
KEY_PASSWORD = "mtls-key-pa55-7c1e"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
RECORDS = 40


def _jaas(username: str, password: str) -> str:
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'{SCRAM} required username="{username}" password="{quoted}";'


def _free_ports(count: int) -> list[int]:
    """Distinct free ports: every socket stays bound until all are known."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@dataclass(frozen=True)
class Secured:
    """Two running secured clusters: their bootstrap servers and the mm2.properties entries that reach them."""

    bootstrap: dict[str, str]
    settings: dict[str, str]
    state_dir: Path
    files: Path

    def config(self, clusters: dict[str, str], flows: dict[str, str], **extra: str) -> MirrorConfig:
        return make_config({**clusters, **self.bootstrap}, flows, **{**self.settings, **extra})


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, kafka_clusters: dict[str, str]) -> Iterator[Secured]:
    """S: SASL_SSL + SCRAM-SHA-512; M: SSL with client certificates; started by ``smm local up``'s code."""
    root = tmp_path_factory.mktemp("secured")
    files = root / "client"  # where mm2.properties points; nothing there yet: the start writes it
    sasl_port, mtls_port = _free_ports(2)
    settings = {
        "S.security.protocol": "SASL_SSL",
        "S.sasl.mechanism": "SCRAM-SHA-512",
        "S.sasl.jaas.config": _jaas("alice", PASSWORD),
        "S.ssl.truststore.type": "PEM",
        "S.ssl.truststore.location": str(files / "ca.pem"),
        "M.security.protocol": "SSL",
        "M.ssl.truststore.type": "PEM",
        "M.ssl.truststore.location": str(files / "ca.pem"),
        "M.ssl.keystore.type": "PEM",
        "M.ssl.keystore.location": str(files / "mirror-client.pem"),
        "M.ssl.key.password": KEY_PASSWORD,
    }
    found = Secured({"S": f"127.0.0.1:{sasl_port}", "M": f"127.0.0.1:{mtls_port}"}, settings, root / "state", files)
    local = found.config({}, {})
    try:
        started = broker.up(local, found.state_dir)
        assert [(b.alias, b.security.protocol, new) for b, new in started] == [
            ("S", "SASL_SSL", True),
            ("M", "SSL", True),
        ]
        yield found
    finally:
        broker.down(local, found.state_dir)


def _records_on(clients: KafkaClients, alias: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` on ``alias``, read with the cluster's own (secured) client settings."""
    info = clients.topic_info(alias, topic, refresh=True)
    if info is None:
        return []
    consumer = clients.consumer(alias, enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        tps = [TopicPartition(topic, p) for p in range(info.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [r.value or b"" for r in consumer]
    finally:
        consumer.close()


def _count(clients: KafkaClients, alias: str, topic: str) -> int:
    info = clients.topic_info(alias, topic, refresh=True)
    if info is None:
        return 0
    return sum(clients.latest_offsets(alias, [TopicPartition(topic, p) for p in range(info.partitions)]).values())


@contextlib.contextmanager
def _every_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every logger at DEBUG into caplog, including loggers that do not propagate; levels restored afterwards."""
    loggers = [logging.root] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    isolated = [logger for logger in loggers if not logger.propagate]
    caplog.set_level(logging.DEBUG)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in isolated:
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        for logger in isolated:
            logger.removeHandler(caplog.handler)
        for logger, level in levels:
            logger.setLevel(level)


def _key_lines(pem_file: Path) -> list[str]:
    """The base64 lines of every private key block in ``pem_file``: any one of them in a log is a leak."""
    lines: list[str] = []
    inside = False
    for line in pem_file.read_text(encoding="ascii").splitlines():
        if line.startswith("-----"):
            inside = line.startswith("-----BEGIN") and "PRIVATE KEY" in line
        elif inside:
            lines.append(line.strip())
    return lines


def _secrets(secured: Secured) -> list[str]:
    keys = [secured.files / "mirror-client.pem", secured.state_dir / "tls" / "ca-key.pem"]
    keys += list(secured.state_dir.glob("*/tls/broker-key.pem"))
    found = [PASSWORD, KEY_PASSWORD] + [line for key in keys for line in _key_lines(key)]
    assert len(keys) == 4 and len(found) > 10, f"expected 4 private keys, found {keys}"
    return found


def _written_forms(secret: str) -> set[str]:
    """The secret as text, and as Python's repr and JSON write it (a dict in a log line escapes \\ and ")."""
    return {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}


def _mirror_both_ways(cfg: MirrorConfig, clients: KafkaClients, prefix: str) -> tuple[list[bytes], list[bytes]]:
    """RECORDS records into A and into M, flows A->S and M->B until both landed; what S and B then hold."""
    into_sasl, out_of_mtls = f"{prefix}.a", f"{prefix}.m"
    for alias, topic in (("A", into_sasl), ("M", out_of_mtls)):
        clients.ensure_topic(alias, topic, 2, 1)
        producer = clients.producer(alias)
        for i in range(RECORDS):
            producer.send(topic, key=b"k%d" % i, value=f"{alias}-{i}".encode(), partition=i % 2)
        producer.flush()
    run_flows(
        cfg,
        until=lambda: (
            _count(clients, "S", f"A.{into_sasl}") >= RECORDS and _count(clients, "B", f"M.{out_of_mtls}") >= RECORDS
        ),
        timeout=90,
    )
    return _records_on(clients, "S", f"A.{into_sasl}"), _records_on(clients, "B", f"M.{out_of_mtls}")


def _flows(prefix: str) -> dict[str, str]:
    return {"A->S": re.escape(f"{prefix}.a"), "M->B": re.escape(f"{prefix}.m")}


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_mirrors_through_sasl_ssl_and_mtls_and_logs_no_secret(
    secured: Secured,
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    backend: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A -> S (SASL_SSL) and M (mTLS) -> B end to end; the password and key text appear in no output at all.

    ``capfd`` rather than ``capsys``: it also sees what librdkafka writes to the process's stderr.
    """
    cfg = secured.config(
        {"A": kafka_clusters["A"], "B": kafka_clusters["B"]},
        _flows(unique_prefix),
        **{"smm.producer.backend": backend, "emit.heartbeats.enabled": "false"},
    )
    clients = KafkaClients(cfg, client_id="test-secured")
    try:
        with _every_log_line(caplog):
            on_s, on_b = _mirror_both_ways(cfg, clients, unique_prefix)
    finally:
        clients.close()

    assert sorted(on_s) == sorted(f"A-{i}".encode() for i in range(RECORDS))
    assert sorted(on_b) == sorted(f"M-{i}".encode() for i in range(RECORDS))
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.getMessage()} {vars(r)!r}" for r in caplog.records)
    broker_logs = "\n".join(log.read_text(errors="replace") for log in secured.state_dir.glob("*/broker.log"))
    everything = "\n".join((caplog.text, records, out, err, broker_logs))
    leaked = [secret for secret in _secrets(secured) if any(form in everything for form in _written_forms(secret))]
    assert not leaked, f"{len(leaked)} secret(s) appear in the captured output"
    # Not vacuous: DEBUG lines of the Kafka clients were captured, and their configuration shows hidden values.
    assert "Starting KafkaAdminClient with configuration" in records and "[hidden]" in records


def test_wrong_credentials_fail_fast_naming_cluster_and_mechanism(secured: Secured, tmp_path: Path) -> None:
    """A wrong SCRAM password and a client certificate from another CA: each a ClusterError within seconds."""
    stranger = certs.issue(certs.authority(tmp_path / "other-ca"), "stranger", client_only=True)
    certs.write_private(tmp_path / "stranger.pem", stranger.key + stranger.chain)
    wrong = {
        "S": secured.config({}, {}, **{"S.sasl.jaas.config": _jaas("alice", "not-the-password")}),
        "M": secured.config({}, {}, **{"M.ssl.keystore.location": str(tmp_path / "stranger.pem")}),
    }
    outcome: dict[str, tuple[str, float]] = {}

    def attempt(alias: str) -> None:
        started = time.monotonic()
        clients = KafkaClients(wrong[alias])
        try:
            clients.admin(alias)
            outcome[alias] = ("connected", time.monotonic() - started)
        except ClusterError as exc:
            outcome[alias] = (str(exc), time.monotonic() - started)
        finally:
            clients.close()

    threads = [threading.Thread(target=attempt, args=(alias,)) for alias in wrong]  # both at once: half the wait
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    sasl_error, sasl_seconds = outcome["S"]
    assert "cluster 'S' at" in sasl_error and "SCRAM-SHA-512" in sasl_error, sasl_error
    assert "S.sasl.jaas.config" in sasl_error or "S.sasl.mechanism" in sasl_error, sasl_error
    mtls_error, mtls_seconds = outcome["M"]
    assert "cluster 'M' at" in mtls_error and "security.protocol=SSL" in mtls_error, mtls_error
    assert "refused the client certificate of mutual TLS" in mtls_error, mtls_error
    assert "M.ssl.keystore.location" in mtls_error
    assert sasl_seconds < 30 and mtls_seconds < 30, (sasl_seconds, mtls_seconds)
    assert "not-the-password" not in sasl_error


def _java_stores(secured: Secured, directory: Path) -> dict[str, str]:
    """The run's CA and client key as the stores a Java user has: a JKS and a PKCS12 trust store (``keytool``)
    and a PKCS12 key store; the mm2.properties entries that point to them instead of the PEM files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509 import load_pem_x509_certificates

    directory.mkdir(exist_ok=True)
    store_password = "st0re-pa55-8d2f"
    pem = (secured.files / "mirror-client.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=KEY_PASSWORD.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    chain = load_pem_x509_certificates(pem)
    (directory / "client.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"client",
            key,
            chain[0],
            chain[1:],
            serialization.BestAvailableEncryption(store_password.encode()),
        )
    )
    for kind, name in (("JKS", "trust.jks"), ("PKCS12", "trust.p12")):
        subprocess.run(
            [
                "keytool",
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                str(secured.files / "ca.pem"),
                "-keystore",
                str(directory / name),
                "-storetype",
                kind,
                "-storepass",
                store_password,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return {
        "S.ssl.truststore.location": str(directory / "trust.p12"),
        "S.ssl.truststore.type": "PKCS12",
        "S.ssl.truststore.password": store_password,
        "M.ssl.truststore.location": str(directory / "trust.jks"),
        "M.ssl.truststore.type": "JKS",
        "M.ssl.truststore.password": store_password,
        "M.ssl.keystore.location": str(directory / "client.p12"),
        "M.ssl.keystore.type": "PKCS12",
        "M.ssl.keystore.password": store_password,
    }


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_java_trust_and_key_stores_reach_both_secured_clusters(
    secured: Secured, kafka_clusters: dict[str, str], unique_prefix: str, backend: str, tmp_path: Path
) -> None:
    """JKS and PKCS12 stores, as MM2 users name them, on the SASL_SSL and the mTLS cluster, with each backend."""
    stores = _java_stores(secured, tmp_path / "stores")
    settings = {k: v for k, v in secured.settings.items() if k != "M.ssl.key.password"}  # the PEM key's
    cfg = make_config(
        {"A": kafka_clusters["A"], "B": kafka_clusters["B"], **secured.bootstrap},
        _flows(unique_prefix),
        **{**settings, "smm.producer.backend": backend, "emit.heartbeats.enabled": "false", **stores},
    )
    clients = KafkaClients(cfg, client_id="test-java-stores")
    try:
        on_s, on_b = _mirror_both_ways(cfg, clients, unique_prefix)
    finally:
        clients.close()
    assert sorted(on_s) == sorted(f"A-{i}".encode() for i in range(RECORDS))
    assert sorted(on_b) == sorted(f"M-{i}".encode() for i in range(RECORDS))
