"""The ESM event: what the emulator builds is exactly what the handler parses; malformed events say where."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from shared.aws.esm_event import (
    COMPACT,
    EventError,
    RecordBatch,
    SourceRecord,
    batch_records,
    build_event,
    by_partition,
    envelope_bytes,
    parse_event,
    payload_bytes,
)

RECORDS = [
    SourceRecord("orders", 0, 5, 1700000000000, "CREATE_TIME", b"k1", b"\x00\xff\xfe", [("h", b"1"), ("h", b"2")]),
    SourceRecord("orders", 0, 6, 1700000000001, "CREATE_TIME", None, None, []),
    SourceRecord("orders", 1, 9, 1700000000002, "LOG_APPEND_TIME", b"k2", None, [("bin", bytes([0x80, 0xFF]))]),
]


def _event() -> dict[str, Any]:
    return build_event(RECORDS, ["127.0.0.1:9092", "127.0.0.1:9093"])


def test_round_trip_keeps_bytes_nulls_and_repeated_headers() -> None:
    source, parsed = parse_event(_event())
    assert source == "SelfManagedKafka"
    assert parsed == RECORDS


def test_event_shape_matches_lambda() -> None:
    event = _event()
    assert event["bootstrapServers"] == "127.0.0.1:9092,127.0.0.1:9093"
    assert sorted(event["records"]) == ["orders-0", "orders-1"]
    first = event["records"]["orders-0"][0]
    assert first["key"] == base64.b64encode(b"k1").decode()
    assert first["headers"] == [{"h": [49]}, {"h": [50]}]
    assert event["records"]["orders-0"][1]["value"] is None


@pytest.mark.parametrize("source", ["aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka"])
def test_accepts_msk_and_self_managed_sources(source: str) -> None:
    event = _event()
    event["eventSource"] = source
    assert parse_event(event)[0] == source


def test_signed_header_bytes_are_read_as_unsigned() -> None:
    event = _event()
    event["records"]["orders-1"][0]["headers"] = [{"bin": [-128, -1, 0, 127]}]
    _, parsed = parse_event(event)
    assert parsed[2].headers == [("bin", bytes([0x80, 0xFF, 0x00, 0x7F]))]


def test_tombstone_with_value_field_absent() -> None:
    event = _event()
    del event["records"]["orders-0"][1]["value"]
    del event["records"]["orders-0"][1]["key"]
    _, parsed = parse_event(event)
    assert parsed[1].key is None and parsed[1].value is None


def _broken(path: tuple[str, int, str], value: Any, delete: bool = False) -> dict[str, Any]:
    event = copy.deepcopy(_event())
    record = event["records"][path[0]][path[1]]
    if delete:
        del record[path[2]]
    else:
        record[path[2]] = value
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_broken(("orders-0", 0, "value"), "not base64!"), "record orders-0@5: field 'value' is not valid base64"),
        (_broken(("orders-0", 0, "key"), 12), "record orders-0@5: field 'key' must be a base64 string or null"),
        (_broken(("orders-0", 1, "timestamp"), "now"), "record orders-0@6: field 'timestamp' must be an integer"),
        (_broken(("orders-0", 1, "timestamp"), None, delete=True), "record orders-0@6: missing field 'timestamp'"),
        (_broken(("orders-1", 0, "offset"), -1), "record orders-1@-1: field 'offset' must be an integer >= 0"),
        (_broken(("orders-1", 0, "partition"), "1"), "field 'partition' must be an integer >= 0"),
        (_broken(("orders-1", 0, "topic"), None, delete=True), "record #2: missing field 'topic'"),
        (_broken(("orders-1", 0, "headers"), {"h": [1]}), "field 'headers' must be a list"),
        (_broken(("orders-1", 0, "headers"), [{"h": [1, 300]}]), "header 'h' must be a list of byte values"),
        (_broken(("orders-1", 0, "headers"), ["h"]), "header #0 must be an object"),
    ],
)
def test_malformed_records_name_the_record_and_field(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_event(event)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "event must be a JSON object"),
        ({"eventSource": "aws:sqs", "records": {}}, "eventSource 'aws:sqs' is not a Kafka event source"),
        ({"eventSource": "aws:kafka"}, "event has no 'records' object"),
        ({"eventSource": "aws:kafka", "records": {"t-0": "x"}}, r"records\['t-0'\] must be a list"),
        ({"eventSource": "aws:kafka", "records": {"t-0": ["x"]}}, "record #0: must be a JSON object"),
    ],
)
def test_malformed_events(event: Any, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event(event)


def test_by_partition_keeps_order_within_each_partition() -> None:
    grouped = dict(by_partition([RECORDS[2], RECORDS[0], RECORDS[1]]))
    assert [r.offset for r in grouped[("orders", 0)]] == [5, 6]
    assert [r.offset for r in grouped[("orders", 1)]] == [9]


def test_size_counts_key_value_and_headers() -> None:
    assert RECORDS[0].size == 2 + 3 + 2 + 2
    assert RECORDS[1].size == 0


def test_a_null_header_value_stays_null_through_the_event() -> None:
    record = SourceRecord("t", 0, 5, 1, "CREATE_TIME", b"k", b"v", [("null", None), ("empty", b""), ("x", b"\xff")])
    event = build_event([record], ["h:1"])
    assert event["records"]["t-0"][0]["headers"] == [{"null": None}, {"empty": []}, {"x": [255]}]
    assert parse_event(event)[1] == [record]


SERVERS = ["127.0.0.1:9092", "broker-2.example:9093"]
# Shaped as both EsmConsumers return records, grouped by partition as the emulator hands them over.
BATTERY = [
    SourceRecord("orders", 0, 0, 1700000000000, "CREATE_TIME", None, b"keyless", []),
    SourceRecord("orders", 0, 1, 1700000000001, "CREATE_TIME", b"k", None, []),  # tombstone
    SourceRecord("orders", 0, 2, 1700000000002, "CREATE_TIME", None, None, [("trace", None)]),  # keyless tombstone
    SourceRecord("orders", 0, 3, -1, "CREATE_TIME", b"", b"", [("h", b"1"), ("h", b"2"), ("h", None), ("h", b"")]),
    SourceRecord("orders", 0, 2**62, 2**62, "LOG_APPEND_TIME", bytes(range(256)), b"\xff" * 999, [("b", b"\x80\xff")]),
    SourceRecord(
        "orders", 2**31 - 1, 7, 0, "LOG_APPEND_TIME", b"\x00", bytes([0xFF] * 300), [("bin", bytes(range(256)))]
    ),
    SourceRecord("tópico-😀", 3, 9, 1, "CREATE_TIME", b"k", b"v", [('quote"\\back\x01ctl-é-😀', b"\x00")]),
]


def _through_lambda(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the function receives it: serialised by Lambda, parsed by the runtime."""
    loaded: dict[str, Any] = json.loads(json.dumps(event))
    return loaded


