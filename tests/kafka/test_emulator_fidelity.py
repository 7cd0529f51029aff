"""The emulated event-source mapping on real brokers, setting by setting, as a deployment's mapping behaves.

A wrapper around the real mirror handler raises for every batch holding a record whose value is ``poison`` (or for
every batch while a test blocks the target), and logs each invocation. The emulator runs as ``smm run`` does, with
the ``MappingOptions`` a deploy settings file would give the flow, and a short backoff so that retries are quick.
What is checked is the mapping's side: the consumer group's committed offset on the source, the on-failure
topic, the invocations and the run's totals.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError

from functions.mirror.handler import Handler, build_handler
from functions.mirror.mirror import Mirror
from shared.aws.config_source import EventSourceTemplate, ProvisionedPollers
from shared.aws.esm_event import MirrorPayload, SourceRecord, batch_records
from shared.kafka.clients import KafkaClients
from shared.local import emulator
from shared.local.emulator import FlowRunner, FlowTotals, MappingOptions
from shared.local.esm_policy import RETRIES_EXHAUSTED, GiveUp
from shared.local.failure_destinations import DestinationError, FailedInvocation, KafkaTopicDestination
from shared.mm2.config import FlowConfig, MirrorConfig
from tests.kafka.support import keeps_holding, make_config, read_all, topic_exists, wait_until

pytestmark = [
    pytest.mark.kafka,
    # A failed invocation has no metrics to flush; Powertools warns about that, as it would in Lambda.
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
]

POISON = b"poison"
POISON_OFFSET = 5
RECORDS = 10
PROVISIONED = ProvisionedPollers(1, 1)  # what the deploy settings require for these options
QUICK = 0.05  # backoff cap: retries in tests take milliseconds, not seconds


class InjectedFailure(RuntimeError):
    """What the wrapped handler raises: the batch held a poison record, or the test blocks every batch."""


@dataclass(frozen=True)
class Invocation:
    offsets: tuple[int, ...]
    failed: bool


@dataclass
class Handlers:
    """Wraps every handler the emulator builds: fails batches of the test's topics (``prefix``) holding a poison
    record, or all of them while ``blocked``; logs those invocations (the flow's heartbeats pass untouched)."""

    prefix: str
    blocked: threading.Event = field(default_factory=threading.Event)
    log: list[Invocation] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = build_handler  # what the emulator calls, by this name, for each poller's handler

        def building(*args: Any, **kwargs: Any) -> Handler:
            handler = real(*args, **kwargs)

            def poisoned(event: MirrorPayload, context: Any) -> dict[str, Any]:
                records = batch_records(event)
                if not records[0].topic.startswith(self.prefix):
                    return handler(event, context)
                offsets = tuple(r.offset for r in records)
                if self.blocked.is_set() or any(r.value == POISON for r in records):
                    self.log.append(Invocation(offsets, failed=True))
                    raise InjectedFailure(f"injected: batch {offsets}")
                report = handler(event, context)
                self.log.append(Invocation(offsets, failed=False))
                return report

            return poisoned

        monkeypatch.setattr(emulator, "build_handler", building)

    def failed(self) -> list[tuple[int, ...]]:
        return [i.offsets for i in list(self.log) if i.failed]

    def delivered(self) -> set[int]:
        return {o for i in list(self.log) if not i.failed for o in i.offsets}


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch, unique_prefix: str) -> Handlers:
    wrapped = Handlers(unique_prefix)
    wrapped.install(monkeypatch)
    return wrapped


@dataclass(frozen=True)
class Source:
    cfg: MirrorConfig
    topic: str
    failures: str  # the failure topic's name (on A)

    def committed(self) -> int:
        """The flow's mapping group's committed offset of partition 0: 0 while it has none (it starts there), -1
        while the group's coordinator is not available yet."""
        clients = KafkaClients(self.cfg)
        try:
            group = self.cfg.flow("A", "B").consumer_group_id(self.topic)
            return clients.committed_offsets("A", group).get(TopicPartition(self.topic, 0), 0)
        except KafkaError:
            return -1
        finally:
            clients.close()


