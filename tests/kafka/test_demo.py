"""``make demo`` end to end on its own pair of clusters (free ports), as a newcomer runs it; and its verdict,
which compares every source topic with its remote topic record by record."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from shared.cli.commands import main
from shared.kafka.clients import KafkaClients
from shared.kafka.producers import send_record
from shared.local import demo
from shared.local.broker import free_port
from tests.kafka.support import make_config

pytestmark = pytest.mark.kafka

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.properties"


def test_demo_mirrors_both_ways_without_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DEMO.read_text()
    text = text.replace("127.0.0.1:29092", f"127.0.0.1:{free_port()}")
    text = text.replace("127.0.0.1:29192", f"127.0.0.1:{free_port()}")
    config = tmp_path / "demo.properties"
    config.write_text(text)
    monkeypatch.setenv("SMM_LOCAL_DIR", str(tmp_path / "clusters"))

    code = main(["demo", "--config", str(config), "--duration", "90"])

    out = capsys.readouterr().out
    assert code == 0, out
    for remote, source, count in (
        ("onprem.orders", "onprem/orders", 300),
        ("onprem.customers", "onprem/customers", 50),
        ("cloud.payments", "cloud/payments", 120),
    ):
        assert re.search(rf"^ +{re.escape(remote)} +{count} records  <- copy of {source}: identical$", out, re.M), out
    assert "DIFFERS" not in out
    assert "loop topics (onprem.cloud.*, cloud.onprem.*): none" in out
    assert "== demo passed" in out
    assert "stopping local clusters" in out


Row = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]  # partition, key, value, headers


def _rows(count: int = 6) -> list[Row]:
    return [(i % 2, None if i == 4 else b"k%d" % i, b"v%d" % i, [("h", b"%d" % i), ("h", b"x")]) for i in range(count)]


def test_demo_verdict_names_the_first_difference_of_each_partition(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    """Source and "remote" topics written directly, each remote spoiled in one way the verdict must catch."""
    cfg = make_config({"src": kafka_clusters["A"], "dst": kafka_clusters["B"]}, {})
    clients = KafkaClients(cfg)
    now = int(time.time() * 1000)

    def write(alias: str, topic: str, rows: list[Row], partitions: int = 2) -> None:
        admin = KafkaAdminClient(bootstrap_servers=cfg.cluster(alias).bootstrap_servers)
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
        finally:
            admin.close()
        producer = clients.producer(alias)
        for i, (partition, key, value, headers) in enumerate(rows):
            send_record(producer, topic, key, value, headers, partition, now + i)
        producer.flush()

    def verdict(name: str) -> list[str]:
        return demo._compare(clients, demo.Copy("src", f"{unique_prefix}.t", "dst", f"{unique_prefix}.{name}"))

    rows = _rows()
    write("src", f"{unique_prefix}.t", rows)
    changed_header = [*rows[:3], (1, b"k3", b"v3", [("h", b"3"), ("h", b"y")]), *rows[4:]]
    swapped = [rows[0], rows[1], rows[4], rows[3], rows[2], rows[5]]  # p0 holds 0, 4, 2; p1 untouched
    try:
        write("dst", f"{unique_prefix}.same", rows)
        write("dst", f"{unique_prefix}.header", changed_header)
        write("dst", f"{unique_prefix}.order", swapped)
        write("dst", f"{unique_prefix}.short", rows[:5])
        write("dst", f"{unique_prefix}.long", [*rows, rows[5]])
        write("dst", f"{unique_prefix}.wide", rows, partitions=3)

        assert verdict("same") == []
        (header,) = verdict("header")
        assert header.startswith("partition 1: record 1 differs\n"), header
        assert "headers=[h=b'3', h=b'x']" in header and "headers=[h=b'3', h=b'y']" in header
        (order,) = verdict("order")
        assert order.startswith("partition 0: record 1 differs\n"), order
        assert "source offset 1: key=b'k2' value=b'v2'" in order and "remote offset 1: key=None value=b'v4'" in order
        (short,) = verdict("short")
        assert short == "partition 1: 1 of 3 records missing, from source offset 2: " + (
            f"key=b'k5' value=b'v5' headers=[h=b'5', h=b'x'] timestamp={now + 5}"
        )
        (long,) = verdict("long")
        assert long.startswith("partition 1: 1 records more than the source's 3, from remote offset 3: key=b'k5'")
        assert verdict("wide") == ["3 partitions, the source has 2"]
        assert verdict("absent") == ["missing: the remote topic was never created"]
    finally:
        clients.close()
