"""The bad-input matrix on real brokers (issue 6, part 4; scenarios 21-24).

Each bad input must fail with an error that says what, where and why, and nothing after the bad record may be
committed. ``test_mirror_handler`` and ``tests/pure/test_esm_event`` already check the handler's and the
parser's messages; here a real ``TopicPoller`` (the emulated event-source mapping) drives the handler, so the
ESM group's committed offset is the one the emulator really commits, and ``smm run`` is run as a user would.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics
from kafka import TopicPartition

from functions.mirror.handler import build_handler
from functions.mirror.mirror import Mirror
from shared.cli.commands import main
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import list_groups
from shared.local.emulator import MappingOptions, TopicPoller
from shared.mm2.config import MirrorConfig
from tests.kafka.support import make_config, read_all, run_flows

pytestmark = [
    pytest.mark.kafka,
    # A failed invocation has no metrics to flush; Powertools warns about that, as it would in Lambda.
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
]

RECORDS = 10
BAD_OFFSET = 5
BATCH = "4"  # batches 0-3, 4-7, 8-9: the bad record sits in the middle of the second one


# --- driving one emulated ESM ----------------------------------------------------------------------------


@dataclass
class PollerRun:
    """What one emulated ESM did: reports of good batches, errors of failed ones, and where those started."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    failed_batch_starts: list[int] = field(default_factory=list)
    committed: int = -1


EventEdit = Callable[[dict[str, Any], dict[str, Any]], None]  # (event, the bad record's JSON) -> None


def _first_offset(event: dict[str, Any]) -> int:
    return min(int(r["offset"]) for chunk in event["records"].values() for r in chunk)


def _drive(
    cfg: MirrorConfig, topic: str, done: Callable[[PollerRun], bool], edit: EventEdit | None = None
) -> PollerRun:
    """Run a TopicPoller for the flow A->B on ``topic`` until ``done``; ``edit`` spoils the event holding BAD_OFFSET.

    The edit stands for an event source (or a relay) that delivers a malformed event: the handler sees it exactly
    as it would arrive, and the poller commits, retries and rewinds as the emulated ESM does.
    """
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg, client_id=f"test-bad-input-{topic}")
    mirror = Mirror(flow, clients)
    metrics = EphemeralMetrics(namespace="ServerlessMirrorMaker", service="smm-mirror")
    handler = build_handler(lambda: mirror, metrics)
    run = PollerRun()

    def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bad = [r for chunk in event["records"].values() for r in chunk if r["offset"] == BAD_OFFSET]
        first = _first_offset(event)
        if edit is not None and bad:
            edit(event, bad[0])
        try:
            return handler(event, context)
        except Exception:
            run.failed_batch_starts.append(first)
            raise

    # Exact events: the handler gets the ESM event as Lambda's runtime hands it over, so an edit can spoil it.
    exact = MappingOptions(exact_events=True)
    poller = TopicPoller(flow, topic, clients, invoke, run.reports.append, run.failures.append, metrics, options=exact)
    poller.start()
    deadline = time.monotonic() + 45
    try:
        while not done(run) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        poller.stopping.set()
        poller.join(timeout=30)
    try:
        committed = clients.committed_offsets("A", flow.consumer_group_id(topic))
        run.committed = committed.get(TopicPartition(topic, 0), 0)
    finally:
        clients.close()
    return run


def _failed_twice(run: PollerRun) -> bool:
    """The bad batch failed, was redelivered and failed again: the poller is not skipping it."""
    return len(run.failed_batch_starts) >= 2


Source = Callable[..., tuple[MirrorConfig, str]]


@pytest.fixture
def source(kafka_clusters: dict[str, str], unique_prefix: str) -> Source:
    """``source(oversized=False, **flow settings)``: a topic on A holding v0..v9 and the flow A->B over it.

    ``oversized``: record 5 is 5000 bytes and the remote topic on B accepts at most 2000 (max.message.bytes).
    """

    def make(oversized: bool = False, **settings: str) -> tuple[MirrorConfig, str]:
        topic = f"{unique_prefix}.orders"
        cfg = make_config(kafka_clusters, {"A->B": re.escape(topic)}, **{"smm.batch.size": BATCH, **settings})
        clients = KafkaClients(cfg)
        try:
            clients.ensure_topic("A", topic, 1, 1)
            if oversized:
                clients.ensure_topic("B", f"A.{topic}", 1, 1, {"max.message.bytes": "2000"})
            producer = clients.producer("A")
            for i, value in enumerate(_values(RECORDS)):
                big = oversized and i == BAD_OFFSET
                producer.send(topic, key=b"k%d" % i, value=b"x" * 5000 if big else value, partition=0)
            producer.flush()
        finally:
            clients.close()
        return cfg, topic

    return make