def _source(
    kafka_clusters: dict[str, str],
    prefix: str,
    batch_size: int,
    poison: bool = True,
    timestamps: Callable[[int], int | None] | None = None,
    backend: str = "kafka-python",
) -> Source:
    """One partition on A holding v0..v9, with ``poison`` at offset 5 instead (``timestamps``: offset -> time).

    ``backend`` (``smm.producer.backend``) also chooses the emulated mapping's consumer library."""
    topic = f"{prefix}.orders"
    settings = {"smm.batch.size": str(batch_size), "smm.producer.backend": backend}
    cfg = make_config(kafka_clusters, {"A->B": re.escape(topic)}, **settings)
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic("A", topic, 1, 1)
        producer = clients.producer("A")
        for i in range(RECORDS):
            value = POISON if poison and i == POISON_OFFSET else b"v%d" % i
            stamp = timestamps(i) if timestamps else None
            producer.send(topic, key=b"k%d" % i, value=value, partition=0, timestamp_ms=stamp)
        producer.flush()
    finally:
        clients.close()
    return Source(cfg, topic, f"{prefix}-failed")


@contextmanager
def emulating(source: Source, template: EventSourceTemplate) -> Iterator[dict[str, FlowTotals]]:
    """``smm run`` in-process with ``template`` as the flow's mapping settings; yields its totals (set at the end)."""
    totals: dict[str, FlowTotals] = {}
    stop = threading.Event()
    mappings: Mapping[str, MappingOptions] = {"A->B": MappingOptions(template, max_backoff_seconds=QUICK)}

    def run() -> None:
        totals.update(
            emulator.run(source.cfg, stop=stop, progress_seconds=3600, refresh_seconds=1.0, mappings=mappings)
        )

    thread = threading.Thread(target=run, name="smm-run", daemon=True)
    thread.start()
    try:
        yield totals
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive(), "the runtime did not stop within 120 s"


def _failure_messages(kafka_clusters: dict[str, str], source: Source, expected: int) -> list[dict[str, Any]]:
    messages = read_all(kafka_clusters["A"], source.failures, expected)
    documents = []
    for m in messages:
        document = json.loads(m.value or b"")
        document["key"] = m.key
        documents.append(document)
    return documents


def _given_up_offsets(documents: list[dict[str, Any]]) -> list[int]:
    return sorted(int(d["KafkaBatchInfo"]["recordInfo"]["offset"]) for d in documents)


# --- retries ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retries", "invocations"), [(2, 3), (-1, 11)], ids=["limit-2", "unlimited-with-destination"])
def test_exhausted_retries_give_the_batch_up_to_the_failure_topic_and_move_on(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers, retries: int, invocations: int
) -> None:
    """With a limit, or with -1 and a destination (Lambda caps that at 10 retries), the failing batch is invoked
    1 + retries times, written to the failure topic record by record, committed past, and the next one delivered."""
    source = _source(kafka_clusters, unique_prefix, batch_size=4)
    template = EventSourceTemplate(
        "local", pollers=PROVISIONED, on_failure=f"kafka://{source.failures}", max_retry_attempts=retries
    )
    with emulating(source, template) as totals:
        wait_until("the group committed past every record", lambda: source.committed() == RECORDS)
        wait_until("the records after the given-up batch delivered", lambda: RECORDS - 1 in handlers.delivered())
    failed = handlers.failed()
    given_up = set(failed[0])
    assert POISON_OFFSET in given_up and failed == [failed[0]] * invocations, failed
    assert handlers.delivered() == set(range(RECORDS)) - given_up

    # Config sync created the failure topic, as in a deployment; Lambda's document per record is on it.
    assert topic_exists(source.cfg, "A", source.failures)
    documents = _failure_messages(kafka_clusters, source, len(given_up))
    assert _given_up_offsets(documents) == sorted(given_up)
    for document in documents:
        context, info = document["requestContext"], document["KafkaBatchInfo"]
        assert (context["condition"], context["approximateInvokeCount"]) == (RETRIES_EXHAUSTED, invocations)
        assert info["batchSize"] == len(given_up) and info["bootstrapServers"] == kafka_clusters["A"]
        [record] = document["payload"]["records"][f"{source.topic}-0"]
        offset = int(info["recordInfo"]["offset"])
        assert record["offset"] == offset and document["key"] == b"k%d" % offset
        assert base64.b64decode(record["value"]) == (POISON if offset == POISON_OFFSET else b"v%d" % offset)

    flow = totals["A->B"]
    assert (flow.failed_batches, flow.given_up_batches) == (invocations, 1)
    assert flow.given_up_records == flow.sent_to_destination == len(given_up)
    landed = {r.value for r in read_all(kafka_clusters["B"], f"A.{source.topic}", RECORDS - len(given_up))}
    assert {b"v%d" % o for o in handlers.delivered()} <= landed


