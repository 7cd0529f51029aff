"""``make demo``: the product's main job on two real local clusters, end to end, in well under a minute.

Starts ``onprem`` and ``cloud``, creates topics on both, produces records with headers (repeated keys, binary
values, tombstones), runs the bidirectional flow until everything has landed, prints what landed where, and
stops the clusters.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kafka import TopicPartition

from shared.kafka.clients import KafkaClients
from shared.kafka.producers import send_record
from shared.local import broker, emulator
from shared.mm2 import config
from shared.mm2.config import MirrorConfig
from shared.mm2.formats import OffsetSync

SAMPLE = {
    # cluster -> topic -> (partitions, records)
    "onprem": {"orders": (3, 300), "customers": (1, 50)},
    "cloud": {"payments": (2, 120)},
}


def main(config_path: Path, duration: float = 60.0, keep: bool = False) -> int:
    mirror_config = config.load(config_path)
    state_dir = broker.default_state_dir()
    print(f"== starting local clusters ({config_path})")
    for b, started in broker.up(mirror_config, state_dir):
        print(f"   {b.alias}: {'started' if started else 'already running'} at {b.bootstrap}")
    clients = KafkaClients(mirror_config, client_id="smm-demo")
    try:
        expected = _produce_samples(clients)
        print(f"== mirroring both ways for up to {duration:.0f}s")
        _run_until_landed(mirror_config, clients, expected, duration)
        ok = _show(mirror_config, clients, expected)
    finally:
        clients.close()
        if not keep:
            print("== stopping local clusters")
            broker.down(mirror_config, state_dir)
    print("== demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _produce_samples(clients: KafkaClients) -> dict[tuple[str, str], int]:
    """Create the sample topics and add records; returns (target cluster, remote topic) -> records expected."""
    expected: dict[tuple[str, str], int] = {}
    now = int(time.time() * 1000)
    for alias, topics in SAMPLE.items():
        producer = clients.producer(alias)
        other = next(a for a in SAMPLE if a != alias)
        for topic, (partitions, count) in topics.items():
            clients.ensure_topic(alias, topic, partitions, -1)
            before = sum(clients.latest_offsets(alias, _partitions(topic, partitions)).values())
            for i in range(count):
                key = None if i % 10 == 9 else f"{topic}-{i % 17}".encode()
                value = (
                    None
                    if topic == "customers" and i % 7 == 0
                    else f'{{"n":{i},"bin":"'.encode() + bytes([i % 256, 0xFF]) + b'"}'
                )
                headers = [("trace-id", f"t{i}".encode()), ("tag", b"a"), ("tag", b"b")]
                send_record(producer, topic, key, value, headers, i % partitions, now + i)
            producer.flush()
            total = before + count
            expected[(other, f"{alias}.{topic}")] = total
            print(f"   {alias}: {topic} ({partitions} partitions) now holds {total} records")
    return expected


def _partitions(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(count)]


def _landed(clients: KafkaClients, alias: str, topic: str) -> int:
    info = clients.topic_info(alias, topic, refresh=True)
    if info is None:
        return 0
    return sum(clients.latest_offsets(alias, _partitions(topic, info.partitions)).values())


def _run_until_landed(
    mirror_config: MirrorConfig, clients: KafkaClients, expected: dict[tuple[str, str], int], duration: float
) -> None:
    stop = threading.Event()
    runner = threading.Thread(
        target=emulator.run,
        kwargs={"config": mirror_config, "stop": stop, "progress_seconds": 5.0, "refresh_seconds": 2.0},
        daemon=True,
    )
    runner.start()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if all(_landed(clients, a, t) >= n for (a, t), n in expected.items()):
            time.sleep(1.0)  # let the last offset syncs and commits finish
            break
        time.sleep(1.0)
    stop.set()
    runner.join(timeout=60)


def _show(mirror_config: MirrorConfig, clients: KafkaClients, expected: dict[tuple[str, str], int]) -> bool:
    ok = True
    print("== what landed where")
    for alias in mirror_config.clusters:
        print(f"   cluster {alias}:")
        for topic in clients.topics(alias):
            if topic.startswith("__"):
                continue
            count = _landed(clients, alias, topic)
            want = expected.get((alias, topic))
            note = ""
            if want is not None:
                note = "  <- mirrored, complete" if count >= want else f"  <- mirrored, INCOMPLETE ({want} expected)"
                ok &= count >= want
            print(f"     {topic:40s} {count:6d} records{note}")
    loops = [
        (alias, t)
        for alias in mirror_config.clusters
        for t in clients.topics(alias)
        if t.startswith(("onprem.cloud.", "cloud.onprem."))
    ]
    print(f"   loop topics (onprem.cloud.*, cloud.onprem.*): {loops or 'none'}")
    ok &= not loops
    _show_sample(clients)
    _show_offset_syncs(clients)
    return ok


def _show_sample(clients: KafkaClients) -> None:
    consumer = clients.consumer("cloud", auto_offset_reset="earliest", consumer_timeout_ms=3000)
    consumer.assign([TopicPartition("onprem.orders", 0)])
    for record in consumer:
        print(
            f"   sample cloud/onprem.orders-0@{record.offset}: key={record.key!r} value={record.value!r} "
            f"headers={record.headers} timestamp={record.timestamp}"
        )
        break
    consumer.close()


def _show_offset_syncs(clients: KafkaClients) -> None:
    topic = "mm2-offset-syncs.cloud.internal"
    consumer = clients.consumer("onprem", auto_offset_reset="earliest", consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, 0)])
    syncs = [OffsetSync.deserialize(r.key, r.value) for r in consumer]
    consumer.close()
    newest = {}
    for s in syncs:
        newest[(s.topic, s.partition)] = s
    print(f"   offset syncs in onprem/{topic}: {len(syncs)}; newest per partition:")
    for (t, p), s in sorted(newest.items()):
        print(f"     {t}-{p}: upstream {s.upstream_offset} -> downstream {s.downstream_offset}")
