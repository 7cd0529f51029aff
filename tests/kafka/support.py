"""Helpers for integration tests: configs for the session clusters, producing, reading back, running flows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from shared.kafka.clients import KafkaClients
from shared.local import emulator
from shared.mm2 import config
from shared.mm2.config import MirrorConfig

SINGLE_BROKER = {
    "replication.factor": "1",
    "offset-syncs.topic.replication.factor": "1",
    "heartbeats.topic.replication.factor": "1",
    "checkpoints.topic.replication.factor": "1",
    "refresh.topics.interval.seconds": "1",
    "smm.batching.window.ms": "100",
}


def make_config(clusters: Mapping[str, str], flows: Mapping[str, str], **settings: str) -> MirrorConfig:
    """A config over the session clusters with ``flows`` (``"A->B": topics regex``) enabled."""
    props = {"clusters": ", ".join(clusters), **SINGLE_BROKER}
    for alias, bootstrap in clusters.items():
        props[f"{alias}.bootstrap.servers"] = bootstrap
    for flow, topics in flows.items():
        props[f"{flow}.enabled"] = "true"
        props[f"{flow}.topics"] = topics
    props.update({k.replace("__", "."): v for k, v in settings.items()})
    return config.parse(props)


@dataclass(frozen=True)
class Record:
    """What a test compares between source and target."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


def read_all(bootstrap: str, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[Record]:
    """Every record of ``topic`` (all partitions), waiting until ``expected`` have arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    deadline = time.monotonic() + timeout
    records: list[Record] = []
    try:
        partitions: set[int] | None = None
        while time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            time.sleep(0.2)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline:
            for r in consumer:
                records.append(Record(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp))
            if expected is None or len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def run_flows(mirror_config: MirrorConfig, until: Callable[[], bool], timeout: float = 120.0) -> dict[str, Any]:
    """Run the local runtime until ``until()`` holds (checked every 0.5 s) or ``timeout``; returns the totals."""
    stop = threading.Event()
    result: dict[str, Any] = {}

    def target() -> None:
        result.update(emulator.run(mirror_config, stop=stop, progress_seconds=3600, refresh_seconds=1.0))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and thread.is_alive():
            if until():
                break
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=60)
    return result


def topic_exists(mirror_config: MirrorConfig, alias: str, topic: str) -> bool:
    clients = KafkaClients(mirror_config)
    try:
        return topic in clients.topics(alias)
    finally:
        clients.close()
