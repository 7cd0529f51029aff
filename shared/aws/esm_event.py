"""The Lambda Kafka event-source mapping (ESM) event: read by the mirror handler, written by the local emulator.

Both directions live here so the emulator builds exactly what the handler parses. Records are taken as raw
bytes: base64 keys/values, header values as (possibly signed) byte arrays, repeated header keys kept in order.
In-process (``smm run``) the emulator skips the JSON and hands the handler a ``RecordBatch``: the records
``parse_event`` would return for the event ``build_event`` makes of them (tests prove the two are equal).
"""

from __future__ import annotations

import base64
import binascii
import json
from binascii import a2b_base64 as _a2b
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, NamedTuple

from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord

from shared.mm2.formats import Header

# How the event is serialised where its size matters: Lambda's payload cap counts compact JSON.
COMPACT = (",", ":")
EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka")
SELF_MANAGED = "SelfManagedKafka"


class EventError(ValueError):
    """A malformed ESM event; the message names the record (topic-partition@offset) and the field."""


class SourceRecord(NamedTuple):
    """One source record as the ESM delivers it, bytes untouched (a tuple: thousands are built per batch)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: bytes | None
    value: bytes | None
    headers: list[Header]

    @property
    def size(self) -> int:
        """Payload bytes: key, value, header keys and values (what MM2's byte-count counts)."""
        return len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v or b"") for k, v in self.headers)


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """A batch handed to the mirror handler in-process, instead of its ESM event: the records, in the order
    ``parse_event`` would return them (grouped by partition, each partition in offset order)."""

    records: list[SourceRecord]


# What the mirror handler is invoked with: the ESM event (Lambda) or the batch itself (the local emulator).
MirrorPayload = dict[str, Any] | RecordBatch


def batch_records(payload: MirrorPayload) -> list[SourceRecord]:
    """The records of an invocation: parsed (and validated) from an ESM event, or taken from a ``RecordBatch``."""
    return payload.records if isinstance(payload, RecordBatch) else parse_event(payload)[1]


def parse_event(raw: dict[str, Any]) -> tuple[str, list[SourceRecord]]:
    """The event source and every record, in delivery order, validated before anything is mirrored."""
    if not isinstance(raw, dict):
        raise EventError(f"event must be a JSON object, got {type(raw).__name__}")
    source = raw.get("eventSource")
    if source not in EVENT_SOURCES:
        raise EventError(f"eventSource {source!r} is not a Kafka event source (allowed: {', '.join(EVENT_SOURCES)})")
    batches = raw.get("records")
    if not isinstance(batches, dict):
        raise EventError("event has no 'records' object (topic-partition -> list of records)")
    records: list[SourceRecord] = []
    for chunk_key, chunk in batches.items():
        if not isinstance(chunk, list):
            raise EventError(f"records[{chunk_key!r}] must be a list of records, got {type(chunk).__name__}")
        for raw_record in chunk:
            record = _parse_fast(raw_record)
            if record is None:  # something is off: the careful path says exactly what
                record = _parse_record(KafkaEventRecord(raw_record), len(records))
            records.append(record)
    return str(source), records


def _parse_fast(r: Any) -> SourceRecord | None:
    """The common case in a few dict reads (the fields Powertools' raw accessors read); None if anything is off.

    Up to 10,000 records arrive per invocation, so per-record overhead is the handler's cost.
    """
    try:
        topic, partition, offset, timestamp = r["topic"], r["partition"], r["offset"], r["timestamp"]
        if not (
            type(topic) is str
            and topic
            and type(partition) is int
            and partition >= 0
            and type(offset) is int
            and offset >= 0
            and type(timestamp) is int
        ):
            return None
        key, value, raw_headers = r.get("key"), r.get("value"), r.get("headers")
        headers = (
            [(name, _header_bytes(data)) for item in raw_headers for name, data in item.items()] if raw_headers else []
        )
        return SourceRecord(
            topic,
            partition,
            offset,
            timestamp,
            r.get("timestampType", "CREATE_TIME"),
            None if key is None else _a2b(key, strict_mode=True),
            None if value is None else _a2b(value, strict_mode=True),
            headers,
        )
    except Exception:
        return None


def _header_bytes(data: list[int] | None) -> bytes | None:
    if data is None:  # a null header value
        return None
    if type(data) is not list:
        raise TypeError("header value must be a list of byte values")
    try:
        return bytes(data)
    except ValueError:  # signed bytes (-128..-1), as some ESM events carry them
        if not all(type(b) is int and -128 <= b <= 255 for b in data):
            raise
        return bytes(b & 0xFF for b in data)


