"""Ranges an event-source mapping skipped: found, and read back from the source, before the next batch.

By default a mapping retries a failing batch until it succeeds, as MM2 does. With a retry limit, a maximum record
age or a failure destination (``EventSourceTemplate.may_skip``), Lambda instead moves past a batch it could not
deliver and commits its consumer group beyond it; the gap detector cannot see that (the source still has the
records, its log start did not move). So, in that mode, the mirror keeps its own position per source partition:
the offset after the last record it mirrored, committed to a consumer group of its own on the source, named after
the mapping's (``smm:<source>:<target>:<topic>:mirrored``; ``:`` cannot occur in a topic name). A batch that
begins past that position follows a skipped range; the mirror reads that range from the source and mirrors it,
in order, before the batch. The group lives in Kafka like all state here, so any container, warm or cold, finds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kafka import TopicPartition

from shared.aws.esm_event import SourceRecord
from shared.kafka import groups
from shared.kafka.clients import KafkaClients
from shared.mm2.config import FlowConfig

GROUP_SUFFIX = ":mirrored"
_METADATA = "smm: mirrored up to here"


def mirrored_group(flow: FlowConfig, topic: str) -> str:
    """The consumer group holding how far the mirror of ``flow`` got in ``topic``."""
    return flow.consumer_group_id(topic) + GROUP_SUFFIX


def source_record(record: Any) -> SourceRecord:
    """A kafka-python ``ConsumerRecord`` as the event-source mapping would have delivered it."""
    return SourceRecord(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        "LOG_APPEND_TIME" if record.timestamp_type == 1 else "CREATE_TIME",
        record.key,
        record.value,
        list(record.headers or []),
    )


class MirroredPositions:
    """Per source partition of one flow, the offset after the last record mirrored (read and written in Kafka)."""

    def __init__(self, flow: FlowConfig, clients: KafkaClients) -> None:
        self.flow = flow
        self.clients = clients
        self._known: dict[tuple[str, int], int] = {}  # what this container last committed or read

    def skipped(self, firsts: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]:
        """The ranges ``[position, first)`` that lie between the mirrored position and each batch's first offset.

        Cheap in the usual case: a container that committed a position equal to the batch's first offset reads
        nothing from Kafka. Otherwise the committed position is read (another container may have advanced it).
        """
        doubtful = [key for key, first in firsts.items() if self._known.get(key, -1) < first]
        for topic in sorted({topic for topic, _ in doubtful}):
            committed = groups.group_offsets(self.clients, self.flow.source, mirrored_group(self.flow, topic))
            for tp, offset in committed.items():
                self._known[(tp.topic, tp.partition)] = offset
        return {
            key: (self._known[key], firsts[key])
            for key in doubtful
            if key in self._known and self._known[key] < firsts[key]
        }

    def records(self, topic: str, partition: int, offsets: tuple[int, int]) -> Iterator[list[SourceRecord]]:
        """The records of a skipped range, from the source, in chunks of the flow's batch size."""
        chunks = groups.read_records(
            self.clients,
            self.flow.source,
            TopicPartition(topic, partition),
            offsets,
            self.flow.settings.batch_size,
            committed_only=self.flow.exactly_once,
        )
        for chunk in chunks:
            yield [source_record(r) for r in chunk]

    def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Record that everything before each offset is mirrored (one commit per topic's group)."""
        by_topic: dict[str, dict[TopicPartition, tuple[int, str]]] = {}
        for (topic, partition), offset in positions.items():
            by_topic.setdefault(topic, {})[TopicPartition(topic, partition)] = (offset, _METADATA)
        for topic, offsets in by_topic.items():
            groups.alter_offsets(self.clients, self.flow.source, mirrored_group(self.flow, topic), offsets)
        self._known.update(positions)
