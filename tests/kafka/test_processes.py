"""``smm run --processes N``: peer processes share each topic's partitions through the ESM consumer groups."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.kafka_clients import KafkaClients
from tests.kafka.faults import (
    FaultResult,
    SmmProcess,
    SteadyProducer,
    properties,
    records,
    wait_drained,
    write_properties,
)

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
            producer.wait_done(60)
            produced = producer.stop()
            wait_drained(clients, flow, [topic], 90, smm.tail)
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