def _parse_record(record: Any, index: int) -> SourceRecord:
    where = f"record #{index}"
    try:
        topic, partition, offset = record.topic, record.partition, record.offset
        where = f"record {topic}-{partition}@{offset}"
        _require(isinstance(topic, str) and bool(topic), where, "topic", "a non-empty string")
        _require(_is_int(partition) and partition >= 0, where, "partition", "an integer >= 0")
        _require(_is_int(offset) and offset >= 0, where, "offset", "an integer >= 0")
        timestamp = record.timestamp
        _require(_is_int(timestamp), where, "timestamp", "an integer (epoch ms)")
        timestamp_type = record.get("timestampType", "CREATE_TIME")
        key = _decode_b64(record.key, where, "key")
        value = _decode_b64(record.get("value"), where, "value")
        headers = _decode_headers(record.get("headers") or [], where)
    except KeyError as exc:
        raise EventError(f"{where}: missing field {exc.args[0]!r}") from None
    except (AttributeError, TypeError):
        raise EventError(f"{where}: must be a JSON object") from None
    return SourceRecord(topic, partition, offset, timestamp, str(timestamp_type), key, value, headers)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, where: str, field: str, allowed: str) -> None:
    if not ok:
        raise EventError(f"{where}: field {field!r} must be {allowed}")


def _decode_b64(value: Any, where: str, field: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}: field {field!r} must be a base64 string or null, got {type(value).__name__}")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as exc:
        raise EventError(f"{where}: field {field!r} is not valid base64 ({exc})") from None


def _decode_headers(raw: Any, where: str) -> list[Header]:
    if not isinstance(raw, list):
        raise EventError(f"{where}: field 'headers' must be a list of {{key: [bytes]}} objects")
    headers: list[Header] = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise EventError(f"{where}: header #{position} must be an object {{key: [bytes]}}")
        for name, data in item.items():
            if data is None:  # a null header value stays null, as Kafka (and MM2) keep it
                headers.append((name, None))
                continue
            if not isinstance(data, list) or not all(_is_int(b) and -128 <= b <= 255 for b in data):
                raise EventError(f"{where}: header {name!r} must be a list of byte values (-128..255) or null")
            headers.append((name, bytes(b & 0xFF for b in data)))
    return headers


def build_event(
    records: Iterable[SourceRecord], bootstrap_servers: Sequence[str], event_source: str = SELF_MANAGED
) -> dict[str, Any]:
    """The ESM event JSON for ``records``, grouped by ``topic-partition`` as Lambda sends them."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r.topic}-{r.partition}", []).append(
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "timestampType": r.timestamp_type,
                "key": None if r.key is None else base64.b64encode(r.key).decode("ascii"),
                "value": None if r.value is None else base64.b64encode(r.value).decode("ascii"),
                "headers": [{k: None if v is None else list(v)} for k, v in r.headers],
            }
        )
    return {"eventSource": event_source, "bootstrapServers": ",".join(bootstrap_servers), "records": grouped}


def payload_bytes(record: SourceRecord) -> int:
    """The record's share of the event as compact JSON, at most (so the 6 MB cap holds without building it).

    Base64 key and value; header bytes as decimal numbers (up to 4 characters each with the comma) and header keys
    as JSON writes them (escapes included, ASCII-only output); the topic in the record and in its
    ``topic-partition`` key; 200 characters for the field names, the numbers and the punctuation around them.
    One plain loop per record: the emulator runs it for every record it polls.
    """
    key, value = record.key, record.value
    size = 200 + 2 * len(_json_string(record.topic))
    if key is not None:
        size += 4 * ((len(key) + 2) // 3)
    if value is not None:
        size += 4 * ((len(value) + 2) // 3)
    for name, data in record.headers:
        size += len(_json_string(name)) + 14 + (4 * len(data) if data is not None else 4)
    return size


def envelope_bytes(bootstrap_servers: Sequence[str], event_source: str = SELF_MANAGED) -> int:
    """The size of an event without records (compact JSON): what ``payload_bytes`` of its records add up to."""
    return len(json.dumps(build_event([], bootstrap_servers, event_source), separators=COMPACT))


def by_partition(records: Iterable[SourceRecord]) -> Iterator[tuple[tuple[str, int], list[SourceRecord]]]:
    """Records grouped per topic-partition, order kept inside each."""
    groups: dict[tuple[str, int], list[SourceRecord]] = {}
    for r in records:
        groups.setdefault((r.topic, r.partition), []).append(r)
    yield from groups.items()
