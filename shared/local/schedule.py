"""The scheduled roles under ``smm run``: which tasks run for which flow, and a thread per task.

``FACTORIES`` is the registry: each entry turns a flow into its task (or None when the role does not apply to
that flow), through the same ``task_for(flow, clients)`` the Lambda handlers use. Config sync gets the local
ESM reconciler and the ``--refresh`` override; heartbeats run for every pair with ``emit.heartbeats.enabled``,
enabled or not (MM2's rule); a role whose module is not there yet (checkpoints) is skipped.

Each task runs in its own thread with its own Kafka clients, every ``interval_seconds``; a failure is printed
and the task runs again after ``functions.scheduled.retry_delay`` (1 s doubling to 30 s, at most its interval), as
a Lambda invocation retries within its budget: a cluster that is down as ``smm run`` starts is mirrored from soon
after it is back, not one ``refresh.topics.interval.seconds`` later.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from functions.config_sync import config_sync
from functions.heartbeats import heartbeats
from functions.scheduled import ScheduledTask, close_task, retry_delay
from shared.aws.esm import EsmReconciler
from shared.kafka.clients import KafkaClients
from shared.mm2.config import FlowConfig, MirrorConfig

# Where a role's ``task_for`` may live, first match wins: the module may be added by another change.
CHECKPOINT_MODULES = ("functions.checkpoints.checkpoints", "functions.checkpoints")
ERROR_REPEAT_SECONDS = 30.0  # the same failure is printed again at most this often
SUMMARY_CHARS = 200


@dataclass(frozen=True)
class LocalRuntime:
    """What the emulator gives the task factories."""

    reconciler_for: Callable[[FlowConfig], EsmReconciler | None]
    refresh_seconds: float | None = None


TaskFactory = Callable[[FlowConfig, KafkaClients, LocalRuntime], ScheduledTask | None]


def _config_sync(flow: FlowConfig, clients: KafkaClients, runtime: LocalRuntime) -> ScheduledTask | None:
    if not flow.enabled:
        return None
    return config_sync.task_for(
        flow, clients, reconciler=runtime.reconciler_for(flow), refresh_seconds=runtime.refresh_seconds
    )


def _heartbeats(flow: FlowConfig, clients: KafkaClients, runtime: LocalRuntime) -> ScheduledTask | None:
    return heartbeats.task_for(flow, clients) if flow.settings.emit_heartbeats_enabled else None


def _checkpoints(flow: FlowConfig, clients: KafkaClients, runtime: LocalRuntime) -> ScheduledTask | None:
    if not flow.enabled:
        return None
    task_for = optional_task_for(CHECKPOINT_MODULES)
    return task_for(flow, clients) if task_for is not None else None


FACTORIES: tuple[tuple[str, TaskFactory], ...] = (
    ("config-sync", _config_sync),
    ("heartbeats", _heartbeats),
    ("checkpoints", _checkpoints),
)


def optional_task_for(modules: Sequence[str]) -> Callable[[FlowConfig, KafkaClients], ScheduledTask] | None:
    """``task_for`` of the first of ``modules`` that exists and has one; None when none does."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # the module itself is missing (an import error inside it is a real error)
            raise
        task_for: Callable[[FlowConfig, KafkaClients], ScheduledTask] | None = getattr(module, "task_for", None)
        if task_for is not None:
            return task_for
    return None


class TaskThread(threading.Thread):
    """Runs one task every ``interval_seconds`` until ``stop`` is set; owns the task's Kafka clients."""

    def __init__(
        self, label: str, task: ScheduledTask, clients: KafkaClients, stop: threading.Event, out: TextIO
    ) -> None:
        super().__init__(name=f"task-{label}", daemon=True)
        self.label = label
        self.task = task
        self.clients = clients
        self.stop = stop
        self.out = out
        self.runs = 0
        self.failures = 0
        self.last: dict[str, Any] = {}
        self._failing = 0  # failures in a row
        self._last_error: tuple[str, float] | None = None

    def run(self) -> None:
        next_run = time.monotonic()
        try:
            while not self.stop.wait(max(0.0, next_run - time.monotonic())):
                started = time.monotonic()
                retry = self._run_once()
                if retry is None:
                    next_run = max(started + self.task.interval_seconds(), time.monotonic())
                else:
                    next_run = time.monotonic() + retry
        finally:
            close_task(self.task)
            self.clients.close()

    def _run_once(self) -> float | None:
        """One run; after a failure, the seconds until the next attempt."""
        try:
            summary = self.task.run_once()
        except Exception as exc:  # reported and retried after a backoff, like a failed scheduled run in Lambda
            self.runs += 1
            self.failures += 1
            self._failing += 1
            retry = retry_delay(self._failing, self.task.interval_seconds())
            self._report_failure(f"{type(exc).__name__}: {exc}", retry)
            return retry
        self.runs += 1
        self.last = summary
        self._failing = 0
        self._last_error = None
        if summary.get("changed"):
            print(f"{self.label}: {describe(summary)}", file=self.out, flush=True)
        return None

    def _report_failure(self, error: str, retry: float) -> None:
        now = time.monotonic()
        if (
            self._last_error is None
            or self._last_error[0] != error
            or now - self._last_error[1] >= ERROR_REPEAT_SECONDS
        ):
            print(f"{self.label}: failed, will retry in {retry:g}s: {error}", file=sys.stderr, flush=True)
            self._last_error = (error, now)


def describe(summary: dict[str, Any]) -> str:
    """A one-line account of what a run changed."""
    parts = []
    for key in ("created", "grown", "configsAltered", "aclsCreated", "esm"):
        if summary.get(key):
            parts.append(f"{key} {summary[key]}")
    text = "; ".join(parts) or "done"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def start_tasks(config: MirrorConfig, runtime: LocalRuntime, stop: threading.Event, out: TextIO) -> list[TaskThread]:
    """A started thread for every (flow, role) the registry yields a task for."""
    threads: list[TaskThread] = []
    for flow in config.flows:
        for role, factory in FACTORIES:
            clients = KafkaClients(config, client_id=f"smm-local-{flow.name}-{role}")
            task = factory(flow, clients, runtime)
            if task is None:
                clients.close()
                continue
            threads.append(TaskThread(f"{flow.name} {task.name}", task, clients, stop, out))
    for thread in threads:
        thread.start()
    return threads


def progress(threads: Sequence[TaskThread]) -> str:
    """One line: runs and failures per role."""
    roles: dict[str, list[TaskThread]] = {}
    for t in threads:
        roles.setdefault(t.task.name, []).append(t)
    return "; ".join(
        f"{role} {sum(t.runs for t in ts)} runs ({len(ts)} flow(s)), {sum(t.failures for t in ts)} failed"
        for role, ts in roles.items()
    )
