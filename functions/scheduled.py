"""Scheduled functions (config sync, heartbeats, checkpoints): their contract with a runtime, and the Lambda one.

Each scheduled function package provides ``task_for(flow, clients) -> ScheduledTask``. Locally ``smm run`` calls
``run_once`` every ``interval_seconds``. In Lambda, EventBridge schedules fire at most once a minute, so a role with
a shorter interval (heartbeats every second) loops inside one invocation until its budget is spent, and a role with
a longer interval runs one pass; tasks and their Kafka clients live as long as the container and are rebuilt when
the configuration changes (``shared.aws.live_config``: a bad edit keeps the last good tasks running). Tasks keep
nothing that matters in memory: whatever they must remember lives in internal Kafka topics, so a cold start changes
nothing.

A run that fails (a cluster unreachable, a throttled API) is retried after ``retry_delay``, 1 s doubling to 30 s
and never more than the task's interval, rather than a whole interval later: in both runtimes, and in Lambda within
the invocation's budget (a one-pass function such as config sync passes ``retry_seconds`` to keep retrying).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from shared.aws.live_config import DEPLOYED, ConfigSource, LiveConfig
from shared.kafka.clients import KafkaClients
from shared.kafka.failures import is_authentication_failure
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-scheduled")

LOOP_SECONDS = 55.0  # leaves the rest of the minute for the next scheduled invocation to start
SAFETY_MARGIN_MS = 5_000  # returned well before Lambda's timeout, with metrics flushed
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
# How long a one-pass invocation (config sync) may keep retrying a failed task: a cluster that is briefly
# unreachable (a broker restarting) is waited for, a longer outage is left to the next scheduled invocation.
RETRY_BUDGET_SECONDS = 120.0


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
    """Tasks (by label) of the last good configuration, with the clients they share.

    ``client_id`` names the function's Kafka clients and, unless ``service`` is given, is its Powertools service
    (``ConfigRejected`` is published under it). A task's failure that is a refused login makes the next
    ``tasks()`` read the secrets afresh.
    """

    def __init__(
        self,
        build: Build,
        client_id: str,
        service: str | None = None,
        source: ConfigSource = DEPLOYED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build = build
        self._client_id = client_id
        self._live = LiveConfig(
            self._new_tasks,
            _TaskSet.close,
            service or client_id,
            source,
            is_refused_login=is_authentication_failure,
            clock=clock,
        )

    def tasks(self) -> dict[str, ScheduledTask]:
        return dict(self._live.current().tasks)

    def close(self) -> None:
        self._live.close()

    def _new_tasks(self, mirror_config: MirrorConfig) -> _TaskSet:
        clients = KafkaClients(mirror_config, client_id=self._client_id)
        try:
            tasks = self._build(mirror_config, clients)
        except BaseException:
            clients.close()
            raise
        return _TaskSet(clients, {label: _Watched(task, self._live.failed) for label, task in tasks.items()})


@dataclass(frozen=True)
class _TaskSet:
    clients: KafkaClients
    tasks: Mapping[str, ScheduledTask]

    def close(self) -> None:
        for task in self.tasks.values():
            close_task(task)
        self.clients.close()


class _Watched:
    """A task whose failures are shown to the live configuration (a refused login calls for fresh secrets)."""

    def __init__(self, task: ScheduledTask, failed: Callable[[BaseException], None]) -> None:
        self.task = task
        self.name = task.name
        self._failed = failed

    def interval_seconds(self) -> float:
        return self.task.interval_seconds()

    def run_once(self) -> dict[str, Any]:
        try:
            return self.task.run_once()
        except Exception as exc:
            self._failed(exc)
            raise

    def close(self) -> None:
        close_task(self.task)


def close_task(task: ScheduledTask) -> None:
    """Release what the task holds beyond its clients (``close`` is optional in the contract)."""
    close = getattr(task, "close", None)
    if callable(close):
        close()


@dataclass
class TaskReport:
    """What one task did during one invocation; ``errors`` are the failures since its last success."""

    runs: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)


def budget_seconds(context: Any, loop_seconds: float = LOOP_SECONDS) -> float:
    """How long an invocation may keep looping: ``loop_seconds``, less if Lambda's timeout is nearer."""
    remaining = (float(context.get_remaining_time_in_millis()) - SAFETY_MARGIN_MS) / 1000
    return max(0.0, min(loop_seconds, remaining))


def retry_delay(failures_in_a_row: int, interval: float) -> float:
    """How long a task waits after its ``failures_in_a_row``-th failure: 1 s doubling to 30 s, at most ``interval``."""
    backoff = RETRY_FIRST_SECONDS * 2.0 ** min(max(failures_in_a_row - 1, 0), 16)
    return max(0.0, min(backoff, RETRY_MAX_SECONDS, interval))


def run_tasks(
    tasks: Mapping[str, ScheduledTask],
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    retry_seconds: float = 0.0,
) -> dict[str, TaskReport]:
    """Run each task at its interval for ``seconds`` (0: one pass).

    A failing task is logged and retried after ``retry_delay`` while within ``max(seconds, retry_seconds)``;
    ``retry_seconds`` lets a one-pass invocation keep retrying what failed (``budget_seconds(context,
    RETRY_BUDGET_SECONDS)``).
    """
    start = clock()
    end = start + seconds
    retry_end = start + max(seconds, retry_seconds)
    due = dict.fromkeys(tasks, start)  # the tasks that run again in this invocation, and when
    failing = dict.fromkeys(tasks, 0)  # failures in a row
    reports = {label: TaskReport() for label in tasks}
    while due:
        for label, task in tasks.items():
            now = clock()
            if label not in due or due[label] > now:
                continue
            report = reports[label]
            report.runs += 1
            interval = task.interval_seconds()
            try:
                report.last = task.run_once()
            except Exception as exc:  # one task's failure must not stop the others; retried after a backoff
                failing[label] += 1
                report.failures += 1
                report.errors.append(f"{type(exc).__name__}: {exc}")
                delay = retry_delay(failing[label], interval)
                next_run, limit = clock() + delay, retry_end
                retry = delay if next_run < limit else None  # None: left to the next invocation
                logger.exception(
                    "scheduled task failed", extra={"task": label, "role": task.name, "retryInSeconds": retry}
                )
            else:
                failing[label] = 0
                report.errors.clear()
                next_run = due[label] + interval if due[label] + interval > now else now + interval  # no catch-up
                limit = end
            if next_run < limit:
                due[label] = next_run
            else:
                del due[label]
        if due:
            sleep(max(0.0, min(due.values()) - clock()))
    return reports
