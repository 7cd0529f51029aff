"""The local runtime: an emulator of Lambda's Kafka event-source mappings that runs the mirror handler in-process.

Per flow and per matching source topic it runs what one ESM would: a consumer group on the source (the group
id the ESM uses), batches by batch size, batching window (as Lambda has it: whole seconds, 500 ms when unset) and
the 6 MB payload cap (of the event as compact JSON, bounded per record without building it), an in-process handler
invocation whose context counts down from the mirror function's timeout, and offsets committed only once the
mapping is done with the records. The handler gets the batch as a ``RecordBatch``: the records it would parse
from the ESM event, without the JSON and base64 round trip (``MappingOptions.exact_events`` builds, serialises
and parses the exact event instead, as Lambda delivers it).

Batching follows what AWS documents: a batch is invoked when it reaches the batch size, fills the payload, or the
window ends. With a window of 0 s the batch is invoked as soon as a poll returned records (an idle poller still
waits ``MIN_POLL_SECONDS`` per poll, so it does not spin). Records polled beyond the batch's cap are kept for the
next batch, not fetched again; records of partitions a rebalance takes away are dropped before they are invoked
(their next owner reads them from the committed offset). Batches are grouped by partition, each in offset order,
as the event's ``topic-partition`` lists are; which partition comes first is not specified by AWS.

A failed invocation is handled as the deployment's mapping would handle it: the flow's ``EventSourceTemplate``
(``MappingOptions``; ``smm run --settings`` reads it from the deploy settings). With Lambda's defaults the batch
is retried with capped backoff until it succeeds, so nothing is skipped. A retry limit, a maximum record age and
bisect on error act as ``shared.local.esm_policy`` describes; records the mapping gives up are committed past and
sent to the on-failure destination (``shared.local.failure_destinations``); the flow's ``Mirror`` is then told
that its mappings may skip (``recover_skipped``). Each of those modules says, per setting, what AWS documents,
what the emulator does, and what is unverified.

Not emulated: provisioned pollers (``smm run --processes`` shares a mapping's consumer groups instead), partial
batch responses (the mirror returns none), the timeout itself (an invocation that runs past it is not stopped,
where Lambda would count a function error), and Lambda's ``MaximumPayloadSizeExceeded`` (a single record over the
payload cap is passed to the function alone; unverified: whether Lambda skips such a record with default settings).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TextIO

from aws_lambda_powertools.metrics import EphemeralMetrics

from functions.mirror.handler import Handler, build_handler
from functions.mirror.mirror import Mirror
from shared.aws import config_source
from shared.aws.config_source import EventSourceTemplate
from shared.aws.esm import EsmMapping, EsmReconciler
from shared.aws.esm_event import (
    COMPACT,
    MirrorPayload,
    RecordBatch,
    SourceRecord,
    build_event,
    by_partition,
    envelope_bytes,
    payload_bytes,
)
from shared.kafka.clients import KafkaClients
from shared.local import schedule
from shared.local.esm_consumers import EsmConsumer, esm_consumer
from shared.local.esm_policy import BatchRun, ErrorHandling, GiveUp
from shared.local.failure_destinations import (
    FailedInvocation,
    FailureDestination,
    KafkaTopicDestination,
    failure_destination,
)
from shared.mm2.config import FlowConfig, MirrorConfig

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
# Retries of a failing batch back off to this: short, so a flow resumes within seconds of its cluster coming back.
MAX_BACKOFF_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 0.5
# The deployed mirror function's default timeout: infra.settings.DEFAULT_FUNCTIONS["mirror"].timeout_seconds.
MIRROR_TIMEOUT_SECONDS = 120
# What a flow's mappings get without deploy settings: Lambda's defaults (retry until it works, no destination).
LAMBDA_DEFAULTS = EventSourceTemplate("local")
# How long a poll waits at least, so that a batching window of 0 s does not spin.
MIN_POLL_SECONDS = 0.1
_PARTITION = itemgetter(1)  # SourceRecord.partition, read in C
# How long a poller may read nothing before it checks that its consumer is still a member of its group.
ORPHAN_CHECK_SECONDS = 20.0


@dataclass(frozen=True)
class MappingOptions:
    """How the emulated mappings of one flow behave: what a deployment would give them, and the retry pace."""

    template: EventSourceTemplate = LAMBDA_DEFAULTS
    timeout_seconds: float = MIRROR_TIMEOUT_SECONDS  # the mirror function's timeout (the context counts it down)
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    # Invoke with the exact ESM event, serialised and parsed as Lambda's runtime does (fidelity tests), instead of
    # the ``RecordBatch`` it parses to.
    exact_events: bool = False


DEFAULT_OPTIONS = MappingOptions()


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that Powertools and the functions read; one per invocation."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = MIRROR_TIMEOUT_SECONDS
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = "local"
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))


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
    recovered_records: int = 0  # copied from the source by the mirror itself after its mapping skipped them
    after_ack_failures: int = 0  # offset syncs or gap checks that failed after a batch was acknowledged
    failed_batches: int = 0  # invocations whose handler raised
    consumer_errors: int = 0  # the mapping's own trouble: polling, committing, membership, the failure destination
    given_up_batches: int = 0  # times the mapping moved past records the function never took
    given_up_records: int = 0
    sent_to_destination: int = 0  # given-up records handed to the on-failure destination
    topics: set[str] = field(default_factory=set)

    def add(self, report: dict[str, Any]) -> None:
        self.batches += 1
        self.records += report["records"]
        self.mirrored += report["mirrored"]
        self.bytes += report["bytes"]
        self.skipped += sum(report["skipped"].values())
        self.dead_lettered += report["deadLettered"]
        self.gaps += report["gaps"]
        self.recovered_records += report.get("recoveredRecords", 0)
        self.after_ack_failures += report.get("afterAckFailures", 0)

    def gave_up(self, given_up: GiveUp, sent: bool) -> None:
        self.given_up_batches += 1
        self.given_up_records += len(given_up.records)
        self.sent_to_destination += len(given_up.records) if sent else 0


class TopicPoller(threading.Thread):
    """One emulated ESM: a source topic of one flow, its consumer group, and the handler it invokes.

    ``on_failure`` hears of every failed invocation, ``on_consumer_error`` (by default ``on_failure`` too) of the
    mapping's own errors, after which its consumer is replaced, and ``on_given_up`` of records it moved past.
    """

    def __init__(
        self,
        flow: FlowConfig,
        topic: str,
        clients: KafkaClients,
        handler: Handler,
        on_report: Callable[[dict[str, Any]], None],
        on_failure: Callable[[Exception], None],
        metrics: EphemeralMetrics,
        *,
        options: MappingOptions = DEFAULT_OPTIONS,
        destination: FailureDestination | None = None,
        on_consumer_error: Callable[[Exception], None] | None = None,
        on_given_up: Callable[[GiveUp, bool], None] | None = None,
    ) -> None:
        super().__init__(name=f"esm-{flow.name}-{topic}", daemon=True)
        self.flow = flow
        self.topic = topic
        self.group_id = flow.consumer_group_id(topic)
        self.clients = clients
        self.handler = handler
        self.on_report = on_report
        self.on_failure = on_failure
        self.on_consumer_error = on_consumer_error or on_failure
        self.on_given_up = on_given_up or (lambda given_up, sent: None)
        self.metrics = metrics
        self.options = options
        self.handling = ErrorHandling.of(options.template)
        self.destination = destination
        self.servers = list(clients.config.cluster(flow.source).bootstrap_servers)
        self.stopping = threading.Event()
        self.function_name = f"smm-mirror-{flow.source}-{flow.target}"
        self._backoff = min(FIRST_BACKOFF_SECONDS, options.max_backoff_seconds)
        self._envelope = envelope_bytes(self.servers)
        # Records polled beyond the last batch's cap, in poll order: the next batch starts with them.
        self._overflow: list[SourceRecord] = []

    def run(self) -> None:
        """Poll, invoke, commit until stopped; a broken consumer is replaced, as Lambda restarts a poller."""
        backoff = min(FIRST_BACKOFF_SECONDS, self.options.max_backoff_seconds)
        while not self.stopping.is_set():
            try:
                self._consume()
                return
            except Exception as exc:  # consumer, commit or destination trouble: uncommitted records are read again
                self.on_consumer_error(exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_seconds)

    def _consume(self) -> None:
        consumer = esm_consumer(self.clients, self.flow, self.topic)
        self._overflow = []  # polled by the consumer this replaces: read again from the committed offsets
        try:
            idle_since = time.monotonic()
            while not self.stopping.is_set():
                batch = self._next_batch(consumer)
                if not batch:
                    if time.monotonic() - idle_since > ORPHAN_CHECK_SECONDS:
                        idle_since = time.monotonic()
                        self._check_membership()
                    continue
                self._deliver(consumer, batch)
                idle_since = time.monotonic()
        finally:
            consumer.close()

    def _deliver(self, consumer: EsmConsumer, batch: list[SourceRecord]) -> None:
        """Invoke until every record of ``batch`` is delivered or given up, committing as far as the mapping is done.

        The batch is kept while it is retried, and the consumer stays in its group meanwhile; if the poller stops
        first, the rest stays uncommitted and is read again by whichever consumer takes the partitions over.
        """
        run = BatchRun(batch, self.handling)
        committed: dict[tuple[str, int], int] = {}  # each partition's group offset: its first record here
        for r in batch:
            committed.setdefault((r.topic, r.partition), r.offset)
        while (records := run.next()) is not None and not self.stopping.is_set():
            context = LambdaContext(self.function_name, timeout_seconds=self.options.timeout_seconds)
            try:
                report = self.handler(self._payload(records), context)
            except Exception as exc:  # the ESM retries, splits or gives up whatever the handler raised
                self.on_failure(exc)
                invocation = FailedInvocation(context.aws_request_id, context.invoked_function_arn, self.servers)
                for given_up in run.failed(int(time.time() * 1000)):
                    self._give_up(given_up, invocation)
                self._rewind_overflow(consumer)
                self._wait(consumer, self._backoff)
                self._backoff = min(self._backoff * 2, self.options.max_backoff_seconds)
            else:
                run.succeeded()
                self._backoff = min(FIRST_BACKOFF_SECONDS, self.options.max_backoff_seconds)
                self.on_report(report)
            finally:
                self.metrics.clear_metrics()
            done = {key: offset for key, offset in run.committable().items() if committed.get(key) != offset}
            if done:
                consumer.commit(done)
                committed.update(done)

    def _payload(self, records: list[SourceRecord]) -> MirrorPayload:
        """What the handler is invoked with: the batch itself, or the exact event as Lambda's runtime hands it over."""
        if not self.options.exact_events:
            return RecordBatch(records)
        event: dict[str, Any] = json.loads(json.dumps(build_event(records, self.servers), separators=COMPACT))
        return event

    def _rewind_overflow(self, consumer: EsmConsumer) -> None:
        """Before waiting to retry: read the carried records again later rather than hold them while the consumer
        pauses (kafka-python 3.0.12 can stop fetching a partition paused with fetched records buffered)."""
        if self._overflow:
            consumer.rewind(self._overflow)
            self._overflow = []

    def _give_up(self, given_up: GiveUp, invocation: FailedInvocation) -> None:
        """Hand the records to the destination; if that fails, the error leaves them uncommitted."""
        if self.destination is not None:
            self.destination.send(given_up, invocation)
        self.on_given_up(given_up, self.destination is not None)

    def _wait(self, consumer: EsmConsumer, seconds: float) -> None:
        """Back off before the next attempt without leaving the group (which a silent consumer would)."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and (left := end - time.monotonic()) > 0:
            consumer.idle(min(left, 0.5))

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
        """Records until the batch size, the payload cap or the batching window is reached (window 0: until a poll
        returned records), starting with what the last batch left over; grouped by partition."""
        settings = self.flow.settings
        window = batching_window_seconds(settings.batching_window_ms)
        deadline = time.monotonic() + max(window, MIN_POLL_SECONDS)
        batch: list[SourceRecord] = []
        payload = self._envelope
        pending = self._without_revoked(consumer, self._overflow)
        self._overflow = []
        while True:
            for i, record in enumerate(pending):
                size = payload_bytes(record)
                if len(batch) >= settings.batch_size or (batch and payload + size > MAX_PAYLOAD_BYTES):
                    self._overflow = pending[i:]  # the invocation would exceed the batch size or Lambda's cap
                    if not consumer.carries_overflow:
                        self._rewind_overflow(consumer)
                    return _grouped(batch)
                payload += size
                batch.append(record)
            remaining = deadline - time.monotonic()
            full = len(batch) >= settings.batch_size
            if full or remaining <= 0 or self.stopping.is_set() or (batch and window == 0):
                return _grouped(batch)
            pending = consumer.poll_records(remaining, settings.batch_size - len(batch))
            if len(kept := self._without_revoked(consumer, batch)) < len(batch):
                batch, payload = kept, self._envelope + sum(map(payload_bytes, kept))

    @staticmethod
    def _without_revoked(consumer: EsmConsumer, records: list[SourceRecord]) -> list[SourceRecord]:
        """``records`` but those of partitions a rebalance revoked since: their next owner (possibly this consumer,
        from the committed offset) reads them again. What the rebalancing poll itself returned is current."""
        revoked = consumer.take_revoked()
        return [r for r in records if (r.topic, r.partition) not in revoked] if revoked else records


def batching_window_seconds(window_ms: int) -> float:
    """The batching window a deployed mapping gets for ``smm.batching.window.ms``: whole seconds, 0.5 if unset."""
    seconds = config_source.batching_window_seconds(window_ms)
    return config_source.LAMBDA_DEFAULT_BATCHING_WINDOW_MS / 1000 if seconds is None else seconds


def _grouped(batch: list[SourceRecord]) -> list[SourceRecord]:
    """The batch as the ESM event lists it: partition by partition, each in poll (offset) order. A stable sort on
    the partition (a poller reads one topic), cheap on the runs per partition that polls return."""
    return sorted(batch, key=_PARTITION)


class FlowRunner(EsmReconciler):
    """All emulated ESMs of one flow: config sync creates and removes them as it would Lambda ESMs."""

    def __init__(
        self, flow: FlowConfig, config: MirrorConfig, out: TextIO, options: MappingOptions = DEFAULT_OPTIONS
    ) -> None:
        self.flow = flow
        self.options = options
        self.clients = KafkaClients(config, client_id=f"smm-local-{flow.name}")
        self.mirror = Mirror(flow, self.clients, recover_skipped=options.template.may_skip)
        self.destination = failure_destination(options.template.on_failure, self.clients, flow)
        if isinstance(self.destination, KafkaTopicDestination):  # config sync creates it, as in a deployment
            self.failure_topic = self.destination.topic
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
            poller = TopicPoller(
                self.flow,
                topic,
                self.clients,
                handler,
                self._report,
                self._failed_batch,
                metrics,
                options=self.options,
                destination=self.destination,
                on_consumer_error=self._consumer_error,
                on_given_up=self._given_up,
            )
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

    def _failed_batch(self, exc: Exception) -> None:
        with self._lock:
            self.totals.failed_batches += 1
        self._say(f"{self.flow.name}: batch failed: {type(exc).__name__}: {exc}", err=True)

    def _consumer_error(self, exc: Exception) -> None:
        with self._lock:
            self.totals.consumer_errors += 1
        self._say(f"{self.flow.name}: consumer replaced after: {type(exc).__name__}: {exc}", err=True)

    def _given_up(self, given_up: GiveUp, sent: bool) -> None:
        with self._lock:
            self.totals.gave_up(given_up, sent)
        ranges = ", ".join(
            f"{topic}-{partition}@{records[0].offset}..{records[-1].offset}"
            for (topic, partition), records in by_partition(given_up.records)
        )
        where = f"sent to {self.options.template.on_failure}" if sent else "no on-failure destination"
        self._say(
            f"{self.flow.name}: the mapping gave up {len(given_up.records)} record(s) after "
            f"{given_up.invocations} invocation(s) ({given_up.condition}): {ranges}; {where}",
            err=True,
        )

    def _say(self, line: str, err: bool = False) -> None:
        print(line, file=sys.stderr if err else self.out, flush=True)


def run(
    config: MirrorConfig,
    duration: float | None = None,
    out: TextIO = sys.stdout,
    refresh_seconds: float | None = None,
    progress_seconds: float = 10.0,
    stop: threading.Event | None = None,
    mappings: Mapping[str, MappingOptions] | None = None,
) -> dict[str, FlowTotals]:
    """Run every enabled flow and the scheduled roles until ``duration`` elapses or ``stop`` is set.

    ``refresh_seconds`` overrides ``refresh.topics.interval.seconds`` (topic discovery); ``mappings`` gives flows
    (by name) what a deployment would give their mappings (Lambda's defaults otherwise). Returns each flow's totals.
    """
    stop = stop or threading.Event()
    options = mappings or {}
    runners = {
        flow.name: FlowRunner(flow, config, out, options.get(flow.name, DEFAULT_OPTIONS))
        for flow in config.enabled_flows()
    }
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
            f"{t.gaps} gaps, {t.recovered_records} recovered, {t.after_ack_failures} after-ack failures, "
            f"{t.failed_batches} failed batches, {t.consumer_errors} consumer errors, {t.given_up_records} records "
            f"given up in {t.given_up_batches} batches ({t.sent_to_destination} sent to the failure destination)",
            file=out,
            flush=True,
        )
    if tasks:
        print(f"[{elapsed:6.1f}s] scheduled: {schedule.progress(tasks)}", file=out, flush=True)


def totals_json(totals: dict[str, FlowTotals]) -> str:
    return json.dumps(
        {name: {**vars(t), "topics": sorted(t.topics)} for name, t in totals.items()}, indent=2, sort_keys=True
    )
