"""The local runtime: an emulator of Lambda's Kafka event-source mappings that runs the mirror handler in-process.

Per flow and per matching source topic it runs what one ESM would: a consumer group on the source (the group
id the ESM uses), batches by batch size, batching window and the 6 MB payload cap, the exact ESM event JSON,
an in-process handler invocation, offsets committed only after the handler returns, and the whole batch
retried with backoff when it raises.

Alongside, it runs the scheduled roles (``shared.local.schedule``): config sync, heartbeats, checkpoints. The
emulated ESMs are created and stopped by config sync, through this module's reconciler, exactly where the
deployed config sync creates and disables Lambda ESMs; so new matching topics are picked up every
``refresh.topics.interval.seconds`` (or ``refresh_seconds``) by the same code path as in AWS.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from aws_lambda_powertools.metrics import EphemeralMetrics

from functions.mirror.handler import Handler, build_handler
from functions.mirror.mirror import Mirror
from shared.aws.esm import EsmMapping, EsmReconciler
from shared.aws.esm_event import SourceRecord, build_event
from shared.kafka.clients import KafkaClients
from shared.local import schedule
from shared.local.esm_consumers import EsmConsumer, esm_consumer
from shared.mm2.config import FlowConfig, MirrorConfig

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
# Retries of a failing batch back off to this: short, so a flow resumes within seconds of its cluster coming back.
MAX_BACKOFF_SECONDS = 5.0
# How long a poller may read nothing before it checks that its consumer is still a member of its group.
ORPHAN_CHECK_SECONDS = 20.0


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class FlowTotals:
    """Running totals of one flow, for progress lines and the end-of-run summary."""

    batches: int = 0
    records: int = 0
    mirrored: int = 0
    bytes: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    gaps: int = 0
    failures: int = 0
    topics: set[str] = field(default_factory=set)

    def add(self, report: dict[str, Any]) -> None:
        self.batches += 1
        self.records += report["records"]
        self.mirrored += report["mirrored"]
        self.bytes += report["bytes"]
        self.skipped += sum(report["skipped"].values())
        self.dead_lettered += report["deadLettered"]
        self.gaps += report["gaps"]


class TopicPoller(threading.Thread):
    """One emulated ESM: a source topic of one flow, its consumer group, and the handler it invokes."""

    def __init__(
        self,
        flow: FlowConfig,
        topic: str,
        clients: KafkaClients,
        handler: Handler,
        on_report: Callable[[dict[str, Any]], None],
        on_failure: Callable[[Exception], None],
        metrics: EphemeralMetrics,
    ) -> None:
        super().__init__(name=f"esm-{flow.name}-{topic}", daemon=True)
        self.flow = flow
        self.topic = topic
        self.group_id = flow.consumer_group_id(topic)
        self.clients = clients
        self.handler = handler
        self.on_report = on_report
        self.on_failure = on_failure
        self.metrics = metrics
        self.stopping = threading.Event()
        self.context = LambdaContext(function_name=f"smm-mirror-{flow.source}-{flow.target}")

    def run(self) -> None:
        """Poll, invoke, commit until stopped; a broken consumer is replaced, as Lambda restarts a poller."""
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                self._consume(backoff)
                return
            except Exception as exc:  # consumer or commit trouble: uncommitted records are simply read again
                self.on_failure(exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _consume(self, backoff: float) -> None:
        consumer = esm_consumer(self.clients, self.flow, self.topic)
        try:
            servers = list(self.clients.config.cluster(self.flow.source).bootstrap_servers)
            idle_since = time.monotonic()
            while not self.stopping.is_set():
                batch = self._next_batch(consumer)
                if not batch:
                    if time.monotonic() - idle_since > ORPHAN_CHECK_SECONDS:
                        idle_since = time.monotonic()
                        self._check_membership()
                    continue
                idle_since = time.monotonic()
                event = build_event(batch, servers)
                try:
                    report = self.handler(event, self.context)
                except Exception as exc:  # the ESM retries whatever the handler raised
                    self.on_failure(exc)
                    consumer.rewind(batch)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                finally:
                    self.metrics.clear_metrics()
                backoff = 0.5
                consumer.commit(batch)
                self.on_report(report)
        finally:
            consumer.close()

    def _check_membership(self) -> None:
        """Raise (so the consumer is replaced) if its group has no members: this consumer is not in it any more.

        Seen with kafka-python after partitions were added to the topic: the consumer missed the rebalance, the
        coordinator dropped it, and it went on polling the partitions it used to have, so the new ones were never
        read. A consumer that reads nothing because a peer (``smm run --processes``) holds the partitions is left
        alone: the group has members then.
        """
        described = self.clients.admin(self.flow.source).describe_groups([self.group_id]).get(self.group_id, {})
        if not described.get("members"):
            raise RuntimeError(
                f"the consumer of {self.topic} reads nothing and group {self.group_id} has no members "
                f"(state {described.get('group_state')}); replacing it"
            )

    def _next_batch(self, consumer: EsmConsumer) -> list[SourceRecord]:
        """Records until the batch size, the batching window or the payload cap is reached."""
        settings = self.flow.settings
        deadline = time.monotonic() + max(settings.batching_window_ms, 100) / 1000
        batch: list[SourceRecord] = []
        payload = 0
        while len(batch) < settings.batch_size and not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            fetched = consumer.poll_records(remaining, settings.batch_size - len(batch))
            for i, record in enumerate(fetched):
                # base64 grows payloads by 4/3; stop before the invocation would exceed Lambda's cap
                encoded = record.size * 4 // 3 + 200
                if batch and payload + encoded > MAX_PAYLOAD_BYTES:
                    consumer.rewind(fetched[i:])
                    return _in_order(batch)
                payload += encoded
                batch.append(record)
        return _in_order(batch)


def _in_order(batch: list[SourceRecord]) -> list[SourceRecord]:
    return sorted(batch, key=lambda r: (r.partition, r.offset))


class FlowRunner(EsmReconciler):
    """All emulated ESMs of one flow: config sync creates and removes them as it would Lambda ESMs."""

    def __init__(self, flow: FlowConfig, config: MirrorConfig, out: TextIO) -> None:
        self.flow = flow
        self.clients = KafkaClients(config, client_id=f"smm-local-{flow.name}")
        self.mirror = Mirror(flow, self.clients)
        self.totals = FlowTotals()
        self.out = out
        self.pollers: dict[str, TopicPoller] = {}
        self._retired: list[TopicPoller] = []
        self._lock = threading.Lock()

    # --- EsmReconciler: an emulated ESM is a poller; disabling or deleting one stops it ------------------

    def mappings(self) -> dict[str, EsmMapping]:
        with self._lock:
            return {topic: EsmMapping(topic, enabled=True) for topic in self.pollers}

    def create(self, topic: str) -> None:
        with self._lock:
            if topic in self.pollers:
                return
            metrics = EphemeralMetrics(namespace="ServerlessMirrorMaker", service="smm-mirror")
            handler = build_handler(lambda: self.mirror, metrics)
            poller = TopicPoller(self.flow, topic, self.clients, handler, self._report, self._failure, metrics)
            self.pollers[topic] = poller
            self.totals.topics.add(topic)
        self._say(f"{self.flow.name}: mirroring {topic} (consumer group {poller.group_id})")
        poller.start()

    def set_enabled(self, mapping: EsmMapping, enabled: bool) -> None:
        if enabled:
            self.create(mapping.topic)
        else:
            self._stop_poller(mapping.topic, "no longer matches")

    def delete(self, mapping: EsmMapping) -> None:
        self._stop_poller(mapping.topic, "was deleted from the source")

    def _stop_poller(self, topic: str, why: str) -> None:
        with self._lock:
            poller = self.pollers.pop(topic, None)
            if poller is None:
                return
            poller.stopping.set()
            self._retired.append(poller)
        self._say(f"{self.flow.name}: {topic} {why}; its consumer stopped")

    def stop(self) -> None:
        with self._lock:
            pollers = [*self.pollers.values(), *self._retired]
        for poller in pollers:
            poller.stopping.set()
        for poller in pollers:
            poller.join(timeout=30)
        self.mirror.close()

    def _report(self, report: dict[str, Any]) -> None:
        with self._lock:
            self.totals.add(report)

    def _failure(self, exc: Exception) -> None:
        with self._lock:
            self.totals.failures += 1
        self._say(f"{self.flow.name}: batch failed, will retry: {type(exc).__name__}: {exc}", err=True)

    def _say(self, line: str, err: bool = False) -> None:
        print(line, file=sys.stderr if err else self.out, flush=True)


def run(
    config: MirrorConfig,
    duration: float | None = None,
    out: TextIO = sys.stdout,
    refresh_seconds: float | None = None,
    progress_seconds: float = 10.0,
    stop: threading.Event | None = None,
) -> dict[str, FlowTotals]:
    """Run every enabled flow and the scheduled roles until ``duration`` elapses or ``stop`` is set.

    ``refresh_seconds`` overrides ``refresh.topics.interval.seconds`` (topic discovery); returns each flow's totals.
    """
    stop = stop or threading.Event()
    runners = {flow.name: FlowRunner(flow, config, out) for flow in config.enabled_flows()}
    if not runners:
        print("no flow is enabled: set A->B.enabled = true for at least one pair", file=sys.stderr)
        return {}
    started = time.monotonic()
    next_progress = started + progress_seconds
    tasks_stop = threading.Event()
    runtime = schedule.LocalRuntime(reconciler_for=lambda f: runners.get(f.name), refresh_seconds=refresh_seconds)
    tasks: list[schedule.TaskThread] = []
    try:
        tasks = schedule.start_tasks(config, runtime, tasks_stop, out)
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if now >= next_progress:
                _progress(list(runners.values()), tasks, out, now - started)
                next_progress = now + progress_seconds
            stop.wait(0.2)
    finally:
        # Scheduled tasks first, so config sync starts no poller while the pollers are being stopped.
        tasks_stop.set()
        for task in tasks:
            task.join(timeout=30)
        for runner in runners.values():
            runner.stop()
    _progress(list(runners.values()), tasks, out, time.monotonic() - started)
    return {name: r.totals for name, r in runners.items()}


def _progress(runners: list[FlowRunner], tasks: list[schedule.TaskThread], out: TextIO, elapsed: float) -> None:
    for r in runners:
        t = r.totals
        rate = t.mirrored / elapsed if elapsed > 0 else 0.0
        print(
            f"[{elapsed:6.1f}s] {r.flow.name}: {len(t.topics)} topic(s), {t.mirrored} records mirrored "
            f"({t.bytes} bytes, {rate:.0f} rec/s), {t.skipped} skipped, {t.dead_lettered} dead-lettered, "
            f"{t.gaps} gaps, {t.failures} failed batches",
            file=out,
            flush=True,
        )
    if tasks:
        print(f"[{elapsed:6.1f}s] scheduled: {schedule.progress(tasks)}", file=out, flush=True)


def totals_json(totals: dict[str, FlowTotals]) -> str:
    return json.dumps(
        {name: {**vars(t), "topics": sorted(t.topics)} for name, t in totals.items()}, indent=2, sort_keys=True
    )
