"""Heartbeats on real brokers (scenario 17): emitted into the target's ``heartbeats``, mirrored as
``A.heartbeats``, decoded as MM2 Heartbeats, turned into replication latency; the Lambda handler's loop; and the
flow health it measures (heartbeat age, source lag) and publishes."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from functions.heartbeats import handler, heartbeats, monitor
from functions.mirror.mirror import Mirror
from shared.aws.esm_event import SourceRecord
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import alter_offsets
from shared.local import emulator
from shared.mm2.formats import Heartbeat
from tests.kafka.support import SINGLE_BROKER, fresh_aliases, make_config, run_flows, running, wait_until

pytestmark = pytest.mark.kafka


def heartbeats_since(bootstrap: str, topic: str, since_ms: int) -> list[tuple[Heartbeat, int]]:
    """Heartbeats in ``topic`` stamped at or after ``since_ms``, with each record's offset."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, consumer_timeout_ms=500)
    try:
        tp = TopicPartition(topic, 0)
        if not consumer.partitions_for_topic(topic):
            return []
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        found = []
        for record in consumer:
            heartbeat = Heartbeat.deserialize(record.key, record.value)
            if heartbeat.timestamp >= since_ms:
                found.append((heartbeat, record.offset))
        return found
    finally:
        consumer.close()


def test_heartbeats_arrive_on_the_target_and_as_remote_heartbeats(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    started = int(time.time() * 1000)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})

    def arrived() -> bool:
        own = heartbeats_since(kafka_clusters["B"], "heartbeats", started)
        remote = heartbeats_since(kafka_clusters["B"], "A.heartbeats", started)
        return any(h.source_cluster_alias == "A" for h, _ in own) and len(remote) >= 2

    run_flows(cfg, arrived, timeout=120)  # a ceiling: it returns once they arrived
    finished = int(time.time() * 1000)

    # B's own heartbeats: Heartbeat(A, B), stamped while the runtime ran, about once a second
    own = [h for h, _ in heartbeats_since(kafka_clusters["B"], "heartbeats", started) if h.source_cluster_alias == "A"]
    assert own and all(h.target_cluster_alias == "B" and started <= h.timestamp <= finished for h in own)
    # A's heartbeats (emitted there by the pairs B->A and C->A, enabled or not) mirrored to B as A.heartbeats
    remote = [h for h, _ in heartbeats_since(kafka_clusters["B"], "A.heartbeats", started)]
    assert remote and all(h.target_cluster_alias == "A" and started <= h.timestamp <= finished for h in remote)
    assert {h.source_cluster_alias for h in remote} <= {"B", "C"}
    admin = KafkaAdminClient(bootstrap_servers=[kafka_clusters["B"]])
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "heartbeats")])
        assert described["topic"]["heartbeats"]["cleanup.policy"]["value"] == "compact"
        assert len(admin.describe_topics(["heartbeats"])[0]["partitions"]) == 1
    finally:
        admin.close()


def test_the_mirror_turns_heartbeats_into_replication_latency(kafka_clusters: dict[str, str]) -> None:
    cfg = make_config(kafka_clusters, {"A->C": "none"})
    clients = KafkaClients(cfg)
    try:
        emitted = heartbeats.task_for(cfg.flow("B", "A"), clients).run_once()
        consumer = KafkaConsumer(bootstrap_servers=[kafka_clusters["A"]], enable_auto_commit=False)
        tp = TopicPartition("heartbeats", 0)
        consumer.assign([tp])
        consumer.seek(tp, emitted["offset"])
        record = next(r for r in consumer.poll(timeout_ms=5000)[tp] if r.offset == emitted["offset"])
        consumer.close()
        source = SourceRecord(
            "heartbeats", 0, record.offset, record.timestamp, "CREATE_TIME", record.key, record.value, []
        )
        report = Mirror(cfg.flow("A", "C"), clients).mirror([source])
        assert report.mirrored == 1
        assert len(report.replication_latency_ms) == 1 and 0 <= report.replication_latency_ms[0] < 30_000
    finally:
        clients.close()


REMAINING_MS = 10_000  # of which the handler keeps SAFETY_MARGIN_MS (5 s): 5 s of looping, a heartbeat a second


