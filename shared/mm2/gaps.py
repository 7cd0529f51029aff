"""Records lost upstream before they were mirrored (silent data loss MM2 skips over), kept in Kafka.

The mirror writes one ``GapEvent`` per detected gap to ``mm2-gaps.<source>.internal`` on the target (always
with dots, like ``mm2-config-sync.<source>.internal``, so no flow mirrors it); ``smm status`` sums them. The
topic uses ``cleanup.policy=delete``: every event counts, and old ones age out with the topic's retention.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shared.mm2.config import FlowConfig


def gaps_topic(flow: FlowConfig) -> str:
    return f"mm2-gaps.{flow.source}.internal"


@dataclass(frozen=True)
class GapEvent:
    """Offsets ``expected_offset`` .. ``first_offset - 1`` of a source partition that were never mirrored."""

    topic: str
    partition: int
    expected_offset: int
    first_offset: int
    lost_records: int
    detected_ms: int

    def record_key(self) -> bytes:
        return f"{self.topic}-{self.partition}".encode()

    def record_value(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def deserialize(cls, value: bytes) -> GapEvent:
        return cls(**json.loads(value))


@dataclass(frozen=True)
class GapSummary:
    """What ``smm status`` shows of a flow's gaps."""

    events: int = 0
    lost_records: int = 0
    newest: GapEvent | None = None

    @classmethod
    def of(cls, events: list[GapEvent]) -> GapSummary:
        newest = max(events, key=lambda e: e.detected_ms, default=None)
        return cls(len(events), sum(e.lost_records for e in events), newest)
