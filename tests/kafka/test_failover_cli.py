"""``smm translate-offsets | failover | status | topology`` against the session clusters.

The commands run in-process through ``shared.cli.failover.add_commands`` (the parser ``smm`` registers them on),
so exit codes and output are the CLI's own.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from shared.cli.failover import add_commands
from shared.kafka.clients import KafkaClients
from shared.kafka.mirror_client import MirrorClient
from shared.mm2.config import MirrorConfig
from shared.mm2.policy import DefaultReplicationPolicy
from tests.kafka.support import SINGLE_BROKER
from tests.kafka.test_checkpoints import (
    LAG_MAX,
    close,
    configs,
    consume,
    join,
    mirror,
    produce,
    run_task,
    settings,
    warm_up,
)

pytestmark = pytest.mark.kafka

RECORDS = 500


@dataclass(frozen=True)
class Setup:
    prefix: str
    path: Path  # the mm2.properties the commands read
    config: MirrorConfig
    clusters: Mapping[str, str]
    topic: str

    @property
    def remote(self) -> TopicPartition:
        return TopicPartition(f"A.{self.topic}", 0)

    def group(self, name: str) -> str:
        return f"{self.prefix}-{name}"


def write_properties(path: Path, clusters: Mapping[str, str], prefix: str) -> None:
    """The file form of ``configs(...)[1]``: what a user would pass to ``smm``."""
    props = {"clusters": ", ".join(clusters), **SINGLE_BROKER, **settings(prefix, ["A->B"])}
    props.update({f"{alias}.bootstrap.servers": bootstrap for alias, bootstrap in clusters.items()})
    props.update({"A->B.enabled": "true", "A->B.topics": f"{prefix}.*"})
    path.write_text("".join(f"{key} = {value}\n" for key, value in props.items()), encoding="utf-8")


@pytest.fixture(scope="module")
def setup(kafka_clusters: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    quiet, config = configs(kafka_clusters, prefix, ["A->B"])
    topic = f"{prefix}-cli"
    warm_up(kafka_clusters)
    clients = KafkaClients(config)
    try:
        produce(clients, "A", topic, {0: RECORDS})
    finally:
        clients.close()
    mirror(quiet, {"A->B": [topic]})
    path = tmp_path_factory.mktemp("cli") / "mm2.properties"
    write_properties(path, kafka_clusters, prefix)
    yield Setup(prefix, path, config, kafka_clusters, topic)


def smm(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="smm")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def checkpointed(setup: Setup, positions: Mapping[str, int]) -> None:
    """Groups consume ``topic`` on A up to ``positions[group]``; then one checkpoint run."""
    for group, position in positions.items():
        consume(setup.clusters["A"], group, {TopicPartition(setup.topic, 0): position})
    task, _ = run_task(setup.config)
    close(task)


def on_b(setup: Setup, group: str) -> dict[TopicPartition, int]:
    clients = KafkaClients(setup.config)
    try:
        return clients.committed_offsets("B", group)
    finally:
        clients.close()


def json_out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_translate_offsets_lists_every_matching_group(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    done, mid = setup.group("tr-done"), setup.group("tr-mid")
    checkpointed(setup, {done: RECORDS, mid: 237})
    assert (
        smm(
            "translate-offsets",
            str(setup.path),
            "--from",
            "A",
            "--to",
            "B",
            "--group",
            f"{setup.prefix}-tr-.*",
            "--json",
        )
        == 0
    )
    rows = {r["group"]: r for r in json_out(capsys)["offsets"]}
    assert set(rows) == {done, mid}
    assert rows[done]["offset"] == RECORDS and rows[done]["topic"] == setup.remote.topic
    assert 237 - LAG_MAX <= rows[mid]["offset"] <= 237 and rows[mid]["upstreamOffset"] == 237
    assert rows[mid]["checkpointAgeSeconds"] >= 0

    assert smm("translate-offsets", str(setup.path), "--from", "A", "--to", "B", "--group", done) == 0
    table = capsys.readouterr().out
    assert done in table and mid not in table and "offset on B" in table


def test_failover_dry_run_shows_the_plan_and_writes_nothing(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    group = setup.group("dry")
    checkpointed(setup, {group: 300})
    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", group, "--dry-run", "--json") == 0
    plan = json_out(capsys)
    assert plan["ok"] and plan["dryRun"] and plan["written"] == []
    (entry,) = plan["groups"]
    (move,) = entry["moves"]
    assert move["action"] == "write" and move["current"] is None and 300 - LAG_MAX <= move["offset"] <= 300
    assert on_b(setup, group) == {}

    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", group) == 0
    assert "written: " + group in capsys.readouterr().out
    assert on_b(setup, group) == {setup.remote: move["offset"]}


def test_failover_refuses_a_group_active_on_the_target(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    group = setup.group("busy")
    checkpointed(setup, {group: 100})
    member = join(setup.clusters["B"], group, setup.remote.topic)
    try:
        assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", group) == 1
    finally:
        member.close(autocommit=False)
    captured = capsys.readouterr()
    assert f"REFUSED: group {group!r} is active on 'B'" in captured.out
    assert "nothing was written" in captured.err
    assert on_b(setup, group) == {}


def test_failover_refuses_stale_checkpoints_until_the_checkpoint_task_ran(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    group = setup.group("stale")
    checkpointed(setup, {group: 100})
    consume(setup.clusters["A"], group, {TopicPartition(setup.topic, 0): 400})  # moved on since the checkpoint
    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", group, "--json") == 1
    plan = json_out(capsys)
    assert not plan["ok"] and plan["written"] == []
    assert any("stale" in p for p in plan["groups"][0]["problems"])
    assert on_b(setup, group) == {}

    checkpointed(setup, {})
    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", group, "--json") == 0
    assert 400 - LAG_MAX <= on_b(setup, group)[setup.remote] <= 400


def test_status_reports_topics_lag_and_checkpoint_age(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    checkpointed(setup, {setup.group("status"): 10})
    assert smm("status", str(setup.path), "--json") == 0
    (flow,) = json_out(capsys)["flows"]
    assert flow["flow"] == "A->B" and flow["lag"] == 0 and flow["gaps"]["topic"] == "mm2-gaps.A.internal"
    # heartbeats topics are mirrored too (MM2 replicates them whatever the topic filter says)
    topics = {row["topic"]: row for row in flow["topics"]}
    assert set(topics) - {setup.topic} <= {"heartbeats", "B.heartbeats", "C.heartbeats"}
    topic = topics[setup.topic]
    assert topic == {
        "topic": setup.topic,
        "remoteTopic": setup.remote.topic,
        "remoteExists": True,
        "partitions": 1,
        "lag": 0,
        "started": True,
    }
    assert flow["checkpointAgeSeconds"] is not None and flow["checkpointAgeSeconds"] < 60
    assert "heartbeatAgeSeconds" in flow and "mirroredHeartbeatAgeSeconds" in flow

    assert smm("status", str(setup.path)) == 0
    text = capsys.readouterr().out
    assert "record lag  0" in text and "records lost upstream" in text


def test_topology_is_a_mermaid_graph_of_the_flows(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert smm("topology", str(setup.path)) == 0
    graph = capsys.readouterr().out
    assert graph.startswith("flowchart LR")
    for expected in ('subgraph c_A["A"]', 'subgraph c_B["B"]', f'["{setup.topic}"]', f'["A.{setup.topic}"]'):
        assert expected in graph
    assert '-->|"A->B"|' in graph


def test_an_invalid_group_regex_is_a_usage_error(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", "(")
    assert exited.value.code == 2
    assert "--group '(' is not a valid regular expression" in capsys.readouterr().err


def test_exact_failover_needs_a_drained_flow_and_an_exact_position(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    done, mid = setup.group("exact-done"), setup.group("exact-mid")
    checkpointed(setup, {done: RECORDS, mid: 237})

    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", mid, "--exact") == 1
    assert "offset 237 lies after the offset sync for" in capsys.readouterr().out
    assert on_b(setup, mid) == {}

    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", done, "--exact", "--json") == 0
    assert json_out(capsys)["written"] == [done]
    assert on_b(setup, done) == {setup.remote: RECORDS}

    clients = KafkaClients(setup.config)
    try:
        produce(clients, "A", setup.topic, {0: 10}, start=RECORDS)  # producers are still writing on A
    finally:
        clients.close()
    other = setup.group("exact-late")
    checkpointed(setup, {other: RECORDS})
    assert smm("failover", str(setup.path), "--from", "A", "--to", "B", "--group", other, "--exact") == 1
    assert "has not drained" in capsys.readouterr().out


# --- the client API (MirrorClient) -----------------------------------------------------------------------


def test_mirror_client_sees_remote_and_checkpoint_topics(setup: Setup) -> None:
    checkpointed(setup, {setup.group("client"): 5})
    clients = KafkaClients(setup.config)
    try:
        client = MirrorClient(clients, "B")
        assert setup.remote.topic in client.remote_topics("A")
        assert setup.remote.topic in client.remote_topics()
        assert setup.remote.topic not in client.remote_topics("C")
        assert "A.checkpoints.internal" in client.checkpoint_topics()
        assert 0 <= client.translate_offsets(setup.group("client"), "A")[setup.remote].offset <= 5
        assert client.translate_offsets(setup.group("nobody"), "A") == {}
    finally:
        clients.close()


class NamedTopics(MirrorClient):
    """MirrorClient over a fixed topic list: the name rules, without a cluster."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(KafkaClients.__new__(KafkaClients), "C", DefaultReplicationPolicy())
        self.names = topics

    def _topics(self) -> list[str]:
        return self.names


def test_mirror_client_reads_hops_and_upstream_clusters_from_heartbeat_topic_names() -> None:
    client = NamedTopics(
        ["heartbeats", "B.heartbeats", "B.A.heartbeats", "A.t", "B.A.t", "t", "A.checkpoints.internal"]
    )
    assert client.heartbeat_topics() == {"heartbeats", "B.heartbeats", "B.A.heartbeats"}
    assert client.checkpoint_topics() == {"A.checkpoints.internal"}
    assert client.upstream_clusters() == {"A", "B"}
    assert client.replication_hops("B") == 1
    assert client.replication_hops("A") == 2  # scenario 5: A->B->C
    assert client.replication_hops("D") == -1
    assert client.remote_topics() == {"A.t", "B.A.t", "B.heartbeats", "B.A.heartbeats"}
    assert client.remote_topics("B") == {"B.A.t", "B.heartbeats", "B.A.heartbeats"}
