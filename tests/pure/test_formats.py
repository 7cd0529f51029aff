"""MM2 wire formats: bytes are written out by hand from the documented Struct layouts (mm2.md §2)."""

from __future__ import annotations

import json

import pytest

from shared.mm2.formats import Checkpoint, FormatError, Heartbeat, OffsetSync, SourceOffset

MAX_LONG = 2**63 - 1
MIN_LONG = -(2**63)


def s(text: str) -> bytes:
    """Kafka STRING by hand: int16 big-endian length, then the UTF-8 bytes."""
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def i16(n: int) -> bytes:
    return n.to_bytes(2, "big", signed=True)


def i32(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=True)


def i64(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


# --- the two examples of mm2.md §2, byte for byte ---------------------------------------------------------


def test_offset_sync_documented_example() -> None:
    sync = OffsetSync("t", 0, 5, 3)
    assert sync.record_key() == bytes.fromhex("00 01 74 00 00 00 00")
    assert sync.record_value() == bytes.fromhex("00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 03")
    assert len(sync.record_value()) == 16
    assert OffsetSync.deserialize(sync.record_key(), sync.record_value()) == sync


def test_checkpoint_documented_example() -> None:
    cp = Checkpoint("g", "A.t", 1, 600, 598, "")
    assert cp.record_key() == bytes.fromhex("00 01 67 00 03 41 2e 74 00 00 00 01")
    assert cp.record_value() == bytes.fromhex("00 00" + "00 00 00 00 00 00 02 58" + "00 00 00 00 00 00 02 56" + "00 00")
    assert Checkpoint.deserialize(cp.record_key(), cp.record_value()) == cp


def test_checkpoint_metadata_defaults_to_empty_string() -> None:
    assert Checkpoint("g", "A.t", 1, 600, 598).metadata == ""
    assert Checkpoint("g", "A.t", 1, 600, 598) == Checkpoint("g", "A.t", 1, 600, 598, "")


# --- encoding from the layout, many shapes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "partition", "upstream", "downstream"),
    [
        ("t", 0, 5, 3),
        ("orders", 7, 0, 0),
        ("B.A.orders", 2**31 - 1, MAX_LONG, MAX_LONG - 1),
        ("caf\u00e9-\u65e5\u672c-\U0001f600", 3, 123456789012, 98765),
        ("", 0, 1, 1),
        ("x" * 249, 12, 2**40, 2**33),
        ("neg", -1, -1, -1),
        ("min", -(2**31), MIN_LONG, MIN_LONG),
    ],
)
def test_offset_sync_layout(topic: str, partition: int, upstream: int, downstream: int) -> None:
    sync = OffsetSync(topic, partition, upstream, downstream)
    assert sync.record_key() == s(topic) + i32(partition)
    assert sync.record_value() == i64(upstream) + i64(downstream)
    assert OffsetSync.deserialize(sync.record_key(), sync.record_value()) == sync


@pytest.mark.parametrize(
    ("group", "topic", "partition", "upstream", "downstream", "metadata"),
    [
        ("g", "A.t", 1, 600, 598, ""),
        ("my-group", "B.A.orders", 0, MAX_LONG, MAX_LONG, "some metadata"),
        ("gr\u00fcppe-\u00fc\u00f1\u00ee", "A.\u65e5\u672c", 5, 0, 0, "m\u00e9ta \U0001f680"),
        ("", "", 0, 0, 0, ""),
        ("g", "t", -1, -1, -1, "x" * 1000),
        ("g", "t", 2**31 - 1, MIN_LONG, MIN_LONG, ""),
    ],
)
def test_checkpoint_layout(
    group: str, topic: str, partition: int, upstream: int, downstream: int, metadata: str
) -> None:
    cp = Checkpoint(group, topic, partition, upstream, downstream, metadata)
    assert cp.record_key() == s(group) + s(topic) + i32(partition)
    assert cp.record_value() == i16(0) + i64(upstream) + i64(downstream) + s(metadata)
    assert Checkpoint.deserialize(cp.record_key(), cp.record_value()) == cp


@pytest.mark.parametrize(
    ("source", "target", "timestamp"),
    [
        ("A", "B", 1_700_000_000_000),
        ("us-west", "us-east", 0),
        ("\u00e9t\u00e9", "\u65e5\u672c", MAX_LONG),
        ("A", "A", -1),
        ("", "", MIN_LONG),
    ],
)
def test_heartbeat_layout(source: str, target: str, timestamp: int) -> None:
    hb = Heartbeat(source, target, timestamp)
    assert hb.record_key() == s(source) + s(target)
    assert hb.record_value() == i16(0) + i64(timestamp)
    assert len(hb.record_value()) == 10
    assert Heartbeat.deserialize(hb.record_key(), hb.record_value()) == hb


def test_heartbeat_concrete_bytes() -> None:
    hb = Heartbeat("A", "B", 1)
    assert hb.record_key() == bytes.fromhex("00 01 41 00 01 42")
    assert hb.record_value() == bytes.fromhex("00 00 00 00 00 00 00 00 00 01")