@pytest.mark.parametrize("record", BATTERY, ids=lambda r: f"{r.partition}@{r.offset}")
def test_one_record_survives_the_event_unchanged(record: SourceRecord) -> None:
    assert parse_event(_through_lambda(build_event([record], SERVERS)))[1] == [record]


def test_a_batch_survives_the_event_unchanged_so_the_direct_batch_is_what_the_handler_would_parse() -> None:
    parsed = parse_event(_through_lambda(build_event(BATTERY, SERVERS)))[1]
    assert parsed == BATTERY
    assert [type(v) for r in parsed for v in r] == [type(v) for r in BATTERY for v in r]
    assert batch_records(RecordBatch(BATTERY)) is BATTERY
    assert batch_records(_through_lambda(build_event(BATTERY, SERVERS))) == BATTERY


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["ascii-escaped", "utf-8"])
def test_the_payload_estimate_bounds_the_serialised_event(ensure_ascii: bool) -> None:
    """The 6 MB cap holds without building the event: envelope plus each record's estimate is at least the event
    as compact JSON, in bytes, whether non-ASCII text is escaped or written as UTF-8."""
    for records in [BATTERY, BATTERY[:1], BATTERY[-1:], [BATTERY[2]] * 50]:
        event = build_event(records, SERVERS)
        real = len(json.dumps(event, separators=COMPACT, ensure_ascii=ensure_ascii).encode())
        assert envelope_bytes(SERVERS) + sum(map(payload_bytes, records)) >= real
    assert envelope_bytes(SERVERS) == len(json.dumps(build_event([], SERVERS), separators=COMPACT))


def test_the_payload_estimate_is_close_for_typical_records() -> None:
    """An upper bound that is not loose: 512-byte values with two headers fill 6 MB to within a few percent."""
    record = SourceRecord("bench", 5, 123456789, 1700000000000, "CREATE_TIME", b"k" * 16, b"v" * 512, [])
    records = [record._replace(headers=[("h1", b"12345678"), ("h2", b"abcdefgh")])] * 1000
    real = len(json.dumps(build_event(records, SERVERS), separators=COMPACT))
    assert real <= envelope_bytes(SERVERS) + sum(map(payload_bytes, records)) <= real * 1.15
