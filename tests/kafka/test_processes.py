"""Consumer groups of the emulated ESMs: peer processes share the partitions; a consumer that left is replaced."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics

from shared.kafka.clients import KafkaClients
from shared.local.emulator import TopicPoller
from shared.local.esm_consumers import esm_consumer
from tests.kafka.faults import (
    FaultResult,
    SmmProcess,
    SteadyProducer,
    properties,
    records,
    wait_drained,
    write_properties,
)
from tests.kafka.support import make_config

pytestmark = pytest.mark.kafka

QUIET = {"emit.checkpoints.enabled": "false", "A.consumer.session.timeout.ms": "6000"}
PROGRESS = re.compile(r"^\[process (\d)\] \[ *[\d.]+s\] A->B: \d+ topic\(s\), (\d+) records mirrored", re.MULTILINE)


def test_two_processes_share_the_partitions_and_lose_nothing(
    kafka_clusters: dict[str, str], unique_prefix: str, tmp_path: Path
) -> None:
    topic = f"{unique_prefix}.shared"
    path, log = tmp_path / "mm2.properties", tmp_path / "smm.log"
    cfg = write_properties(path, properties(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"}, **QUIET))
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic("A", topic, 6, 1)
        steady = SteadyProducer(kafka_clusters["A"], {topic: 6}, rate=300, total=4800)
        with steady as producer, SmmProcess(path, log, processes=2) as smm:
            producer.wait_done(120)
            produced = producer.stop()
            wait_drained(clients, flow, [topic], 180, smm.tail)
        result = FaultResult.tally(
            "two processes", "at-least-once", [(records(clients, "A", topic), records(clients, "B", f"A.{topic}"))]
        )
        assert result.produced == produced
        result.check()
        final: dict[str, int] = {}
        for process, mirrored in PROGRESS.findall(log.read_text()):
            final[process] = int(mirrored)  # the last progress line of each process holds its total
        assert set(final) == {"0", "1"} and all(final.values()), f"each process mirrored some records: {final}"
    finally:
        clients.close()


def test_a_consumer_that_dropped_out_of_its_group_is_replaced(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    """The poller's watchdog: a group without members means its consumer must be replaced."""
    topic = f"{unique_prefix}.orphan"
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}\\..*"})
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    poller = TopicPoller(flow, topic, clients, lambda *_: {}, print, print, EphemeralMetrics(namespace="test"))
    clients.ensure_topic("A", topic, 2, 1)
    consumer = esm_consumer(clients, flow, topic)
    try:
        deadline = time.monotonic() + 90  # a ceiling: it joins within seconds
        while not members(clients, poller.group_id) and time.monotonic() < deadline:
            consumer.poll_records(0.5, 10)
        poller._check_membership()  # in the group: nothing to do
    finally:
        consumer.close()  # leaves the group, as the stuck kafka-python consumer had been made to
    try:
        with pytest.raises(RuntimeError, match=r"reads nothing and group smm:A:B:.*orphan has no members"):
            poller._check_membership()
    finally:
        clients.close()


def members(clients: KafkaClients, group: str) -> list[object]:
    found: list[object] = clients.admin("A").describe_groups([group]).get(group, {}).get("members") or []
    return found
