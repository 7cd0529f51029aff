"""The mirror handler invoked directly with ESM events on real brokers: rules for bad input, size, filters, gaps."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics
from kafka import KafkaAdminClient, TopicPartition

from functions.mirror.handler import build_handler
from functions.mirror.mirror import Mirror, OversizedRecordError, TopicNotMirroredError
from shared.aws.esm_event import EventError, SourceRecord, build_event
from shared.cli.failover import flow_status
from shared.kafka.clients import KafkaClients
from shared.local.emulator import LambdaContext
from shared.mm2.config import MirrorConfig
from shared.mm2.gaps import GapEvent
from tests.kafka.support import make_config, read_all

pytestmark = pytest.mark.kafka


def _handler(cfg: MirrorConfig, flow: str = "A->B") -> tuple[Any, Mirror]:
    source, target = flow.split("->")
    mirror = Mirror(cfg.flow(source, target), KafkaClients(cfg))
    return build_handler(lambda: mirror, EphemeralMetrics(namespace="ServerlessMirrorMaker")), mirror


def _records(topic: str, offsets: range, value: bytes = b"v", partition: int = 0) -> list[SourceRecord]:
    now = int(time.time() * 1000)
    return [SourceRecord(topic, partition, o, now, "CREATE_TIME", b"k%d" % o, value, []) for o in offsets]


def _create(bootstrap: str, topic: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    finally:
        admin.close()


def test_handler_mirrors_and_publishes_emf_metrics(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"{unique_prefix}.m"
    _create(kafka_clusters["A"], topic, partitions=2)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    handler, _ = _handler(cfg)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    event = build_event(_records(topic, range(5)) + _records(topic, range(3), partition=1), [kafka_clusters["A"]])

    result = handler(event, LambdaContext("smm-mirror-A-B"))

    assert result["mirrored"] == 8 and result["offsetSyncs"] == 4
    assert len(read_all(kafka_clusters["B"], f"A.{topic}", 8)) == 8
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "no EMF metrics were printed"
    names = {m["Name"] for d in emf[-1]["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Records", "Bytes", "OffsetSyncs", "BatchLatency", "RecordAge", "Gaps", "SkippedRecords"} <= names
    records = emf[-1]["Records"]
    assert emf[-1]["Flow"] == "A->B" and (records if isinstance(records, list) else [records]) == [8]


def test_malformed_event_fails_before_anything_is_written(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.bad"
    _create(kafka_clusters["A"], topic)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    handler, _ = _handler(cfg)
    event = build_event(_records(topic, range(3)), [kafka_clusters["A"]])
    event["records"][f"{topic}-0"][2]["value"] = "%%%not-base64"

    with pytest.raises(EventError, match=rf"record {topic}-0@2: field 'value' is not valid base64"):
        handler(event, LambdaContext("smm-mirror-A-B"))
    assert read_all(kafka_clusters["B"], f"A.{topic}", timeout=2) == []


def test_oversized_record_fails_the_batch_by_default(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.big"
    _create(kafka_clusters["A"], topic)
    _create(kafka_clusters["B"], f"A.{topic}", configs={"max.message.bytes": "2000"})
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    handler, _ = _handler(cfg)
    records = _records(topic, range(2)) + _records(topic, range(2, 3), value=b"x" * 5000)

    with pytest.raises(OversizedRecordError, match=rf"record {topic}-0@2 is \d+ bytes .* max.message.bytes=2000"):
        handler(build_event(records, [kafka_clusters["A"]]), LambdaContext("smm-mirror-A-B"))


def test_oversized_record_dead_lettered_when_configured(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.big"
    dlq = f"{unique_prefix}.dlq"
    _create(kafka_clusters["A"], topic)
    _create(kafka_clusters["B"], f"A.{topic}", configs={"max.message.bytes": "2000"})
    cfg = make_config(
        kafka_clusters,
        {"A->B": f"{unique_prefix}.*"},
        **{"smm.oversized.record.action": "dead-letter", "smm.dead.letter.topic": dlq},
    )
    handler, _ = _handler(cfg)
    records = _records(topic, range(2)) + _records(topic, range(2, 3), value=b"x" * 5000) + _records(topic, range(3, 4))

    result = handler(build_event(records, [kafka_clusters["A"]]), LambdaContext("smm-mirror-A-B"))

    assert result["mirrored"] == 3 and result["deadLettered"] == 1
    assert [r.key for r in read_all(kafka_clusters["B"], f"A.{topic}", 3)] == [b"k0", b"k1", b"k3"]
    (dead,) = read_all(kafka_clusters["B"], dlq, 1)
    headers = dict(dead.headers)
    assert dead.value is None and dead.key == b"k2"
    assert headers["smm.source.topic"] == topic.encode() and headers["smm.source.offset"] == b"2"


def test_a_batch_of_a_filtered_or_looping_topic_fails_whole(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    """A mapping that delivers a topic the flow does not mirror is stale: the invocation fails (the group keeps
    its position) and nothing of the batch reaches the target, not even the records of mirrored topics."""
    cfg = make_config(kafka_clusters, {"A->B": f"(B\\.)?{unique_prefix}\\.keep"})
    handler, _ = _handler(cfg)
    _create(kafka_clusters["A"], f"{unique_prefix}.keep")
    kept = _records(f"{unique_prefix}.keep", range(1))
    for stale, reason in ((f"{unique_prefix}.other", "filtered"), (f"B.{unique_prefix}.keep", "cycle")):
        with pytest.raises(TopicNotMirroredError, match=rf"{re.escape(stale)}'? \({reason}\)"):
            event = build_event(kept + _records(stale, range(2)), [kafka_clusters["A"]])
            handler(event, LambdaContext("smm-mirror-A-B"))
    topics = KafkaClients(cfg).topics("B")
    assert not {f"A.{unique_prefix}.other", f"A.B.{unique_prefix}.keep", f"A.{unique_prefix}.keep"} & set(topics)
    result = handler(build_event(kept, [kafka_clusters["A"]]), LambdaContext("smm-mirror-A-B"))
    assert result["mirrored"] == 1


def test_records_deleted_before_mirroring_are_reported_as_a_gap(
    kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    topic = f"{unique_prefix}.gap"
    _create(kafka_clusters["A"], topic)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    clients = KafkaClients(cfg)
    producer = clients.producer("A")
    for i in range(20):
        producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
    producer.flush()
    handler, _ = _handler(cfg)
    handler(build_event(_records(topic, range(10)), [kafka_clusters["A"]]), LambdaContext("f"))
    # retention removes 10..14 before the flow reads them
    clients.admin("A").delete_records({TopicPartition(topic, 0): 15})

    result = handler(build_event(_records(topic, range(15, 20)), [kafka_clusters["A"]]), LambdaContext("f"))

    assert result["gaps"] == 1 and result["gapRecords"] == 5
    (gap,) = [r for r in read_all(kafka_clusters["B"], "mm2-gaps.A.internal") if r.key == f"{topic}-0".encode()]
    assert GapEvent.deserialize(gap.value or b"") == GapEvent(topic, 0, 10, 15, 5, gap.timestamp)
    status = flow_status(KafkaClients(cfg), cfg.flow("A", "B"))
    assert status["gaps"]["events"] >= 1 and status["gaps"]["lostRecords"] >= 5
    # compaction-like jump with the log start untouched: no gap
    result = handler(build_event(_records(topic, range(22, 23)), [kafka_clusters["A"]]), LambdaContext("f"))
    assert result["gaps"] == 0
    clients.close()


def test_remote_topic_grows_with_new_source_partitions(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}.grow"
    _create(kafka_clusters["A"], topic, partitions=1)
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    handler, _ = _handler(cfg)
    handler(build_event(_records(topic, range(2)), [kafka_clusters["A"]]), LambdaContext("f"))
    KafkaAdminClient(bootstrap_servers=kafka_clusters["A"]).create_partitions({topic: 3})

    handler(build_event(_records(topic, range(1), partition=2), [kafka_clusters["A"]]), LambdaContext("f"))

    info = KafkaClients(cfg).topic_info("B", f"A.{topic}")
    assert info is not None and info.partitions == 3
    assert [r.partition for r in read_all(kafka_clusters["B"], f"A.{topic}", 3)].count(2) == 1