def test_string_length_counts_utf8_bytes_not_characters() -> None:
    # 'é' is 2 bytes, '日' is 3, the emoji is 4: the int16 length must be 9, not 3.
    sync = OffsetSync("\u00e9\u65e5\U0001f600", 0, 0, 0)
    assert sync.record_key()[:2] == b"\x00\x09"
    assert sync.record_key()[2:11] == "\u00e9\u65e5\U0001f600".encode()


def test_longest_kafka_string_is_accepted_and_longer_is_rejected() -> None:
    longest = "a" * 0x7FFF
    sync = OffsetSync(longest, 0, 0, 0)
    assert sync.record_key()[:2] == b"\x7f\xff"
    assert OffsetSync.deserialize(sync.record_key(), sync.record_value()) == sync
    with pytest.raises(FormatError, match="longer than a Kafka STRING"):
        OffsetSync("a" * 0x8000, 0, 0, 0).record_key()


# --- decoding hand-written bytes --------------------------------------------------------------------------


def test_deserialize_hand_written_records() -> None:
    assert OffsetSync.deserialize(s("orders") + i32(4), i64(10) + i64(7)) == OffsetSync("orders", 4, 10, 7)
    assert Checkpoint.deserialize(s("g") + s("A.orders") + i32(4), i16(0) + i64(10) + i64(7) + s("md")) == (
        Checkpoint("g", "A.orders", 4, 10, 7, "md")
    )
    assert Heartbeat.deserialize(s("A") + s("B"), i16(0) + i64(42)) == Heartbeat("A", "B", 42)


# --- errors -----------------------------------------------------------------------------------------------

GOOD_SYNC = (s("t") + i32(0), i64(5) + i64(3))
GOOD_CP = (s("g") + s("A.t") + i32(1), i16(0) + i64(600) + i64(598) + s(""))
GOOD_HB = (s("A") + s("B"), i16(0) + i64(1))


@pytest.mark.parametrize(
    ("cls", "key", "value", "what"),
    [
        (OffsetSync, b"", GOOD_SYNC[1], "OffsetSync key"),
        (OffsetSync, b"\x00", GOOD_SYNC[1], "OffsetSync key"),
        (OffsetSync, b"\x00\x05ab", GOOD_SYNC[1], "OffsetSync key"),
        (OffsetSync, s("t") + b"\x00\x00\x00", GOOD_SYNC[1], "OffsetSync key"),
        (OffsetSync, GOOD_SYNC[0], b"", "OffsetSync value"),
        (OffsetSync, GOOD_SYNC[0], GOOD_SYNC[1][:15], "OffsetSync value"),
        (OffsetSync, GOOD_SYNC[0], GOOD_SYNC[1][:8], "OffsetSync value"),
        (Checkpoint, GOOD_CP[0][:-1], GOOD_CP[1], "Checkpoint key"),
        (Checkpoint, s("g"), GOOD_CP[1], "Checkpoint key"),
        (Checkpoint, GOOD_CP[0], GOOD_CP[1][:-1], "Checkpoint value"),
        (Checkpoint, GOOD_CP[0], GOOD_CP[1][:-2], "Checkpoint value"),
        (Checkpoint, GOOD_CP[0], i16(0) + i64(600), "Checkpoint value"),
        (Checkpoint, GOOD_CP[0], b"", "Checkpoint value"),
        (Checkpoint, GOOD_CP[0], b"\x00", "Checkpoint value"),
        (Checkpoint, GOOD_CP[0], i16(0) + i64(600) + i64(598) + b"\x00\x03ab", "Checkpoint value"),
        (Heartbeat, s("A"), GOOD_HB[1], "Heartbeat key"),
        (Heartbeat, GOOD_HB[0][:-1], GOOD_HB[1], "Heartbeat key"),
        (Heartbeat, GOOD_HB[0], GOOD_HB[1][:-1], "Heartbeat value"),
        (Heartbeat, GOOD_HB[0], i16(0), "Heartbeat value"),
        (Heartbeat, GOOD_HB[0], b"", "Heartbeat value"),
    ],
)
def test_truncated_bytes(cls: type, key: bytes, value: bytes, what: str) -> None:
    with pytest.raises(FormatError, match="truncated") as info:
        cls.deserialize(key, value)
    assert what in str(info.value)


@pytest.mark.parametrize(
    ("cls", "key", "value", "what", "extra"),
    [
        (OffsetSync, GOOD_SYNC[0] + b"\x00", GOOD_SYNC[1], "OffsetSync key", 1),
        (OffsetSync, GOOD_SYNC[0], GOOD_SYNC[1] + b"\x00\x00", "OffsetSync value", 2),
        (Checkpoint, GOOD_CP[0] + b"\x01\x02\x03", GOOD_CP[1], "Checkpoint key", 3),
        (Checkpoint, GOOD_CP[0], GOOD_CP[1] + b"\xff", "Checkpoint value", 1),
        (Heartbeat, GOOD_HB[0] + b"\x00", GOOD_HB[1], "Heartbeat key", 1),
        (Heartbeat, GOOD_HB[0], GOOD_HB[1] + i64(0), "Heartbeat value", 8),
    ],
)
def test_trailing_bytes(cls: type, key: bytes, value: bytes, what: str, extra: int) -> None:
    with pytest.raises(FormatError, match=f"{extra} unexpected trailing bytes") as info:
        cls.deserialize(key, value)
    assert what in str(info.value)


