"""Apache MirrorMaker 2 and this product on the same clusters, each picking up where the other left off.

- MM2's client API (``RemoteClusterUtils.translateOffsets``) reads this product's checkpoints and gives what
  ``smm translate-offsets`` gives;
- take-over: MM2 (dedicated mode) mirrors part of a topic and stops; ``smm run`` on the same file continues from
  MM2's source offsets, and its checkpoints continue MM2's without going backwards; in exactly-once mode nothing
  is copied twice;
- hand-back: after ``smm run`` in exactly-once mode, MM2 continues from this product's source offsets without
  copying anything twice, and the checkpoint MM2 computes from this product's offset syncs is the one this
  product computed.

Each test uses cluster aliases of its own (``S<prefix>``, ``T<prefix>``), so MM2's Connect topics, groups and
the internal topics are new to the clusters. Each prints the counts it compared.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from shared.cli.commands import main
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import read_topic
from shared.kafka.source_offsets import read as read_source_offsets
from shared.mm2 import config
from shared.mm2.formats import Checkpoint
from tests.kafka import mirrormaker
from tests.kafka.support import running, wait_until
from tests.mm2 import harness

pytestmark = pytest.mark.kafka

PARTITIONS = 2


@contextlib.contextmanager
def _free_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


class Setup:
    """One test's clusters, topic and groups, and the mm2.properties both MM2 and ``smm run`` read."""

    def __init__(self, clusters: dict[str, str], prefix: str, work: Path) -> None:
        self.source, self.target = f"S{prefix}", f"T{prefix}"
        self.bootstrap = {self.source: clusters["A"], self.target: clusters["B"]}
        self.prefix, self.work = prefix, work
        self.topic = f"{prefix}.orders"
        self.remote = f"{self.source}.{self.topic}"
        admin = KafkaAdminClient(bootstrap_servers=clusters["A"])
        try:
            admin.create_topics({self.topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
        finally:
            admin.close()
        self.produced = 0

    def properties(self, groups: str, exactly_once: bool = False, **extra: str) -> Path:
        s, t = self.source, self.target
        props = {
            "clusters": f"{s}, {t}",
            f"{s}.bootstrap.servers": self.bootstrap[s],
            f"{t}.bootstrap.servers": self.bootstrap[t],
            f"{s}->{t}.enabled": "true",
            f"{s}->{t}.topics": f"{self.prefix}\\\\..*",  # a properties file: \\ is one backslash
            f"{s}->{t}.groups": groups,
            "emit.heartbeats.enabled": "false",
            "replication.factor": "1",
            "checkpoints.topic.replication.factor": "1",
            "heartbeats.topic.replication.factor": "1",
            "offset-syncs.topic.replication.factor": "1",
            "emit.checkpoints.interval.seconds": "1",
            "refresh.topics.interval.seconds": "2",
            "refresh.groups.interval.seconds": "2",
            "sync.topic.acls.enabled": "false",
            "smm.batching.window.ms": "100",
            **mirrormaker.worker_settings(t),
            **extra,
        }
        if exactly_once:
            with _free_port() as port:
                props |= {
                    f"{t}.exactly.once.source.support": "enabled",
                    f"{s}.consumer.isolation.level": "read_committed",
                    "dedicated.mode.enable.internal.rest": "true",
                    "listeners": f"http://127.0.0.1:{port}",
                }
        name = f"mm2-{groups.replace('.*', 'all').replace('-', '')}{'-eos' if exactly_once else ''}.properties"
        return mirrormaker.write(self.work / name, props)

    def produce(self, per_partition: int) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap[self.source], acks="all")
        for p in range(PARTITIONS):
            for i in range(self.produced, self.produced + per_partition):
                producer.send(self.topic, key=b"k", value=f"{p}/{i}".encode(), partition=p)
        producer.flush()
        producer.close()
        self.produced += per_partition

    def commit(self, group: str, offset: int, metadata: str = "") -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap[self.source], group_id=group, enable_auto_commit=False
        )
        consumer.commit(
            {TopicPartition(self.topic, p): OffsetAndMetadata(offset, metadata, -1) for p in range(PARTITIONS)}
        )
        consumer.close()

    def clients(self, path: Path) -> KafkaClients:
        return KafkaClients(config.load(path))

    def remote_values(self, clients: KafkaClients) -> list[bytes]:
        """Every committed record of the remote topic (read_committed: no aborted copy counts)."""
        return [r.value or b"" for r in read_topic(clients, self.target, self.remote).records]

    def checkpoints(self, clients: KafkaClients, group: str) -> list[Checkpoint]:
        records = read_topic(clients, self.target, f"{self.source}.checkpoints.internal").records
        found = [Checkpoint.deserialize(r.key or b"", r.value or b"") for r in records if r.value]
        return [c for c in found if c.group == group]

    def checkpointed(self, clients: KafkaClients, group: str) -> bool:
        """Every partition of the topic has a checkpoint for ``group``."""
        return len({c.partition for c in self.checkpoints(clients, group)}) == PARTITIONS

    def positions_at(self, clients: KafkaClients, offset: int) -> bool:
        """The source offsets in ``mm2-offsets.<source>.internal`` are ``offset`` on every partition."""
        return self.mm2_positions(clients) == dict.fromkeys(range(PARTITIONS), offset)

    def mm2_positions(self, clients: KafkaClients) -> dict[int, int]:
        positions = read_source_offsets(clients, self.target, f"mm2-offsets.{self.source}.internal")
        return {p: o.offset for (topic, p), o in positions.items() if topic == self.topic}