@pytest.mark.parametrize("backend", ["kafka-python", "confluent-kafka"])
def test_lambdas_defaults_never_give_up(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers, backend: str
) -> None:
    """No limit, no age, no destination: the failing batch is retried for as long as it fails, and the group stays
    where it is (with either client library, whose consumer waits between retries without fetching)."""
    source = _source(kafka_clusters, unique_prefix, batch_size=4, backend=backend)
    with emulating(source, emulator.LAMBDA_DEFAULTS) as totals:
        wait_until("the failing batch retried 20 times", lambda: len(handlers.failed()) >= 20)
        stuck = min(handlers.failed()[0])
        wait_until("what precedes the failing batch committed", lambda: source.committed() == stuck)
        keeps_holding("the group does not move past the failing batch", lambda: source.committed() == stuck, seconds=5)
        assert len(set(handlers.failed())) == 1  # the very same batch, again and again
        before = len(handlers.failed())
        wait_until("still retrying", lambda: len(handlers.failed()) > before)
    flow = totals["A->B"]
    assert flow.given_up_batches == flow.given_up_records == 0
    assert flow.failed_batches == len(handlers.failed()) and POISON_OFFSET not in handlers.delivered()


# --- maximum record age -------------------------------------------------------------------------------------


def test_records_over_the_maximum_age_are_given_up_and_fresh_ones_retried(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers
) -> None:
    """Offsets 0-4 were written two hours ago, 5-9 now; while the target is down, a failed invocation gives the old
    ones up (committed past them) and retries the fresh ones until they are delivered."""
    now = int(time.time() * 1000)
    source = _source(
        kafka_clusters, unique_prefix, RECORDS, poison=False, timestamps=lambda i: now - 7_200_000 if i < 5 else None
    )
    handlers.blocked.set()
    template = EventSourceTemplate("local", pollers=PROVISIONED, max_record_age_seconds=60)
    with emulating(source, template) as totals:
        wait_until("the old records committed past", lambda: source.committed() == 5)
        keeps_holding("the fresh ones are retried, not given up", lambda: source.committed() == 5, seconds=3)
        assert len(handlers.failed()) >= 3 and handlers.delivered() == set()
        handlers.blocked.clear()
        wait_until("the fresh records delivered", lambda: source.committed() == RECORDS)
    assert handlers.delivered() == set(range(5, RECORDS))
    flow = totals["A->B"]
    assert (flow.given_up_batches, flow.given_up_records, flow.sent_to_destination) == (1, 5, 0)


# --- bisect on error ----------------------------------------------------------------------------------------


def test_bisect_with_a_retry_limit_gives_up_the_poison_record_alone(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers
) -> None:
    source = _source(kafka_clusters, unique_prefix, batch_size=8)
    template = EventSourceTemplate(
        "local",
        pollers=PROVISIONED,
        on_failure=f"kafka://{source.failures}",
        max_retry_attempts=1,
        bisect_batch_on_error=True,
    )
    with emulating(source, template) as totals:
        wait_until("the group committed past every record", lambda: source.committed() == RECORDS)
    assert handlers.delivered() == set(range(RECORDS)) - {POISON_OFFSET}
    assert handlers.failed()[-2:] == [(POISON_OFFSET,)] * 2  # alone, then once retried
    [document] = _failure_messages(kafka_clusters, source, 1)
    assert _given_up_offsets([document]) == [POISON_OFFSET]
    assert document["requestContext"]["approximateInvokeCount"] == len(handlers.failed())
    flow = totals["A->B"]
    assert (flow.given_up_batches, flow.given_up_records, flow.sent_to_destination) == (1, 1, 1)


def test_bisect_without_a_limit_isolates_the_poison_record_and_holds_what_follows(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers
) -> None:
    source = _source(kafka_clusters, unique_prefix, batch_size=8)
    template = EventSourceTemplate("local", pollers=PROVISIONED, bisect_batch_on_error=True)
    with emulating(source, template) as totals:
        wait_until("the poison record retried alone", lambda: handlers.failed()[-3:] == [(POISON_OFFSET,)] * 3)
        wait_until("its predecessors committed", lambda: source.committed() == POISON_OFFSET)
        keeps_holding("the group waits at the poison record", lambda: source.committed() == POISON_OFFSET, seconds=3)
    assert handlers.delivered() == set(range(POISON_OFFSET))  # those after it wait behind it, in order
    assert totals["A->B"].given_up_records == 0


