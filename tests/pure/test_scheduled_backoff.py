"""A scheduled task that fails is retried after a short capped backoff, not a whole interval later."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.scheduled import RETRY_BUDGET_SECONDS, budget_seconds, retry_delay, run_tasks
from shared.kafka.clients import KafkaClients
from shared.local.schedule import TaskThread
from shared.mm2 import config


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FlakyTask:
    """Fails its first ``failures`` runs (a cluster that is down), then succeeds; records when it ran."""

    interval: float
    clock: Clock
    failures: int = 0
    name: str = "flaky"
    started: list[float] = field(default_factory=list)

    def interval_seconds(self) -> float:
        return self.interval

    def run_once(self) -> dict[str, Any]:
        self.started.append(round(self.clock.now, 2))
        self.clock.now += 0.01  # work takes time
        if len(self.started) <= self.failures:
            raise RuntimeError("cluster 'A' at a:9092 is unreachable")
        return {"runs": len(self.started)}


def test_the_backoff_doubles_from_one_second_to_thirty_and_never_exceeds_the_interval() -> None:
    assert [retry_delay(n, 600.0) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [retry_delay(n, 5.0) for n in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]
    assert retry_delay(1, 0.5) == 0.5  # heartbeats every 0.5 s: retried at their interval
    assert retry_delay(10_000, 600.0) == 30.0


def test_a_failing_task_is_retried_with_backoff_within_the_loop() -> None:
    clock = Clock()
    down = FlakyTask(600.0, clock, failures=1_000)
    report = run_tasks({"down": down}, 55.0, clock, clock.sleep)["down"]
    assert down.started == [0.0, 1.01, 3.02, 7.03, 15.04, 31.05]  # the next would be at 61: past the budget
    assert report.failures == 6 and len(report.errors) == 6


def test_a_one_pass_invocation_retries_what_failed_within_the_retry_budget() -> None:
    """Config sync: one pass, but a cluster that is back within the budget is synced in this invocation."""
    clock = Clock()
    flaky, fine = FlakyTask(600.0, clock, failures=3), FlakyTask(600.0, clock)
    reports = run_tasks({"flaky": flaky, "fine": fine}, 0, clock, clock.sleep, retry_seconds=RETRY_BUDGET_SECONDS)
    assert flaky.started == [0.0, 1.01, 3.02, 7.03] and fine.started == [0.01]  # a success is not repeated
    assert reports["flaky"].failures == 3 and reports["flaky"].errors == []  # recovered: nothing to raise
    assert reports["flaky"].last == {"runs": 4}


def test_the_retry_budget_ends_the_retries() -> None:
    clock = Clock()
    down = FlakyTask(600.0, clock, failures=1_000)
    report = run_tasks({"down": down}, 0, clock, clock.sleep, retry_seconds=10.0)["down"]
    assert down.started == [0.0, 1.01, 3.02, 7.03]  # the next would be at 15
    assert report.errors == ["RuntimeError: cluster 'A' at a:9092 is unreachable"] * 4
    assert clock.now < 10.0


def test_without_a_retry_budget_one_pass_runs_once() -> None:
    clock = Clock()
    down = FlakyTask(600.0, clock, failures=1)
    assert run_tasks({"down": down}, 0, clock, clock.sleep)["down"].failures == 1
    assert down.started == [0.0]


def test_a_success_after_failures_goes_back_to_the_interval() -> None:
    clock = Clock()
    task = FlakyTask(10.0, clock, failures=1)
    run_tasks({"t": task}, 55.0, clock, clock.sleep)
    assert task.started == [0.0, 1.01, 11.01, 21.01, 31.01, 41.01, 51.01]


def test_the_retry_budget_is_capped_by_the_time_lambda_leaves() -> None:
    @dataclass
    class Context:
        remaining_ms: int

        def get_remaining_time_in_millis(self) -> int:
            return self.remaining_ms

    assert budget_seconds(Context(900_000), RETRY_BUDGET_SECONDS) == RETRY_BUDGET_SECONDS
    assert budget_seconds(Context(65_000), RETRY_BUDGET_SECONDS) == 60.0


# --- the local runtime's thread ----------------------------------------------------------------------------


class WallClockTask(FlakyTask):
    def run_once(self) -> dict[str, Any]:
        self.clock.now = time.monotonic()
        return super().run_once()


def test_the_local_thread_retries_after_the_backoff_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    task = WallClockTask(600.0, Clock(), failures=1, name="config-sync")
    stop = threading.Event()
    mirror_config = config.parse_text("clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\n")
    thread = TaskThread("A->B config-sync", task, KafkaClients(mirror_config), stop, io.StringIO())
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(task.started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(task.started) == 2, "not retried within 30 s (its interval is 600 s)"
    assert 0.9 <= task.started[1] - task.started[0] < 5
    assert thread.runs == 2 and thread.failures == 1
    assert capsys.readouterr().err == (
        "A->B config-sync: failed, will retry in 1s: RuntimeError: cluster 'A' at a:9092 is unreachable\n"
    )
