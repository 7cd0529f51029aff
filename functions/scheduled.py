"""Scheduled functions (config sync, heartbeats, checkpoints): their contract with a runtime, and the Lambda one.

Each scheduled function package provides ``task_for(flow, clients) -> ScheduledTask``. Locally ``smm run`` calls
``run_once`` every ``interval_seconds``. In Lambda, EventBridge schedules fire at most once a minute, so a role with
a shorter interval (heartbeats every second) loops inside one invocation until its budget is spent, and a role with
a longer interval runs one pass; tasks and their Kafka clients live as long as the container and are rebuilt when
the configuration text changes. Tasks keep nothing that matters in memory: whatever they must remember lives in
internal Kafka topics, so a cold start changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from shared.aws import config_source
from shared.kafka.clients import KafkaClients
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-scheduled")

LOOP_SECONDS = 55.0  # leaves the rest of the minute for the next scheduled invocation to start
SAFETY_MARGIN_MS = 5_000  # returned well before Lambda's timeout, with metrics flushed


class ScheduledTask(Protocol):
    """One scheduled role for one flow; idempotent and safe to run twice at once."""

    name: str

    def interval_seconds(self) -> float:
        """How often the role runs for this flow (from the flow's ``*.interval.seconds``)."""
        ...

    def run_once(self) -> dict[str, Any]:
        """Do one round of work; returns a JSON-able summary for logs and progress lines."""
        ...


Build = Callable[[MirrorConfig, KafkaClients], Mapping[str, ScheduledTask]]


class TaskCache:
    """Tasks (by label) for the current configuration text, with the clients they share."""

    def __init__(self, build: Build, client_id: str) -> None:
        self._build = build
        self._client_id = client_id
        self._lock = threading.Lock()
        self._text: str | None = None
        self._clients: KafkaClients | None = None
        self._tasks: dict[str, ScheduledTask] = {}

    def tasks(self) -> dict[str, ScheduledTask]:
        text = config_source.config_text()
        with self._lock:
            if text != self._text:
                self.close()
                mirror_config = config_source.parse_text(text)
                self._clients = KafkaClients(mirror_config, client_id=self._client_id)
                self._tasks = dict(self._build(mirror_config, self._clients))
                self._text = text
            return dict(self._tasks)

    def close(self) -> None:
        for task in self._tasks.values():
            close = getattr(task, "close", None)
            if callable(close):
                close()
        if self._clients is not None:
            self._clients.close()
        self._clients, self._tasks, self._text = None, {}, None


@dataclass
class TaskReport:
    """What one task did during one invocation."""

    runs: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)


def budget_seconds(context: Any, loop_seconds: float = LOOP_SECONDS) -> float:
    """How long an invocation may keep looping: ``loop_seconds``, less if Lambda's timeout is nearer."""
    remaining = (float(context.get_remaining_time_in_millis()) - SAFETY_MARGIN_MS) / 1000
    return max(0.0, min(loop_seconds, remaining))


def run_tasks(
    tasks: Mapping[str, ScheduledTask],
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, TaskReport]:
    """Run each task at its interval for ``seconds`` (0: one pass); a failing task is logged and retried."""
    start = clock()
    end = start + seconds
    due = dict.fromkeys(tasks, start)
    reports = {label: TaskReport() for label in tasks}
    while True:
        for label, task in tasks.items():
            now = clock()
            if due[label] > now:
                continue
            report = reports[label]
            report.runs += 1
            try:
                report.last = task.run_once()
            except Exception as exc:  # one task's failure must not stop the others; the next turn retries
                report.failures += 1
                report.errors.append(f"{type(exc).__name__}: {exc}")
                logger.exception("scheduled task failed", extra={"task": label, "role": task.name})
            interval = task.interval_seconds()
            due[label] = due[label] + interval if due[label] + interval > now else now + interval  # no catch-up burst
        wake = min(due.values(), default=end)
        if wake >= end:
            return reports
        sleep(max(0.0, wake - clock()))