@pytest.mark.parametrize("version", [1, 2, -1, 0x7FFF])
@pytest.mark.parametrize(
    ("cls", "key", "rest", "what"),
    [
        (Checkpoint, GOOD_CP[0], i64(600) + i64(598) + s(""), "Checkpoint value"),
        (Heartbeat, GOOD_HB[0], i64(1), "Heartbeat value"),
    ],
)
def test_wrong_version(cls: type, key: bytes, rest: bytes, what: str, version: int) -> None:
    with pytest.raises(FormatError) as info:
        cls.deserialize(key, i16(version) + rest)
    message = str(info.value)
    assert what in message
    assert f"unsupported version {version}" in message
    assert "0" in message


@pytest.mark.parametrize(
    ("cls", "key", "value", "what"),
    [
        (OffsetSync, b"\xff\xff" + i32(0), GOOD_SYNC[1], "OffsetSync key"),
        (Checkpoint, b"\xff\xff" + s("t") + i32(0), GOOD_CP[1], "Checkpoint key"),
        (Checkpoint, GOOD_CP[0], i16(0) + i64(1) + i64(1) + b"\xff\xff", "Checkpoint value"),
        (Heartbeat, s("A") + b"\xff\xff", GOOD_HB[1], "Heartbeat key"),
    ],
)
def test_null_string_is_rejected(cls: type, key: bytes, value: bytes, what: str) -> None:
    with pytest.raises(FormatError, match="null string") as info:
        cls.deserialize(key, value)
    assert what in str(info.value)


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (OffsetSync, b"\x00\x02\xc3\x28" + i32(0), GOOD_SYNC[1]),
        (Checkpoint, b"\x00\x01\xff" + s("t") + i32(0), GOOD_CP[1]),
        (Heartbeat, s("A") + b"\x00\x01\x80", GOOD_HB[1]),
    ],
)
def test_invalid_utf8_is_a_format_error(cls: type, key: bytes, value: bytes) -> None:
    with pytest.raises(FormatError, match="not UTF-8"):
        cls.deserialize(key, value)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(FormatError, ValueError)


def test_records_are_immutable_and_hashable() -> None:
    sync = OffsetSync("t", 0, 5, 3)
    with pytest.raises(AttributeError):
        sync.topic = "u"  # type: ignore[misc]
    assert len({sync, OffsetSync("t", 0, 5, 3), Heartbeat("A", "B", 1), Heartbeat("A", "B", 1)}) == 2


# Connect's offsets topic, as MM2 4.x writes it for MirrorSourceConnector (schemaless JsonConverter).
GOOD_SOURCE_OFFSET = (
    b'["MirrorSourceConnector",{"cluster":"us-west","partition":3,"topic":"orders"}]',
    b'{"offset":41}',
)


def test_source_offset_matches_connect_bytes() -> None:
    offset = SourceOffset("us-west", "orders", 3, 41)
    assert (offset.record_key(), offset.record_value()) == GOOD_SOURCE_OFFSET
    assert SourceOffset.deserialize(*GOOD_SOURCE_OFFSET) == offset


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b'["MirrorCheckpointConnector",{"cluster":"A","partition":0,"topic":"t"}]', b'{"offset":1}'),
        (GOOD_SOURCE_OFFSET[0], None),  # a tombstone: the partition's offset was reset
    ],
)
def test_source_offset_of_other_records_is_none(key: bytes, value: bytes | None) -> None:
    assert SourceOffset.deserialize(key, value) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"not json", b'{"offset":1}'),
        (b'["MirrorSourceConnector"]', b'{"offset":1}'),
        (b'["MirrorSourceConnector",{"cluster":"A","topic":"t"}]', b'{"offset":1}'),
        (GOOD_SOURCE_OFFSET[0], b'{"position":1}'),
        (GOOD_SOURCE_OFFSET[0], b'{"offset":"x"}'),
    ],
)
def test_malformed_source_offset_is_a_format_error(key: bytes, value: bytes) -> None:
    with pytest.raises(FormatError, match="source offset record"):
        SourceOffset.deserialize(key, value)


def test_source_offset_keeps_the_topic_id_where_mm2_reads_only_the_offset() -> None:
    mm2_written = SourceOffset.deserialize(
        b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]', b'{"offset":7}'
    )
    assert mm2_written == SourceOffset("A", "t", 0, 7)
    ours = SourceOffset("A", "t", 0, 7, "q4vL6QhXTJG2eLn7Ln_ZbA")
    assert json.loads(ours.record_value()) == {"offset": 7, "smm.topic.id": "q4vL6QhXTJG2eLn7Ln_ZbA"}
    assert SourceOffset.deserialize(ours.record_key(), ours.record_value()) == ours
