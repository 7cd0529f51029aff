"""MM2's internal-topic records, byte-identical to MM2's ``Struct`` layouts.

Kafka protocol encoding: big-endian integers, STRING = int16 length + UTF-8 bytes. OffsetSync has no version
header; Checkpoint and Heartbeat values start with an int16 version (0). See ``connect/mirror-client``
``Checkpoint.java``/``Heartbeat.java`` and ``connect/mirror`` ``OffsetSync.java``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

# A record header as Kafka has it: a name and a value that may be null.
Header = tuple[str, bytes | None]

VERSION = 0

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64_PAIR = struct.Struct(">qq")
_VERSIONED_INT64_PAIR = struct.Struct(">hqq")
_VERSIONED_INT64 = struct.Struct(">hq")


class FormatError(ValueError):
    """Bytes that are not a valid MM2 record of the expected kind."""


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise FormatError(f"{self._what}: truncated at byte {self._pos} (needs {n} more)")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def string(self) -> str:
        (length,) = _INT16.unpack(self.take(2))
        if length < 0:
            raise FormatError(f"{self._what}: null string where MM2 writes a non-null one")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{self._what}: string is not UTF-8: {exc}") from exc

    def int32(self) -> int:
        value: int = _INT32.unpack(self.take(4))[0]
        return value

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = layout.unpack(self.take(layout.size))
        return values

    def version(self) -> None:
        (version,) = _INT16.unpack(self.take(2))
        if version != VERSION:
            raise FormatError(f"{self._what}: unsupported version {version} (MM2 writes {VERSION})")
        self._pos -= 2

    def end(self) -> None:
        if self._pos != len(self._data):
            raise FormatError(f"{self._what}: {len(self._data) - self._pos} unexpected trailing bytes")


def _string(value: str) -> bytes:
    encoded = value.encode("utf-8")
    if len(encoded) > 0x7FFF:
        raise FormatError(f"string of {len(encoded)} bytes is longer than a Kafka STRING allows")
    return _INT16.pack(len(encoded)) + encoded


@dataclass(frozen=True)
class OffsetSync:
    """Upstream offset of a record and the offset of its copy downstream (``mm2-offset-syncs.*``)."""

    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int

    def record_key(self) -> bytes:
        return _string(self.topic) + _INT32.pack(self.partition)

    def record_value(self) -> bytes:
        return _INT64_PAIR.pack(self.upstream_offset, self.downstream_offset)

    @classmethod
    def deserialize(cls, key: bytes, value: bytes) -> OffsetSync:
        k = _Reader(key, "OffsetSync key")
        topic, partition = k.string(), k.int32()
        k.end()
        v = _Reader(value, "OffsetSync value")
        upstream, downstream = v.unpack(_INT64_PAIR)
        v.end()
        return cls(topic, partition, upstream, downstream)


@dataclass(frozen=True)
class Checkpoint:
    """A consumer group's upstream offset and its translation downstream (``<source>.checkpoints.internal``).

    ``topic`` is the downstream (remote) topic name, as MM2 writes it.
    """

    group: str
    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int
    metadata: str = ""

    def record_key(self) -> bytes:
        return _string(self.group) + _string(self.topic) + _INT32.pack(self.partition)

    def record_value(self) -> bytes:
        return _VERSIONED_INT64_PAIR.pack(VERSION, self.upstream_offset, self.downstream_offset) + _string(
            self.metadata
        )

    @classmethod
    def deserialize(cls, key: bytes, value: bytes) -> Checkpoint:
        k = _Reader(key, "Checkpoint key")
        group, topic, partition = k.string(), k.string(), k.int32()
        k.end()
        v = _Reader(value, "Checkpoint value")
        v.version()
        _, upstream, downstream = v.unpack(_VERSIONED_INT64_PAIR)
        metadata = v.string()
        v.end()
        return cls(group, topic, partition, upstream, downstream, metadata)


@dataclass(frozen=True)
class Heartbeat:
    """Proof that flow source->target is alive, timestamped at emission (``heartbeats``)."""

    source_cluster_alias: str
    target_cluster_alias: str
    timestamp: int

    def record_key(self) -> bytes:
        return _string(self.source_cluster_alias) + _string(self.target_cluster_alias)

    def record_value(self) -> bytes:
        return _VERSIONED_INT64.pack(VERSION, self.timestamp)

    @classmethod
    def parse(cls, key: bytes | None, value: bytes | None) -> Heartbeat | None:
        """The heartbeat in a record of a heartbeats topic, or None for anything else found there."""
        if key is None or value is None:
            return None
        try:
            return cls.deserialize(key, value)
        except FormatError:
            return None

    @classmethod
    def deserialize(cls, key: bytes, value: bytes) -> Heartbeat:
        k = _Reader(key, "Heartbeat key")
        source, target = k.string(), k.string()
        k.end()
        v = _Reader(value, "Heartbeat value")
        v.version()
        _, timestamp = v.unpack(_VERSIONED_INT64)
        v.end()
        return cls(source, target, timestamp)


SOURCE_CONNECTOR = "MirrorSourceConnector"


@dataclass(frozen=True)
class SourceOffset:
    """The last source offset mirrored of one partition, as MM2's Connect worker stores it.

    Exactly-once mode writes it in the same transaction as the records, to ``mm2-offsets.<source>.internal``
    on the target (the topic MM2's dedicated mode keeps its source offsets in): key
    ``["MirrorSourceConnector",{"cluster":A,"partition":0,"topic":"t"}]`` and value ``{"offset":N}``, the JSON
    that Connect's schemaless ``JsonConverter`` writes, keys in the order Java's ``HashMap`` iterates them.
    Byte-identical keys let compaction keep one per partition, whichever of MM2 and this project wrote it.
    This project adds the source topic's id to the value (``smm.topic.id``; MM2 reads only ``offset``), so an
    offset of a deleted topic is not taken for its re-created namesake's.
    """

    cluster: str
    topic: str
    partition: int
    offset: int
    topic_id: str | None = None

    def record_key(self) -> bytes:
        return _json([SOURCE_CONNECTOR, {"cluster": self.cluster, "partition": self.partition, "topic": self.topic}])

    def record_value(self) -> bytes:
        if self.topic_id is None:
            return _json({"offset": self.offset})
        return _json({"offset": self.offset, TOPIC_ID_FIELD: self.topic_id})

    @classmethod
    def deserialize(cls, key: bytes, value: bytes | None) -> SourceOffset | None:
        """The offset a record holds; None for a tombstone or another connector's record."""
        try:
            connector, partition = json.loads(key)
            body = json.loads(value) if value is not None else None
            offset = body["offset"] if body is not None else None
        except (ValueError, TypeError, KeyError) as exc:
            raise FormatError(f"source offset record: {exc}") from None
        if connector != SOURCE_CONNECTOR or offset is None:
            return None
        topic_id = body.get(TOPIC_ID_FIELD) if isinstance(body, dict) else None
        try:
            return cls(
                str(partition["cluster"]),
                str(partition["topic"]),
                int(partition["partition"]),
                int(offset),
                None if topic_id is None else str(topic_id),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"source offset record: missing or bad field {exc}") from None


TOPIC_ID_FIELD = "smm.topic.id"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
