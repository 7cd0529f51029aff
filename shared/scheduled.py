"""The contract between the scheduled functions (config sync, heartbeats, checkpoints) and their runtimes.

Each scheduled function package provides ``task_for(flow, clients) -> ScheduledTask``. In AWS its Lambda handler
runs the task of every enabled flow once per EventBridge schedule (looping inside the invocation for sub-minute
intervals); locally ``smm run`` calls ``run_once`` every ``interval_seconds``. Tasks keep nothing that matters
in memory: whatever they must remember lives in internal Kafka topics, so a cold start changes nothing.
"""

from __future__ import annotations

from typing import Any, Protocol


class ScheduledTask(Protocol):
    """One scheduled role for one flow; idempotent and safe to run twice at once."""

    name: str

    def interval_seconds(self) -> float:
        """How often the role runs for this flow (from the flow's ``*.interval.seconds``)."""
        ...

    def run_once(self) -> dict[str, Any]:
        """Do one round of work; returns a JSON-able summary for logs and progress lines."""
        ...