def _values(n: int) -> list[bytes]:
    return [b"v%d" % i for i in range(n)]


# --- scenario 21: malformed events ----------------------------------------------------------------------


def _drop_timestamp(event: dict[str, Any], record: dict[str, Any]) -> None:
    del record["timestamp"]


def _bad_base64(event: dict[str, Any], record: dict[str, Any]) -> None:
    record["value"] = "%%%not-base64"


def _key_is_a_number(event: dict[str, Any], record: dict[str, Any]) -> None:
    record["key"] = 12


def _not_kafka(event: dict[str, Any], record: dict[str, Any]) -> None:
    event["eventSource"] = "aws:sqs"


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (_drop_timestamp, r"record {topic}-0@5: missing field 'timestamp'"),
        (_bad_base64, r"record {topic}-0@5: field 'value' is not valid base64 \(.+\)"),
        (_key_is_a_number, r"record {topic}-0@5: field 'key' must be a base64 string or null, got int"),
        (_not_kafka, r"eventSource 'aws:sqs' is not a Kafka event source \(allowed: aws:kafka, SelfManagedKafka"),
    ],
    ids=["missing-field", "bad-base64", "wrong-type", "unknown-event-source"],
)
def test_malformed_event_names_the_record_and_nothing_after_it_is_committed(
    source: Source, kafka_clusters: dict[str, str], edit: EventEdit, error: str
) -> None:
    cfg, topic = source()

    run = _drive(cfg, topic, _failed_twice, edit)

    assert _failed_twice(run), f"the bad batch did not fail twice: {run}"
    assert {type(e).__name__ for e in run.failures} == {"EventError"}
    assert re.search(error.format(topic=re.escape(topic)), str(run.failures[0])), str(run.failures[0])
    # The failing batch started at or before the bad record; the ESM group never committed past that start,
    # and the handler wrote nothing of it (it validates the whole event before mirroring any record).
    start = run.failed_batch_starts[0]
    assert start <= BAD_OFFSET and run.committed == start
    assert [r.value for r in read_all(kafka_clusters["B"], f"A.{topic}", start)] == _values(start)


# --- scenario 22: a record larger than the target's max.message.bytes ----------------------------------


def test_oversized_record_fails_its_batch_and_nothing_after_it_is_committed(
    source: Source, kafka_clusters: dict[str, str]
) -> None:
    """Rule ``smm.oversized.record.action = fail`` (the default): the batch fails every time it is delivered."""
    cfg, topic = source(oversized=True)

    run = _drive(cfg, topic, _failed_twice)

    assert _failed_twice(run), f"the oversized batch did not fail twice: {run}"
    assert {type(e).__name__ for e in run.failures} == {"OversizedRecordError"}
    message = str(run.failures[0])
    assert f"record {topic}-0@{BAD_OFFSET} is " in message and "larger than max.message.bytes=2000" in message
    assert f"of remote topic 'A.{topic}' on cluster 'B'" in message
    assert "smm.oversized.record.action=dead-letter" in message
    start = run.failed_batch_starts[0]
    assert start <= BAD_OFFSET and run.committed == start
    # Records of the failing batch sent before the bad one may be on B already (at least once); none after it.
    mirrored = {r.value for r in read_all(kafka_clusters["B"], f"A.{topic}", start)}
    assert set(_values(start)) <= mirrored <= set(_values(BAD_OFFSET))


