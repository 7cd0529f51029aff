"""``make demo``: the product's main job on two real local clusters, end to end, in well under a minute.

Starts ``onprem`` and ``cloud``, creates topics on both, produces records with headers (repeated keys, binary
values, tombstones), runs the bidirectional flow until everything has landed, prints what landed where, and
stops the clusters. The verdict compares each source topic with its remote topic record by record: key, value,
headers and timestamp, partition by partition, in order; and no topic may come back to where it came from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
REFRESH_SECONDS = 2.0
LOOP_PREFIXES = ("onprem.cloud.", "cloud.onprem.")
READ_TIMEOUT_SECONDS = 30.0
SHOWN_CHARS = 60


@dataclass(frozen=True)
class Copy:
    """A sample topic and where its records must land."""

    source: str  # cluster alias
    topic: str
    target: str
    remote: str


@dataclass(frozen=True)
class Kept:
    """A record as the verdict compares it: what a consumer sees, and where it is."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int

    def content(self) -> tuple[object, ...]:
        return (self.key, self.value, self.headers, self.timestamp)

    def describe(self) -> str:
        headers = ", ".join(f"{k}={_short(v)}" for k, v in self.headers)
        return f"key={_short(self.key)} value={_short(self.value)} headers=[{headers}] timestamp={self.timestamp}"


