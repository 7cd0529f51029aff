"""LocalBroker against real Kafka: lifecycle, data kept across restarts, and ``smm local up/down``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from shared.local.broker import BrokerError, LocalBroker, brokers_for, down, up
from shared.mm2.config import MirrorConfig, parse

pytestmark = pytest.mark.kafka

TOPIC = "smm-broker-test"


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is known."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ensure_stopped(broker: LocalBroker) -> None:
    """Teardown that never leaves a JVM behind, even when a clean stop fails."""
    try:
        broker.stop(timeout=15)
    finally:
        broker.kill()


def create_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=15000)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()


def list_topics(bootstrap: str) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=15000)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    (port,) = free_ports(1)
    local = LocalBroker("T", port, tmp_path)
    try:
        yield local
    finally:
        ensure_stopped(local)


def test_start_is_idempotent_and_serves_clients(broker: LocalBroker) -> None:
    assert not broker.is_running()
    assert broker.start() is True
    assert broker.start() is False
    assert broker.is_running()
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"

    create_topic(broker.bootstrap, TOPIC)
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap])
    try:
        producer.send(TOPIC, key=b"k", value=b"hello").get(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=[broker.bootstrap], enable_auto_commit=False)
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        for _ in range(30):
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
            if values:
                break
    finally:
        consumer.close()
    assert values == [b"hello"]


def test_stop_then_start_keeps_data(broker: LocalBroker) -> None:
    assert broker.start() is True
    create_topic(broker.bootstrap, TOPIC)
    controller_port = broker.controller_port()
    assert broker.pid_file.exists()

    assert broker.stop() is True
    assert not port_open(broker.port)
    assert not broker.is_running()
    assert not broker.pid_file.exists()
    assert broker.stop() is False

    # A new object for the same directory, as a later ``smm local up`` would create.
    again = LocalBroker("T", broker.port, broker.dir.parent)
    try:
        assert again.start() is True
        assert again.controller_port() == controller_port
        assert TOPIC in list_topics(again.bootstrap)
        assert again.kill() is True
        assert not port_open(again.port)
        assert again.kill() is False
    finally:
        ensure_stopped(again)


def test_up_and_down_run_every_local_cluster(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    config = parse(
        {
            "clusters": "A, B",
            "A.bootstrap.servers": f"127.0.0.1:{p1}",
            "B.bootstrap.servers": f"127.0.0.1:{p2}",
        }
    )
    try:
        started = up(config, tmp_path)
        assert [(b.alias, b.port, now) for b, now in started] == [("A", p1, True), ("B", p2, True)]
        assert port_open(p1)
        assert port_open(p2)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"A-{p1}", f"B-{p2}"])
        assert [now for _, now in up(config, tmp_path)] == [False, False]

        stopped = down(config, tmp_path)
        assert [(b.alias, now) for b, now in stopped] == [("A", True), ("B", True)]
        assert not port_open(p1)
        assert not port_open(p2)
        assert [now for _, now in down(config, tmp_path)] == [False, False]
    finally:
        for local in brokers_for(config, tmp_path):
            ensure_stopped(local)


def _config(**servers: str) -> MirrorConfig:
    props = {"clusters": ", ".join(servers)}
    props.update({f"{alias}.bootstrap.servers": value for alias, value in servers.items()})
    return parse(props)


def test_brokers_for_only_loopback_clusters(tmp_path: Path) -> None:
    config = _config(A="127.0.0.1:19092", B="kafka.example.com:9092", C="localhost:19093")
    brokers = brokers_for(config, tmp_path)
    assert [(b.alias, b.bootstrap) for b in brokers] == [("A", "127.0.0.1:19092"), ("C", "localhost:19093")]
    assert brokers[0].dir == tmp_path.resolve() / "A-19092"


def test_brokers_for_rejects_a_local_cluster_of_several_brokers(tmp_path: Path) -> None:
    config = _config(A="127.0.0.1:19092,127.0.0.1:19093")
    with pytest.raises(BrokerError, match="one broker"):
        brokers_for(config, tmp_path)


def test_a_port_held_by_something_else_is_not_ours_to_stop(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        local = LocalBroker("X", other.getsockname()[1], tmp_path)
        assert local.is_running()
        assert local.start() is False
        with pytest.raises(BrokerError, match="not started from this state directory"):
            local.stop()
    assert local.stop() is False
    assert local.kill() is False
