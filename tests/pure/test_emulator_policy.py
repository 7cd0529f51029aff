"""The emulated event-source mapping's error handling, decided without Kafka: retries, record age, bisect, what may be
committed, the failure destination's documents, the batching window, the payload cap and the invocation context."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import pytest

from functions.mirror.mirror import BatchReport
from infra.settings import DEFAULT_FUNCTIONS
from shared.aws.config_source import EventSourceTemplate
from shared.aws.esm_event import SourceRecord, build_event
from shared.local.emulator import (
    MIRROR_TIMEOUT_SECONDS,
    FlowTotals,
    LambdaContext,
    batching_window_seconds,
    payload_bytes,
)
from shared.local.esm_policy import (
    RECORD_AGE_EXCEEDED,
    RETRIES_EXHAUSTED,
    BatchRun,
    ErrorHandling,
    GiveUp,
)
from shared.local.failure_destinations import FailedInvocation, batch_metadata, kafka_failure_records

NOW = 1_800_000_000_000
HOUR_MS = 3_600_000


def _records(
    offsets: Sequence[int], partition: int = 0, timestamp: int = NOW, topic: str = "orders"
) -> list[SourceRecord]:
    return [
        SourceRecord(topic, partition, o, timestamp, "CREATE_TIME", b"k%d" % o, b"v%d" % o, [("h", b"x")])
        for o in offsets
    ]


def _drive(
    run: BatchRun, fails: Callable[[list[SourceRecord]], bool], limit: int = 1000
) -> tuple[list[list[int]], list[GiveUp], int]:
    """Invoke until the run is done (or ``limit`` invocations): offsets delivered per successful invocation, what
    was given up, and the number of invocations."""
    delivered: list[list[int]] = []
    given_up: list[GiveUp] = []
    invocations = 0
    while (records := run.next()) is not None and invocations < limit:
        invocations += 1
        if fails(records):
            given_up += run.failed(NOW)
        else:
            delivered.append([r.offset for r in records])
            run.succeeded()
    return delivered, given_up, invocations


def _poison(offset: int) -> Callable[[list[SourceRecord]], bool]:
    return lambda records: any(r.offset == offset for r in records)


def always(records: list[SourceRecord]) -> bool:
    return True


# --- the settings as Lambda applies them ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (EventSourceTemplate("f"), ErrorHandling(None, None, False)),
        (EventSourceTemplate("f", max_retry_attempts=-1, max_record_age_seconds=-1), ErrorHandling(None, None, False)),
        (EventSourceTemplate("f", on_failure="kafka://failed"), ErrorHandling(10, None, False)),
        (EventSourceTemplate("f", on_failure="kafka://failed", max_retry_attempts=-1), ErrorHandling(10, None, False)),
        (EventSourceTemplate("f", on_failure="arn:aws:sqs:x", max_retry_attempts=3), ErrorHandling(3, None, False)),
        (EventSourceTemplate("f", max_retry_attempts=0), ErrorHandling(0, None, False)),
        (EventSourceTemplate("f", max_record_age_seconds=60), ErrorHandling(None, 60_000, False)),
        (EventSourceTemplate("f", bisect_batch_on_error=True), ErrorHandling(None, None, True)),
    ],
)
def test_settings_resolved_as_lambda_does(template: EventSourceTemplate, expected: ErrorHandling) -> None:
    assert ErrorHandling.of(template) == expected


# --- retries ----------------------------------------------------------------------------------------------


def test_defaults_retry_forever_and_commit_nothing() -> None:
    run = BatchRun(_records(range(10, 14)), ErrorHandling())
    delivered, given_up, invocations = _drive(run, always, limit=500)
    assert (delivered, given_up, invocations) == ([], [], 500)
    assert run.next() is not None and len(run.next() or []) == 4  # still the whole batch
    assert run.committable() == {("orders", 0): 10}


def test_a_retry_limit_gives_the_batch_up_after_the_first_attempt_and_its_retries() -> None:
    run = BatchRun(_records(range(10, 14)), ErrorHandling(max_retries=2))
    delivered, given_up, invocations = _drive(run, always)
    assert delivered == [] and invocations == 3
    assert [(g.condition, g.invocations, [r.offset for r in g.records]) for g in given_up] == [
        (RETRIES_EXHAUSTED, 3, [10, 11, 12, 13])
    ]
    assert run.next() is None and run.committable() == {("orders", 0): 14}


def test_zero_retries_gives_up_at_the_first_failure() -> None:
    _, given_up, invocations = _drive(BatchRun(_records([0]), ErrorHandling(max_retries=0)), always)
    assert invocations == 1 and given_up[0].invocations == 1


def test_a_batch_that_succeeds_on_a_retry_is_delivered_whole() -> None:
    failures = iter([True, True, False])
    run = BatchRun(_records(range(3)), ErrorHandling(max_retries=5))
    delivered, given_up, invocations = _drive(run, lambda records: next(failures))
    assert (delivered, given_up, invocations) == ([[0, 1, 2]], [], 3)
    assert run.committable() == {("orders", 0): 3}


# --- maximum record age -------------------------------------------------------------------------------------


def test_records_over_the_age_are_given_up_and_the_fresh_ones_retried() -> None:
    batch = _records(range(0, 3), timestamp=NOW - 2 * HOUR_MS) + _records(range(3, 6), timestamp=NOW - 1000)
    run = BatchRun(batch, ErrorHandling(max_record_age_ms=60_000))
    first = run.failed(NOW)
    assert [(g.condition, [r.offset for r in g.records]) for g in first] == [(RECORD_AGE_EXCEEDED, [0, 1, 2])]
    assert [r.offset for r in run.next() or []] == [3, 4, 5]
    assert run.committable() == {("orders", 0): 3}  # past the old records, not past the fresh ones
    for _ in range(50):
        assert run.failed(NOW) == []  # fresh: retried (no retry limit)
    # ... until they are too old as well
    later = run.failed(NOW + HOUR_MS)
    assert [(g.condition, [r.offset for r in g.records]) for g in later] == [(RECORD_AGE_EXCEEDED, [3, 4, 5])]
    assert run.next() is None and run.committable() == {("orders", 0): 6}


def test_an_old_record_behind_fresh_ones_is_committed_past_once_they_are_delivered() -> None:
    batch = _records([0, 1], timestamp=NOW) + _records([2], timestamp=NOW - 2 * HOUR_MS)
    run = BatchRun(batch, ErrorHandling(max_record_age_ms=60_000))
    assert [r.offset for g in run.failed(NOW) for r in g.records] == [2]
    assert run.committable() == {("orders", 0): 0}  # 0 and 1 are still to be delivered
    run.succeeded()
    assert run.committable() == {("orders", 0): 3}


def test_a_record_without_timestamp_never_ages() -> None:
    run = BatchRun(_records([0], timestamp=-1), ErrorHandling(max_record_age_ms=60_000))
    assert run.failed(NOW) == [] and run.next() is not None


def test_age_and_retry_limit_together() -> None:
    batch = _records([0], timestamp=NOW - 2 * HOUR_MS) + _records([1, 2], timestamp=NOW)
    _, given_up, invocations = _drive(BatchRun(batch, ErrorHandling(max_retries=1, max_record_age_ms=60_000)), always)
    assert invocations == 2
    assert [(g.condition, [r.offset for r in g.records], g.invocations) for g in given_up] == [
        (RECORD_AGE_EXCEEDED, [0], 1),
        (RETRIES_EXHAUSTED, [1, 2], 2),
    ]


# --- bisect on error ----------------------------------------------------------------------------------------


def test_bisect_with_a_retry_limit_gives_up_the_poison_record_only() -> None:
    run = BatchRun(_records(range(8)), ErrorHandling(max_retries=1, bisect=True))
    delivered, given_up, invocations = _drive(run, _poison(5))
    assert [o for batch in delivered for o in batch] == [0, 1, 2, 3, 4, 6, 7]  # in order
    assert [[r.offset for r in g.records] for g in given_up] == [[5]]
    assert given_up[0].condition == RETRIES_EXHAUSTED
    # 8 -> 4 -> 2 -> 1 record: three failed splits, then the poison record alone once and once retried
    assert given_up[0].invocations == 5
    assert invocations == 5 + 3  # plus [0-3], [4] and [6, 7] delivered
    assert run.committable() == {("orders", 0): 8}


def test_bisect_without_a_limit_isolates_the_poison_record_and_holds_what_follows() -> None:
    run = BatchRun(_records(range(8)), ErrorHandling(bisect=True))
    delivered, given_up, _ = _drive(run, _poison(5), limit=100)
    assert [o for batch in delivered for o in batch] == [0, 1, 2, 3, 4]
    assert given_up == []
    assert [r.offset for r in run.next() or []] == [5]  # retried alone, forever
    assert run.committable() == {("orders", 0): 5}


def test_a_split_is_not_a_retry() -> None:
    """With no retries at all, bisect still splits down to the poison record before giving it up."""
    run = BatchRun(_records(range(4)), ErrorHandling(max_retries=0, bisect=True))
    delivered, given_up, _ = _drive(run, _poison(2))
    assert [o for batch in delivered for o in batch] == [0, 1, 3]
    assert [[r.offset for r in g.records] for g in given_up] == [[2]]


def test_bisect_keeps_each_partitions_order() -> None:
    batch = _records(range(4), partition=0) + _records(range(4), partition=1)
    run = BatchRun(batch, ErrorHandling(max_retries=0, bisect=True))
    poison = {(0, 3), (1, 0)}
    delivered: list[tuple[int, int]] = []
    while (records := run.next()) is not None:
        if any((r.partition, r.offset) in poison for r in records):
            run.failed(NOW)
        else:
            delivered += [(r.partition, r.offset) for r in records]
            run.succeeded()
    assert delivered == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    assert run.committable() == {("orders", 0): 4, ("orders", 1): 4}


def test_an_empty_batch_is_done_at_once() -> None:
    run = BatchRun([], ErrorHandling())
    assert run.next() is None and run.committable() == {}


# --- what the failure destination gets ----------------------------------------------------------------------


INVOCATION = FailedInvocation(
    "req-1", "arn:aws:lambda:local:000000000000:function:smm-mirror-A-B", ["h1:9092", "h2:9092"]
)


def test_a_kafka_destination_gets_each_record_with_the_failure_metadata() -> None:
    records = _records([7, 8], timestamp=1_700_000_000_123)
    given_up = GiveUp(tuple(records), RETRIES_EXHAUSTED, 11)
    documents = kafka_failure_records(given_up, INVOCATION, NOW)
    assert len(documents) == 2
    first = documents[0]
    assert first["requestContext"] == {
        "requestId": "req-1",
        "functionArn": INVOCATION.function_arn,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 11,
    }
    assert first["responseContext"]["functionError"] == "Unhandled" and first["version"] == "1.0"
    info = first["KafkaBatchInfo"]
    assert info["batchSize"] == 2 and info["bootstrapServers"] == "h1:9092,h2:9092"
    assert info["recordInfo"] == {"offset": "7", "timestamp": "2023-11-14T22:13:20.123Z"}
    assert info["payloadSize"] == len(json.dumps(build_event(records, INVOCATION.bootstrap_servers)))
    assert first["payload"] == build_event(records[:1], INVOCATION.bootstrap_servers)  # the record itself
    assert documents[1]["KafkaBatchInfo"]["recordInfo"]["offset"] == "8"
    json.dumps(documents)  # what is written is JSON


def test_other_destinations_get_the_batch_metadata_only() -> None:
    records = _records([3, 4], partition=0, timestamp=1_700_000_000_000) + _records([9], partition=2)
    document = batch_metadata(GiveUp(tuple(records), RECORD_AGE_EXCEEDED, 1), INVOCATION, NOW)
    assert "payload" not in document
    assert document["requestContext"]["condition"] == "RecordAgeExceeded"
    assert document["KafkaBatchInfo"]["recordsInfo"] == {
        "orders-0": {
            "firstRecordOffset": "3",
            "lastRecordOffset": "4",
            "firstRecordTimestamp": "2023-11-14T22:13:20.000Z",
            "lastRecordTimestamp": "2023-11-14T22:13:20.000Z",
        },
        "orders-2": {
            "firstRecordOffset": "9",
            "lastRecordOffset": "9",
            "firstRecordTimestamp": "2027-01-15T08:00:00.000Z",
            "lastRecordTimestamp": "2027-01-15T08:00:00.000Z",
        },
    }


# --- batching window, payload cap, context, totals ---------------------------------------------------------


@pytest.mark.parametrize(("window_ms", "seconds"), [(500, 0.5), (0, 0), (100, 0), (1000, 1), (1499, 1), (3000, 3)])
def test_batching_window_as_a_deployed_mapping_has_it(window_ms: int, seconds: float) -> None:
    assert batching_window_seconds(window_ms) == seconds


@pytest.mark.parametrize(
    "record",
    [
        SourceRecord("t", 0, 0, NOW, "CREATE_TIME", None, None, []),
        SourceRecord("orders", 11, 2**40, NOW, "LOG_APPEND_TIME", b"k" * 17, bytes(range(256)) * 40, []),
        SourceRecord("o" * 249, 3, 5, NOW, "CREATE_TIME", b"", b"v", [("trace", bytes([255] * 300)), ("n", None)]),
        SourceRecord("x", 0, 1, -1, "CREATE_TIME", b"\x00", b"\xff" * 1000, [("a", b"1")] * 50),
    ],
)
def test_the_payload_estimate_is_never_below_the_event_size(record: SourceRecord) -> None:
    """The 6 MB cap holds if each record's estimate covers its share of the event JSON (compact, as Lambda's)."""
    one = build_event([record], ["b:9092"])
    compact = (",", ":")
    share = len(json.dumps(one, separators=compact)) - len(json.dumps({**one, "records": {}}, separators=compact))
    assert payload_bytes(record) >= share


def test_the_context_counts_down_from_the_mirror_timeout() -> None:
    assert DEFAULT_FUNCTIONS["mirror"].timeout_seconds == MIRROR_TIMEOUT_SECONDS
    context = LambdaContext("smm-mirror-A-B")
    assert 0 < context.get_remaining_time_in_millis() <= MIRROR_TIMEOUT_SECONDS * 1000
    late = LambdaContext("smm-mirror-A-B", timeout_seconds=30, started=time.monotonic() - 29.5)
    assert 0 <= late.get_remaining_time_in_millis() <= 500
    assert LambdaContext("f", timeout_seconds=1, started=time.monotonic() - 5).get_remaining_time_in_millis() == 0
    assert context.aws_request_id != LambdaContext("smm-mirror-A-B").aws_request_id  # one per invocation
    assert context.invoked_function_arn.endswith(":function:smm-mirror-A-B")


def test_totals_count_what_the_mapping_gave_up_and_the_mirrors_extra_figures() -> None:
    totals = FlowTotals()
    report = BatchReport(records=3, mirrored=3, after_ack_failures=1).as_dict()
    totals.add({**report, "recoveredRecords": 4})
    totals.add(report)  # a report without recoveredRecords counts as none
    totals.gave_up(GiveUp(tuple(_records([1, 2])), RETRIES_EXHAUSTED, 11), sent=True)
    totals.gave_up(GiveUp(tuple(_records([5])), RECORD_AGE_EXCEEDED, 1), sent=False)
    assert (totals.after_ack_failures, totals.recovered_records) == (2, 4)
    assert (totals.given_up_batches, totals.given_up_records, totals.sent_to_destination) == (2, 3, 2)