class ShortContext(emulator.LambdaContext):
    """A Lambda context with little time left, counting down as Lambda's does: the handler must stop looping
    well before it runs out."""

    def __init__(self, function_name: str) -> None:
        super().__init__(function_name=function_name)
        self.deadline = time.monotonic() + REMAINING_MS / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def test_lambda_handler_loops_within_one_invocation(
    kafka_clusters: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    properties = tmp_path / "mm2.properties"
    lines = [f"{alias}.bootstrap.servers = {servers}" for alias, servers in kafka_clusters.items()]
    lines += [f"{key} = {value}" for key, value in SINGLE_BROKER.items()]
    lines += [f"clusters = {', '.join(kafka_clusters)}", "emit.heartbeats.interval.seconds = 1"]
    properties.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SMM_CONFIG_FILE", str(properties))
    monkeypatch.setenv("SMM_FLOW", "C->B")  # a pair whose flow is not enabled: it emits all the same
    started = int(time.time() * 1000)
    context = ShortContext(function_name="smm-heartbeats")
    try:
        summary = handler.lambda_handler({}, context)
    finally:
        handler._cache.close()

    # It returned before the time Lambda would have killed it (the ceiling is the contract, not a measure) ...
    assert context.get_remaining_time_in_millis() > 0
    # ... after looping: 5 s of budget, a heartbeat at 0, 1, 2, 3 and 4 s at most; at least two even when a slow
    # machine makes a run late (a late run is not made up for with a burst)
    emitted = summary["C->B"]["emitted"]
    assert 2 <= emitted <= 5 and summary["C->B"]["failed"] == 0, summary
    sent = [h for h, _ in heartbeats_since(kafka_clusters["B"], "heartbeats", started) if h.source_cluster_alias == "C"]
    assert len(sent) == emitted
    stamps = sorted(h.timestamp for h in sent)
    assert all(b - a >= 500 for a, b in itertools.pairwise(stamps)), stamps  # about a second apart, never a burst


# --- flow health: heartbeat age and source lag (what the deployed alarms watch) ---------------------------


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    """``per_partition[p]`` records into partition ``p`` of a new ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(topic, num_partitions=len(per_partition), replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=[bootstrap])
    for partition, count in per_partition.items():
        for i in range(count):
            producer.send(topic, value=f"v{i}".encode(), partition=partition)
    producer.flush()
    producer.close()


def test_source_lag_is_what_the_mapping_groups_have_not_consumed(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic = f"{unique_prefix}-orders"
    produce(kafka_clusters["A"], topic, {0: 5, 1: 3})
    # only this test's topic: the shared heartbeats topic has a lag no test controls
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, heartbeats__replication__enabled="false")
    latest = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}.*"},
        heartbeats__replication__enabled="false",
        smm__starting__position="LATEST",
    )
    clients = KafkaClients(cfg)
    try:
        flow = cfg.flow("A", "B")
        task = monitor.FlowHealthTask(flow, clients, heartbeats=False)
        # no mapping has committed: TRIM_HORIZON reads everything there is
        assert task.run_once() == {"flow": "A->B", "sourceLag": 8}
        alter_offsets(clients, "A", flow.consumer_group_id(topic), {TopicPartition(topic, 0): (2, "")})
        assert task.run_once()["sourceLag"] == 3 + 3
        # LATEST: the uncommitted partition will be read from its end, so none of it is lag
        assert monitor.FlowHealthTask(latest.flow("A", "B"), clients, heartbeats=False).run_once()["sourceLag"] == 3
    finally:
        clients.close()


def test_heartbeat_age_is_that_of_the_newest_heartbeat_that_crossed(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    clients = KafkaClients(cfg)
    try:
        task = monitor.tasks_for(cfg, clients)["A->B"]
        assert task.heartbeats  # B->A and C->A emit into A; A->B mirrors them to A.heartbeats on B
        started = int(time.time() * 1000)

        def crossed_since_start() -> dict[str, Any] | None:
            measured = task.run_once()
            age = measured.get("heartbeatAgeMs")
            return measured if age is not None and int(time.time() * 1000) - age >= started else None

        with running(cfg):
            measured = wait_until("a heartbeat emitted after the start crosses A->B", crossed_since_start)
        assert measured is not None and "errors" not in measured and 0 <= measured["heartbeatAgeMs"] < 120_000
    finally:
        clients.close()


def test_no_heartbeat_age_before_any_crossed(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    source, target = fresh_aliases(unique_prefix)  # S... -> T...: no S....heartbeats on the target yet
    cfg = make_config({source: kafka_clusters["A"], target: kafka_clusters["B"]}, {f"{source}->{target}": "none"})
    clients = KafkaClients(cfg)
    try:
        measured = monitor.tasks_for(cfg, clients)[f"{source}->{target}"].run_once()
    finally:
        clients.close()
    assert measured["heartbeatAgeMs"] is None and "errors" not in measured


def test_a_measure_that_fails_is_logged_and_left_out(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    # the source is a closed port: the lag cannot be read, the heartbeat age (from the target) still is
    cfg = make_config({"A": "127.0.0.1:1", "B": kafka_clusters["B"]}, {"A->B": f"{unique_prefix}.*"})
    clients = KafkaClients(cfg)
    try:
        measured = monitor.FlowHealthTask(cfg.flow("A", "B"), clients, heartbeats=True).run_once()
    finally:
        clients.close()
    assert "sourceLag" not in measured and "heartbeatAgeMs" in measured
    (error,) = measured["errors"]
    assert error.startswith("sourceLag: ClusterError: ") and "'A'" in error


def test_lambda_handler_publishes_each_flows_health_with_its_flow_dimension(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"{unique_prefix}-orders"
    produce(kafka_clusters["A"], topic, {0: 4})
    properties = tmp_path / "mm2.properties"
    lines = [f"{alias}.bootstrap.servers = {servers}" for alias, servers in kafka_clusters.items()]
    lines += [f"{key} = {value}" for key, value in SINGLE_BROKER.items()]
    lines += [
        f"clusters = {', '.join(kafka_clusters)}",
        "A->B.enabled = true",
        f"A->B.topics = {unique_prefix}.*",
        "A->B.heartbeats.replication.enabled = false",
    ]
    properties.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SMM_CONFIG_FILE", str(properties))
    monkeypatch.setenv("SMM_FLOW", "A->B")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(handler, "budget_seconds", lambda context: 1.0)  # one pass of heartbeats, not 55 s
    handler.metrics.clear_metrics()  # what earlier tests added while metrics were disabled (never flushed)
    try:
        handler.lambda_handler({}, emulator.LambdaContext(function_name="smm-heartbeats", timeout_seconds=120))
    finally:
        handler._cache.close()

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (health,) = [b for b in blobs if "SourceLag" in b]
    assert health["SourceLag"] == [4] and health["Flow"] == "A->B" and health["service"] == "smm-heartbeats"
    assert "HeartbeatAge" not in health  # A->B does not mirror heartbeats here
    (totals,) = [b for b in blobs if "HeartbeatsEmitted" in b]
    assert "Flow" not in totals and totals["HeartbeatsEmitted"] == [1]  # one pass: one heartbeat