def main(config_path: Path, duration: float = 60.0, keep: bool = False) -> int:
    mirror_config = config.load(config_path)
    state_dir = broker.default_state_dir()
    print(f"== starting local clusters ({config_path})")
    for b, started in broker.up(mirror_config, state_dir):
        print(f"   {b.alias}: {'started' if started else 'already running'} at {b.bootstrap}")
    clients = KafkaClients(mirror_config, client_id="smm-demo")
    try:
        copies = _produce_samples(clients)
        print(f"== mirroring both ways for up to {duration:.0f}s")
        loops = _run_until_landed(mirror_config, clients, copies, duration)
        ok = _show(mirror_config, clients, copies, loops)
    finally:
        clients.close()
        if not keep:
            print("== stopping local clusters")
            broker.down(mirror_config, state_dir)
    print("== demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _produce_samples(clients: KafkaClients) -> list[Copy]:
    """Create the sample topics and add records; returns each topic with the remote topic it must land in."""
    copies: list[Copy] = []
    now = int(time.time() * 1000)
    for alias, topics in SAMPLE.items():
        producer = clients.producer(alias)
        other = next(a for a in SAMPLE if a != alias)
        for topic, (partitions, count) in topics.items():
            clients.ensure_topic(alias, topic, partitions, -1)
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
            copies.append(Copy(alias, topic, other, f"{alias}.{topic}"))
            total = _count(clients, alias, topic)
            print(f"   {alias}: {topic} ({partitions} partitions) now holds {total} records")
    return copies


def _ends(clients: KafkaClients, alias: str, topic: str) -> dict[int, int]:
    """partition -> end offset; empty while the topic does not exist."""
    info = clients.topic_info(alias, topic, refresh=True)
    if info is None:
        return {}
    ends = clients.latest_offsets(alias, [TopicPartition(topic, p) for p in range(info.partitions)])
    return {tp.partition: end for tp, end in ends.items()}


def _count(clients: KafkaClients, alias: str, topic: str) -> int:
    return sum(_ends(clients, alias, topic).values())


def _loop_topics(mirror_config: MirrorConfig, clients: KafkaClients) -> set[tuple[str, str]]:
    return {
        (alias, t) for alias in mirror_config.clusters for t in clients.topics(alias) if t.startswith(LOOP_PREFIXES)
    }


@contextmanager
def _running(mirror_config: MirrorConfig) -> Iterator[None]:
    """``smm run`` in a thread for the duration of the block, printing its progress every 5 s."""
    stop = threading.Event()
    runner = threading.Thread(
        target=emulator.run,
        kwargs={"config": mirror_config, "stop": stop, "progress_seconds": 5.0, "refresh_seconds": REFRESH_SECONDS},
        daemon=True,
    )
    runner.start()
    try:
        yield
    finally:
        stop.set()
        runner.join(timeout=60)


def _run_until_landed(
    mirror_config: MirrorConfig, clients: KafkaClients, copies: list[Copy], duration: float
) -> set[tuple[str, str]]:
    """Mirror until every remote topic has caught up with its source, then keep mirroring for two topic
    refreshes while watching for loop topics (a loop needs a refresh that sees the remote topics); returns the
    loop topics seen while the flows ran."""
    loops: set[tuple[str, str]] = set()
    with _running(mirror_config):
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            loops |= _loop_topics(mirror_config, clients)
            if all(_caught_up(clients, c) for c in copies):
                break
            time.sleep(1.0)
        watch_until = time.monotonic() + 2 * REFRESH_SECONDS + 1.0  # also lets the last offset syncs and commits finish
        while time.monotonic() < watch_until:
            loops |= _loop_topics(mirror_config, clients)
            time.sleep(0.5)
    return loops


def _caught_up(clients: KafkaClients, copy: Copy) -> bool:
    source, remote = _ends(clients, copy.source, copy.topic), _ends(clients, copy.target, copy.remote)
    return bool(remote) and all(remote.get(p, 0) >= end for p, end in source.items())


def _show(
    mirror_config: MirrorConfig, clients: KafkaClients, copies: list[Copy], loops_seen: set[tuple[str, str]]
) -> bool:
    ok = True
    by_remote = {(c.target, c.remote): c for c in copies}
    problems: dict[tuple[str, str], list[str]] = {}
    for c in copies:
        problems[(c.target, c.remote)] = _compare(clients, c)
    print("== what landed where")
    print("   (identical: every record's key, value, headers and timestamp, in the same partition and order)")
    for alias in mirror_config.clusters:
        print(f"   cluster {alias}:")
        for topic in clients.topics(alias):
            if topic.startswith("__"):
                continue
            note = ""
            copy = by_remote.get((alias, topic))
            if copy is not None:
                found = problems[(alias, topic)]
                note = f"  <- copy of {copy.source}/{copy.topic}: " + ("identical" if not found else "DIFFERS")
                ok &= not found
            print(f"     {topic:40s} {_count(clients, alias, topic):6d} records{note}")
    for copy in copies:
        for line in problems[(copy.target, copy.remote)]:
            print(f"   {copy.target}/{copy.remote}: {line}")
    loops = sorted(loops_seen | _loop_topics(mirror_config, clients))
    print(f"   loop topics ({', '.join(p + '*' for p in LOOP_PREFIXES)}): {loops or 'none'}")
    ok &= not loops
    _show_sample(clients)
    _show_offset_syncs(clients)
    return ok


def _compare(clients: KafkaClients, copy: Copy) -> list[str]:
    """What differs between a source topic and its remote topic (empty: identical); one line per partition."""
    source = _read(clients, copy.source, copy.topic)
    remote = _read(clients, copy.target, copy.remote)
    if remote is None:
        return ["missing: the remote topic was never created"]
    if source is None:
        return [f"the source topic {copy.source}/{copy.topic} is gone"]
    if len(remote) != len(source):
        return [f"{len(remote)} partitions, the source has {len(source)}"]
    return [line for p in sorted(source) if (line := _compare_partition(p, source[p], remote[p]))]


def _compare_partition(partition: int, source: list[Kept], remote: list[Kept]) -> str:
    """The first difference of one partition, or ''; records are compared in order."""
    for s, r in zip(source, remote, strict=False):
        if s.content() != r.content():
            return (
                f"partition {partition}: record {s.offset} differs\n"
                f"       source offset {s.offset}: {s.describe()}\n"
                f"       remote offset {r.offset}: {r.describe()}"
            )
    if len(remote) < len(source):
        first = source[len(remote)]
        return (
            f"partition {partition}: {len(source) - len(remote)} of {len(source)} records missing, "
            f"from source offset {first.offset}: {first.describe()}"
        )
    if len(remote) > len(source):
        extra = remote[len(source)]
        return (
            f"partition {partition}: {len(remote) - len(source)} records more than the source's {len(source)}, "
            f"from remote offset {extra.offset}: {extra.describe()}"
        )
    return ""


def _read(clients: KafkaClients, alias: str, topic: str) -> dict[int, list[Kept]] | None:
    """partition -> every record up to the end offsets of now, in order; None if the topic does not exist."""
    ends = _ends(clients, alias, topic)
    if not ends:
        return None
    found: dict[int, list[Kept]] = {p: [] for p in ends}
    consumer = clients.consumer(alias, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(ends)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while any(consumer.position(tp) < ends[tp.partition] for tp in tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                found[tp.partition].extend(
                    Kept(r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)
                    for r in records
                    if r.offset < ends[tp.partition]
                )
    finally:
        consumer.close()
    return found


def _short(value: bytes | None) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


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
