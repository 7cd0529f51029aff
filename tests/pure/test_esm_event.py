"""The ESM event: what the emulator builds is exactly what the handler parses; malformed events say where."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from shared.aws.esm_event import EventError, SourceRecord, build_event, by_partition, parse_event

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