# --- batch size, destinations, wiring ----------------------------------------------------------------------


def test_batch_size_caps_each_invocation(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers
) -> None:
    topic = f"{unique_prefix}.many"
    cfg = make_config(kafka_clusters, {"A->B": re.escape(topic)}, **{"smm.batch.size": "7"})
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic("A", topic, 2, 1)
        producer = clients.producer("A")
        for i in range(60):
            producer.send(topic, key=b"k%d" % i, value=b"v%d" % i)
        producer.flush()
    finally:
        clients.close()
    source = Source(cfg, topic, "")
    with emulating(source, emulator.LAMBDA_DEFAULTS):
        wait_until("every record delivered", lambda: sum(len(i.offsets) for i in handlers.log) >= 60)
    sizes = [len(i.offsets) for i in handlers.log]
    assert max(sizes) == 7 and sum(sizes) == 60, sizes


def test_other_destinations_get_one_metadata_line_on_stderr(
    kafka_clusters: dict[str, str], unique_prefix: str, handlers: Handlers, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQS, SNS and S3 do not exist locally: the metadata document Lambda would send, printed and counted."""
    source = _source(kafka_clusters, unique_prefix, batch_size=4)
    queue = "arn:aws:sqs:eu-west-1:123456789012:smm-failed"
    template = EventSourceTemplate("local", pollers=PROVISIONED, on_failure=queue, max_retry_attempts=0)
    with emulating(source, template) as totals:
        wait_until("the group committed past every record", lambda: source.committed() == RECORDS)
    [line] = [line for line in capsys.readouterr().err.splitlines() if "(not emulated): " in line]
    assert line.startswith(f"A->B: on-failure destination {queue} (not emulated): ")
    document = json.loads(line.split("(not emulated): ", 1)[1])
    [failed] = handlers.failed()
    info = document["KafkaBatchInfo"]["recordsInfo"][f"{source.topic}-0"]
    assert (int(info["firstRecordOffset"]), int(info["lastRecordOffset"])) == (min(failed), max(failed))
    assert "payload" not in document and document["requestContext"]["approximateInvokeCount"] == 1
    assert totals["A->B"].sent_to_destination == len(failed)


def test_a_missing_failure_topic_is_an_error_not_created(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    source = _source(kafka_clusters, unique_prefix, batch_size=4)
    clients = KafkaClients(source.cfg)
    record = SourceRecord(source.topic, 0, 5, 0, "CREATE_TIME", b"k5", POISON, [])
    try:
        destination = KafkaTopicDestination(clients, source.cfg.flow("A", "B"), source.failures)
        invocation = FailedInvocation("req", "arn", [kafka_clusters["A"]])
        with pytest.raises(DestinationError, match=rf"kafka://{source.failures}: there is no topic .* cluster 'A'"):
            destination.send(GiveUp((record,), RETRIES_EXHAUSTED, 1), invocation)
        assert not topic_exists(source.cfg, "A", source.failures)
    finally:
        clients.close()


def test_the_flows_mirror_and_config_sync_are_told_what_the_mappings_do(
    kafka_clusters: dict[str, str], unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror whose mappings may skip recovers what they skipped; config sync creates a Kafka failure topic."""
    cfg = make_config(kafka_clusters, {"A->B": f"{unique_prefix}.*"})
    flow = cfg.flow("A", "B")
    built: list[bool] = []
    real = Mirror

    def spied(flow: FlowConfig, clients: KafkaClients, recover_skipped: bool = False) -> Mirror:
        built.append(recover_skipped)
        return real(flow, clients, recover_skipped=recover_skipped)

    monkeypatch.setattr(emulator, "Mirror", spied)
    skipping = MappingOptions(EventSourceTemplate("local", pollers=PROVISIONED, on_failure="kafka://failed"))
    failure_topics = []
    for options in (emulator.DEFAULT_OPTIONS, skipping):
        runner = FlowRunner(flow, cfg, io.StringIO(), options)
        failure_topics.append(runner.failure_topic)
        runner.stop()
    assert built == [False, True] and failure_topics == [None, "failed"]
