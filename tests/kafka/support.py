"""Helpers for integration tests: configs for the session clusters, producing, reading back, running flows."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from unittest import mock

from kafka import KafkaConsumer, TopicPartition

from shared.kafka.clients import KafkaClients
from shared.kafka.producers import ConfluentProducer, KafkaPythonProducer
from shared.local import emulator
from shared.mm2 import config
from shared.mm2.config import MirrorConfig

T = TypeVar("T")

SINGLE_BROKER = {
    "replication.factor": "1",
    "offset-syncs.topic.replication.factor": "1",
    "heartbeats.topic.replication.factor": "1",
    "checkpoints.topic.replication.factor": "1",
    "offset.storage.replication.factor": "1",
    "refresh.topics.interval.seconds": "1",
    "refresh.groups.interval.seconds": "1",
    "smm.batching.window.ms": "100",
}

# Where each ``smm.producer.backend`` sends one record, reported or not: the method a test makes fail a send.
SEND_METHODS: dict[str, tuple[type[KafkaPythonProducer | ConfluentProducer], str]] = {
    "kafka-python": (KafkaPythonProducer, "send"),
    "confluent-kafka": (ConfluentProducer, "_produce"),
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
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


def read_all(bootstrap: str, topic: str, expected: int | None = None, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` (all partitions), read up to its end offsets.

    With ``expected``, waits until that many records have arrived and then reads up to the end offsets of that
    moment, so records beyond ``expected`` (duplicates, loops) are returned too. ``timeout`` is only a ceiling:
    a topic that does not exist, or holds fewer records, is returned as found when it passes.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    records: list[Record] = []
    try:
        partitions: set[int] | None = None
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] | None = consumer.end_offsets(tps) if expected is None else None
        while time.monotonic() < deadline:
            if ends is None and expected is not None and len(records) >= expected:
                ends = consumer.end_offsets(tps)
            if ends is not None and all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(
                    Record(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp) for r in batch
                )
    finally:
        consumer.close()
    return records


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> end offset of ``topic``; empty while the topic does not exist."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return {}
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: int(end) for tp, end in ends.items()}
    finally:
        consumer.close()


def wait_until(what: str, check: Callable[[], T], timeout: float = 120.0, every: float = 0.5) -> T:
    """``check()``'s first truthy result; fails naming ``what`` if none comes within ``timeout`` seconds.

    The timeout is a generous ceiling for a loaded machine, not a measure: a passing test returns as soon as the
    condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {result!r})")
        time.sleep(every)


def keeps_holding(what: str, check: Callable[[], object], seconds: float, checks: int = 5) -> None:
    """Fail as soon as ``check()`` is falsy, checking for at least ``seconds`` and at least ``checks`` times.

    The count keeps the observation from shrinking to one look when a loaded machine makes each check slow.
    """
    end, done = time.monotonic() + seconds, 0
    while done < checks or time.monotonic() < end:
        result = check()
        assert result, f"{what}: stopped holding after {done} check(s) (last: {result!r})"
        done += 1
        time.sleep(0.5)


def run_flows(
    mirror_config: MirrorConfig,
    until: Callable[[], bool],
    timeout: float = 120.0,
    mappings: Mapping[str, emulator.MappingOptions] | None = None,
) -> dict[str, Any]:
    """Run the local runtime until ``until()`` holds (checked every 0.5 s) or ``timeout``; returns the totals.

    ``mappings`` gives flows (by name) what deploy settings give their mappings (``smm run --settings``).
    """
    stop = threading.Event()
    result: dict[str, Any] = {}

    def target() -> None:
        result.update(
            emulator.run(mirror_config, stop=stop, progress_seconds=3600, refresh_seconds=1.0, mappings=mappings)
        )

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


@dataclass
class LiveRuntime:
    """The local runtime of :func:`running`: its flows' totals while it runs, and at the end."""

    runners: dict[str, emulator.FlowRunner] = field(default_factory=dict)
    final: dict[str, emulator.FlowTotals] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def totals(self, flow: str) -> emulator.FlowTotals:
        """A copy of ``flow``'s running totals (all zero until its runner exists)."""
        runner = self.runners.get(flow)
        if runner is None:
            return emulator.FlowTotals()
        with runner._lock:  # the runner's pollers add to its totals under this lock
            return copy.deepcopy(runner.totals)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@contextmanager
def running(
    mirror_config: MirrorConfig,
    refresh_seconds: float = 1.0,
    mappings: Mapping[str, emulator.MappingOptions] | None = None,
) -> Iterator[LiveRuntime]:
    """The local runtime (``smm run``) in a thread for the duration of the block, its totals readable meanwhile.

    Checks made inside the block observe a runtime that is still mirroring, so a loop or a late copy can show.
    ``final`` holds the totals ``emulator.run`` returned once the block has ended. ``mappings``: as for
    :func:`run_flows`.
    """
    live = LiveRuntime()
    stop = threading.Event()

    class Observed(emulator.FlowRunner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            live.runners[self.flow.name] = self

    def target() -> None:
        totals = emulator.run(
            mirror_config, stop=stop, progress_seconds=3600, refresh_seconds=refresh_seconds, mappings=mappings
        )
        live.final.update(totals)

    with mock.patch.object(emulator, "FlowRunner", Observed):
        live.thread = threading.Thread(target=target, daemon=True)
        live.thread.start()
        try:
            yield live
        finally:
            stop.set()
            live.thread.join(timeout=120)
    assert not live.thread.is_alive(), "the runtime did not stop within 120 s"


def fresh_aliases(prefix: str) -> tuple[str, str]:
    """A source and a target alias no other test uses (from ``unique_prefix``).

    MM2 names internal topics after cluster aliases (``mm2-offset-syncs.<target>.internal``,
    ``<source>.checkpoints.internal``, ...): with these aliases they are new to the session's clusters, so a test
    sees the topics its own run created, not ones an earlier test left behind.
    """
    return f"S{prefix}", f"T{prefix}"


def topic_exists(mirror_config: MirrorConfig, alias: str, topic: str) -> bool:
    clients = KafkaClients(mirror_config)
    try:
        return topic in clients.topics(alias)
    finally:
        clients.close()
