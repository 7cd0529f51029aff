"""What makes the raised collector threshold safe (``functions.mirror.collector``): a mirrored batch leaves no
cyclic garbage behind, so reference counting frees it whole, whatever the collector's pace."""

from __future__ import annotations

import gc
import time

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics
from kafka import KafkaAdminClient

from functions.mirror.handler import build_handler
from functions.mirror.mirror import Mirror
from shared.aws.esm_event import SourceRecord, build_event
from shared.kafka.clients import KafkaClients
from shared.local.emulator import LambdaContext
from tests.kafka.support import make_config, read_all

pytestmark = pytest.mark.kafka

BATCHES = 20
RECORDS = 500
# What a batch of RECORDS records with two headers each would leave if its records were cyclic: ~5 containers each.
CYCLIC_IF_LEAKING = BATCHES * RECORDS * 5


@pytest.mark.parametrize("backend", ["confluent-kafka", "kafka-python"])
def test_mirrored_batches_leave_no_cyclic_garbage(
    kafka_clusters: dict[str, str], unique_prefix: str, backend: str
) -> None:
    topic = f"{unique_prefix}.gc"
    admin = KafkaAdminClient(bootstrap_servers=kafka_clusters["A"])
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"}, **{"smm.producer.backend": backend})
    mirror = Mirror(cfg.flow("A", "B"), KafkaClients(cfg))
    handler = build_handler(lambda: mirror, EphemeralMetrics(namespace="ServerlessMirrorMaker"))
    context = LambdaContext("smm-mirror-A-B")
    headers = [("trace", b"t" * 16), ("origin", b"o" * 8)]

    def event(n: int) -> dict[str, object]:
        now = int(time.time() * 1000)
        offsets = range(n * RECORDS, (n + 1) * RECORDS)
        records = [SourceRecord(topic, o % 2, o // 2, now, "CREATE_TIME", b"k", b"v" * 64, headers) for o in offsets]
        return build_event(records, [kafka_clusters["A"]])

    try:
        handler(event(0), context)  # the first batch creates the clients, producers and caches
        gc.collect()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for n in range(1, BATCHES + 1):
                assert handler(event(n), context)["mirrored"] == RECORDS
            cyclic = gc.collect()
        finally:
            if was_enabled:
                gc.enable()
        assert len(read_all(kafka_clusters["B"], f"A.{topic}", (BATCHES + 1) * RECORDS)) == (BATCHES + 1) * RECORDS
        # a few cycles per batch (an exception's traceback, a logger record) are the collector's to find
        assert cyclic < BATCHES * 200 < CYCLIC_IF_LEAKING, f"{cyclic} objects in cycles after {BATCHES} batches"
    finally:
        mirror.close()