@pytest.fixture
def setup(kafka_clusters: dict[str, str], unique_prefix: str, tmp_path: Path) -> Setup:
    return Setup(kafka_clusters, unique_prefix, tmp_path)


def _smm_translations(
    path: Path, setup: Setup, group: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, list[object]]:
    capsys.readouterr()
    assert (
        main(["translate-offsets", str(path), "--from", setup.source, "--to", setup.target, "--group", group, "--json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["offsets"]
    return {f"{r['topic']}-{r['partition']}": [r["offset"], r["metadata"]] for r in rows}


def test_mm2s_client_api_translates_this_products_checkpoints(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    group = f"{setup.prefix}-app"
    setup.produce(50)
    setup.commit(group, 30, "resume-here")
    path = setup.properties(f"{setup.prefix}-.*")
    clients = setup.clients(path)
    try:
        with running(config.load(path)):
            wait_until(
                "a checkpoint per partition",
                lambda: setup.checkpointed(clients, group),
            )
    finally:
        clients.close()
    ours = _smm_translations(path, setup, group, capsys)
    theirs = harness.translate_offsets(setup.bootstrap[setup.target], setup.source, group)
    print(f"RemoteClusterUtils.translateOffsets and smm translate-offsets: {len(theirs)} partitions compared")
    assert theirs == ours and len(ours) == PARTITIONS


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_take_over_from_mm2(setup: Setup, exactly_once: bool) -> None:
    group = f"{setup.prefix}-app"
    path = setup.properties(f"{setup.prefix}-.*", exactly_once)
    setup.produce(50)
    setup.commit(group, 40)
    clients = setup.clients(path)
    try:
        with mirrormaker.mirrormaker(path, setup.target):
            wait_until("MM2 mirrored the first 100", lambda: len(setup.remote_values(clients)) >= 100, timeout=240)
            wait_until("MM2's source offsets committed", lambda: setup.positions_at(clients, 49), timeout=180)
            wait_until("MM2's checkpoints", lambda: setup.checkpointed(clients, group))
        by_mm2 = setup.checkpoints(clients, group)
        setup.produce(30)
        setup.commit(group, 70)
        with running(config.load(path)):
            wait_until("the next 60 mirrored", lambda: len(setup.remote_values(clients)) >= 160)
            wait_until(
                "this product's checkpoints at 70",
                lambda: {c.upstream_offset for c in setup.checkpoints(clients, group)[-2:]} == {70},
            )
        values = setup.remote_values(clients)
        checkpoints = setup.checkpoints(clients, group)
    finally:
        clients.close()
    print(
        f"take-over ({'exactly-once' if exactly_once else 'at-least-once'}): {len(values)} remote records for 160 "
        f"produced, {len(by_mm2)} checkpoints by MM2 then {len(checkpoints) - len(by_mm2)} by this product"
    )
    assert sorted(values) == sorted(f"{p}/{i}".encode() for p in range(PARTITIONS) for i in range(80))  # once each
    for p in range(PARTITIONS):
        downstream = [c.downstream_offset for c in checkpoints if c.partition == p]
        assert downstream == sorted(downstream), f"partition {p}: checkpoints went backwards: {downstream}"


def test_hand_back_to_mm2_in_exactly_once_mode(setup: Setup) -> None:
    ours_group, mm2_group = f"{setup.prefix}-ours", f"{setup.prefix}-mm2"
    setup.produce(50)
    for group in (ours_group, mm2_group):
        setup.commit(group, 49)  # a position a sync of the last record of a batch translates exactly
    ours_path = setup.properties(ours_group, exactly_once=True)
    mm2_path = setup.properties(mm2_group, exactly_once=True)
    clients = setup.clients(ours_path)
    try:
        with running(config.load(ours_path)):
            wait_until("the first 100 mirrored", lambda: len(setup.remote_values(clients)) >= 100)
            wait_until("our source offsets", lambda: setup.positions_at(clients, 49))
            wait_until("our checkpoints", lambda: setup.checkpointed(clients, ours_group))
        setup.produce(30)
        with mirrormaker.mirrormaker(mm2_path, setup.target):
            wait_until("MM2 mirrored the next 60", lambda: len(setup.remote_values(clients)) >= 160, timeout=240)
            wait_until(
                "MM2's checkpoints from our syncs",
                lambda: setup.checkpointed(clients, mm2_group),
                timeout=180,
            )
        values = setup.remote_values(clients)
        ours = {c.partition: c.downstream_offset for c in setup.checkpoints(clients, ours_group)}
        theirs = {c.partition: c.downstream_offset for c in setup.checkpoints(clients, mm2_group)}
    finally:
        clients.close()
    print(f"hand-back: {len(values)} remote records for 160 produced; checkpoints compared: {len(theirs)} partitions")
    assert sorted(values) == sorted(f"{p}/{i}".encode() for p in range(PARTITIONS) for i in range(80))  # once each
    assert theirs == ours