def test_oversized_record_is_dead_lettered_counted_and_committed_past(
    source: Source, kafka_clusters: dict[str, str], unique_prefix: str
) -> None:
    """Rule ``dead-letter``: the record's coordinates go to the dead-letter topic, the flow goes on."""
    dead_letters = f"{unique_prefix}.dead-letters"
    cfg, topic = source(
        oversized=True, **{"smm.oversized.record.action": "dead-letter", "smm.dead.letter.topic": dead_letters}
    )

    run = _drive(cfg, topic, lambda r: sum(report["records"] for report in r.reports) >= RECORDS)

    assert run.failures == [] and run.committed == RECORDS
    assert sum(report["deadLettered"] for report in run.reports) == 1
    assert sum(report["mirrored"] for report in run.reports) == RECORDS - 1
    mirrored = [r.value for r in read_all(kafka_clusters["B"], f"A.{topic}", RECORDS - 1)]
    assert mirrored == [v for i, v in enumerate(_values(RECORDS)) if i != BAD_OFFSET]
    (dead,) = read_all(kafka_clusters["B"], dead_letters, 1)
    headers = dict(dead.headers)
    assert headers["smm.source.topic"] == topic.encode() and headers["smm.source.offset"] == b"%d" % BAD_OFFSET
    assert headers["smm.reason"] == f"larger than max.message.bytes=2000 of A.{topic}".encode()


# --- scenario 23: invalid configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("A.security.protocol = TLS", "A.security.protocol = 'TLS': must be one of PLAINTEXT, SSL"),
        ("A->B.topics = {prefix}.(", "A->B.topics = '{prefix}.(': pattern '{prefix}.(' is not a valid regular"),
        ("replication.policy.class = com.example.Nope", "replication.policy.class = 'com.example.Nope': allowed:"),
        ("A->B.offset.lag.max = ten", "A->B.offset.lag.max = 'ten': allowed: a whole number >= 0"),
    ],
    ids=["bad-security-protocol", "bad-regex", "unknown-policy", "bad-number"],
)
def test_smm_run_rejects_invalid_config_before_anything_starts(
    source: Source,
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    error: str,
) -> None:
    """Exit 1 with the key and the reason; no consumer group on A, no remote topic on B: nothing started."""
    cfg, topic = source()
    path = tmp_path / "mm2.properties"
    path.write_text(
        "clusters = A, B\n"
        f"A.bootstrap.servers = {kafka_clusters['A']}\n"
        f"B.bootstrap.servers = {kafka_clusters['B']}\n"
        "replication.factor = 1\n"
        "A->B.enabled = true\n"
        f"A->B.topics = {re.escape(topic)}\n"
        f"{line.format(prefix=unique_prefix)}\n",
        encoding="utf-8",
    )

    started = time.monotonic()
    code = main(["run", str(path), "--duration", "120"])

    _, err = capsys.readouterr()
    # a run that started would have lasted its --duration of 120 s; a generous half of it shows it never did
    assert code == 1 and time.monotonic() - started < 60
    assert err.startswith("error: invalid configuration:") and error.format(prefix=unique_prefix) in err
    clients = KafkaClients(cfg)
    try:
        assert not [g for g in list_groups(clients, "A") if unique_prefix in g]
        assert not [t for t in clients.topics("B") if unique_prefix in t]
    finally:
        clients.close()


# --- scenario 24: an unreachable cluster ----------------------------------------------------------------


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_target_fails_fast_naming_the_cluster_and_commits_nothing(
    source: Source, kafka_clusters: dict[str, str], unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``smm run``'s runtime against a target nobody listens on: the error names X within seconds, retries."""
    _, topic = source()
    address = f"127.0.0.1:{_closed_port()}"
    cfg = make_config({"A": kafka_clusters["A"], "X": address}, {"A->X": re.escape(topic)})
    said = ""
    named_at: list[float] = []

    def named_x() -> bool:
        nonlocal said
        said += capsys.readouterr().err
        if f"cluster 'X' at {address} (security.protocol=PLAINTEXT) is unreachable" in said and not named_at:
            named_at.append(time.monotonic())
        return bool(named_at)

    started = time.monotonic()
    # The runtime keeps retrying (as a scheduled function would); stopping it waits out one more bootstrap.
    run_flows(cfg, until=named_x, timeout=90)

    assert named_x(), said[-2000:]
    # from the first bootstrap attempts (15 s each), not after minutes of retries; generous for a loaded machine
    assert named_at[0] - started < 45, f"the error took {named_at[0] - started:.0f} s"
    assert "check its bootstrap.servers and that the brokers are up" in said
    clients = KafkaClients(cfg)
    try:
        group = cfg.flow("A", "X").consumer_group_id(topic)
        assert group not in list_groups(clients, "A")  # offsets-only groups are listed too: nothing committed
    finally:
        clients.close()
