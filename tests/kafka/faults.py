"""Helpers for the fault-injection suite (``test_faults``): workloads, faults, the shipped examples' mapping
settings (``ShippedExample``), the lost/duplicated tally, and the results file the README's fault table is made
from (``FaultReport``, ``fault_table``).

Every record a workload produces has a unique value (``topic/partition/n``), so comparing source and target
tells a lost record from a duplicated one and shows whether first occurrences kept the source's order.
Source and target are read with ``read_committed``, as a consumer of an exactly-once flow reads; it changes
nothing for at-least-once (whose mirror writes no transactions).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from functions.mirror.handler import Handler, build_handler
from functions.mirror.mirror import BatchReport, Mirror
from functions.mirror.skipped import mirrored_group
from shared.aws.config_source import EventSourceTemplate
from shared.aws.esm import KAFKA_DESTINATION
from shared.aws.esm_event import MirrorPayload, SourceRecord, parse_event
from shared.cli.commands import _mapping_options
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import TopicRecord, read_topic
from shared.kafka.producers import KafkaPythonProducer
from shared.local import emulator
from shared.local.esm_policy import RETRIES_WITH_DESTINATION, ErrorHandling
from shared.mm2 import config
from shared.mm2.config import FlowConfig, MirrorConfig
from shared.mm2.formats import OffsetSync
from tests.kafka import fault_table
from tests.kafka.support import SINGLE_BROKER, run_flows

# Delivery modes the suite runs in, with the flow settings each needs; in exactly-once mode the tally also
# requires duplicated == 0 (``FaultResult.check``).
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
MODES: dict[str, dict[str, str]] = {AT_LEAST_ONCE: {}, EXACTLY_ONCE: {"B.exactly.once.source.support": "enabled"}}
POLL_SECONDS = 0.25
POISON_MARK = b"/poison"  # a record whose value ends so is one the mirror cannot write while ``Poison`` is active
SMM = Path(sys.executable).with_name("smm")


# --- configuration ---------------------------------------------------------------------------------------


def properties(clusters: Mapping[str, str], flows: Mapping[str, str], **settings: str) -> dict[str, str]:
    """An mm2.properties map over ``clusters`` (alias -> bootstrap) with ``flows`` (``"A->B": topics``) enabled."""
    props = {"clusters": ", ".join(clusters), **SINGLE_BROKER}
    props.update({f"{alias}.bootstrap.servers": bootstrap for alias, bootstrap in clusters.items()})
    for flow, topics in flows.items():
        props[f"{flow}.enabled"] = "true"
        props[f"{flow}.topics"] = topics
    props.update(settings)
    return props


def write_properties(path: Path, props: Mapping[str, str]) -> MirrorConfig:
    """Write ``props`` as an mm2.properties file for ``smm run`` and return the configuration it holds.

    Backslashes are escapes in .properties files, so a regex's ``\\.`` is written as ``\\\\.``.
    """
    escaped = {key: value.replace("\\", "\\\\") for key, value in props.items()}
    path.write_text("".join(f"{key} = {value}\n" for key, value in escaped.items()), encoding="utf-8")
    return config.load(path)


# --- the shipped examples' mapping settings ----------------------------------------------------------------

EXAMPLES = fault_table.ROOT / "infra" / "examples"
# The emulator's retry backoff cap in rows run under an example's settings (its default, emulator.MAX_BACKOFF_SECONDS,
# is 5 s), so that a mapping's 10 retries take about a second besides the invocations themselves.
QUICK_BACKOFF_SECONDS = 0.1


@dataclass(frozen=True)
class ShippedExample:
    """A flow of a shipped example (``infra/examples/<name>``) with the mapping settings that ``smm run
    <name>/mm2.properties --settings <name>/deploy.json`` gives it, the retry backoff capped at
    ``QUICK_BACKOFF_SECONDS``. A test flow takes the example flow's name (its cluster aliases), so the example's
    per-flow settings apply to it as written."""

    name: str
    flow: str
    options: emulator.MappingOptions

    @classmethod
    def load(cls, name: str, flow: str) -> ShippedExample:
        directory = EXAMPLES / name
        example = config.load(directory / "mm2.properties")
        # The CLI's own reading: infra.settings.load, settings.event_source_for(flow), the EventSourceTemplate.
        options = _mapping_options(str(directory / "deploy.json"), example)
        assert flow in options, f"the {name} example has no enabled flow {flow!r} (it has {', '.join(options)})"
        source, _, target = flow.partition(config.FLOW_ARROW)
        assert not example.flow(source, target).exactly_once, f"{name} example, {flow}: the rows run at-least-once"
        return cls(name, flow, replace(options[flow], max_backoff_seconds=QUICK_BACKOFF_SECONDS))

    @property
    def source(self) -> str:
        return self.flow.partition(config.FLOW_ARROW)[0]

    @property
    def target(self) -> str:
        return self.flow.partition(config.FLOW_ARROW)[2]

    @property
    def template(self) -> EventSourceTemplate:
        return self.options.template

    @property
    def failure_topic(self) -> str | None:
        """The Kafka failure topic (on the source cluster) of a ``kafka://`` on-failure destination."""
        destination = self.template.on_failure or ""
        return destination.removeprefix(KAFKA_DESTINATION) if destination.startswith(KAFKA_DESTINATION) else None

    def settings(self) -> str:
        """The mapping settings as Lambda applies them: retries, record age, bisect, on-failure destination."""
        handling = ErrorHandling.of(self.template)
        if handling.max_retries is None:
            words = ["unlimited retries"]
        elif self.template.max_retry_attempts in (None, -1):
            words = [f"{handling.max_retries} retries (Lambda's cap with a destination)"]
        else:
            words = [f"{handling.max_retries} retries"]
        if handling.max_record_age_ms is not None:
            words.append(f"record age {handling.max_record_age_ms // 1000} s")
        if handling.bisect:
            words.append("bisect on error")
        words.append(self.template.on_failure or "no on-failure destination")
        return ", ".join(words)

    def label(self) -> str:
        return f"{self.name} example, {self.flow}: {self.settings()}"

    def past_budget(self, totals: emulator.FlowTotals, give_ups: int) -> bool:
        """Whether the flow's mappings went ``give_ups`` times through a retry budget: gave up that many batches if
        they may skip; otherwise failed as many invocations as a mapping capped at Lambda's 10 retries needs to."""
        if self.template.may_skip:
            return totals.given_up_batches >= give_ups
        return totals.failed_batches >= give_ups * (RETRIES_WITH_DESTINATION + 1)


# --- waiting ---------------------------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout: float, explain: Callable[[], str] = str) -> float:
    """Poll ``check`` until it holds; returns the seconds it took, or fails naming ``what`` and ``explain()``.

    A check that cannot reach a cluster (one coming back from an outage, say) has simply not passed yet.
    """
    started = time.monotonic()
    error = ""
    while True:
        try:
            if check():
                return time.monotonic() - started
        except KafkaError as exc:
            error = f"last error: {type(exc).__name__}: {exc}\n"
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s\n{error}{explain()}")
        time.sleep(POLL_SECONDS)


def lag(
    clients: KafkaClients, flow: FlowConfig, topics: Iterable[str], group: Callable[[str], str] | None = None
) -> dict[TopicPartition, tuple[int, int]]:
    """Source partitions a group of the flow has not committed to the end: tp -> (committed, end).

    ``group`` names it per topic: by default the ESM's (``flow.consumer_group_id``).
    """
    group = group or flow.consumer_group_id
    behind: dict[TopicPartition, tuple[int, int]] = {}
    for topic in topics:
        info = clients.topic_info(flow.source, topic, refresh=True)
        tps = [TopicPartition(topic, p) for p in range(info.partitions if info else 0)]
        committed = clients.committed_offsets(flow.source, group(topic))
        for tp, end in clients.latest_offsets(flow.source, tps).items():
            if committed.get(tp, 0) < end:
                behind[tp] = (committed.get(tp, 0), end)
    return behind


def wait_drained(
    clients: KafkaClients, flow: FlowConfig, topics: Iterable[str], timeout: float, explain: Callable[[], str] = str
) -> float:
    """Until the flow has mirrored and committed every record of ``topics`` (the handler acks before commits)."""
    topics = list(topics)

    def why() -> str:
        try:
            behind = lag(clients, flow, topics)
        except KafkaError as exc:
            return f"cannot read offsets: {exc}\n{explain()}"
        text = ", ".join(f"{tp.topic}-{tp.partition}: {c}/{e}" for tp, (c, e) in sorted(behind.items()))
        groups = "\n".join(group_members(clients, flow.source, flow.consumer_group_id(t)) for t in topics)
        return f"committed/end per partition: {text}\n{groups}\n{explain()}"

    return wait_until(f"flow {flow.name} drained {topics}", lambda: not lag(clients, flow, topics), timeout, why)


def wait_mirrored(
    clients: KafkaClients,
    flow: FlowConfig,
    topics: Iterable[str],
    recovers: bool,
    timeout: float,
    explain: Callable[[], str] = str,
) -> float:
    """``wait_drained``, and when the flow's mirror copies what its mappings skip (``recovers``), until the mirror's
    own position (``functions/mirror/skipped.py``) is at the end too: every skipped range has been copied."""
    topics = list(topics)
    took = wait_drained(clients, flow, topics, timeout, explain)
    if not recovers:
        return took

    def behind() -> dict[TopicPartition, tuple[int, int]]:
        return lag(clients, flow, topics, partial(mirrored_group, flow))

    def why() -> str:
        text = ", ".join(f"{tp.topic}-{tp.partition}: {m}/{e}" for tp, (m, e) in sorted(behind().items()))
        return f"mirrored/end per partition: {text}\n{explain()}"

    copied = f"flow {flow.name} copied every skipped range of {topics}"
    return took + wait_until(copied, lambda: not behind(), timeout, why)


def group_members(clients: KafkaClients, alias: str, group: str) -> str:
    """A consumer group's state and who holds which partitions: why an emulated ESM is not consuming."""
    try:
        info = clients.admin(alias).describe_groups([group])[group]
    except KafkaError as exc:
        return f"group {group}: cannot describe it: {exc}"
    members = [f"{m.get('member_id')}: {m.get('member_assignment')}" for m in info.get("members") or ()]
    return f"group {group}: {info.get('group_state')}, members {members or 'none'}"


# --- workloads -------------------------------------------------------------------------------------------


class SteadyProducer:
    """Numbered records, round-robin over the partitions of ``topics``, at ``rate`` per second in a thread.

    A fault then strikes a flow in motion rather than a finished backlog. ``stop`` flushes and fails if any
    send failed, so "produced" is exactly what the source holds.
    """

    def __init__(self, bootstrap: str, topics: Mapping[str, int], rate: float, total: int | None = None) -> None:
        self.rate = rate
        self.total = total
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        self._partitions = dict(topics)
        self._next: Counter[tuple[str, int]] = Counter()
        self._futures: list[Any] = []
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._producer.close(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set() and (self.total is None or self._sent < self.total):
            due = int((time.monotonic() - started) * self.rate)
            if self.total is not None:
                due = min(due, self.total)
            with self._lock:
                targets = [(t, p) for t, n in self._partitions.items() for p in range(n)]
                while self._sent < due:
                    topic, partition = targets[self._sent % len(targets)]
                    n = self._next[(topic, partition)]
                    self._next[(topic, partition)] += 1
                    value = f"{topic}/{partition}/{n}".encode()
                    self._futures.append(self._producer.send(topic, key=b"k%d" % n, value=value, partition=partition))
                    self._sent += 1
            self._stop.wait(0.05)

    def grow(self, admin_clients: KafkaClients, alias: str, topic: str, partitions: int) -> None:
        """Add partitions to ``topic`` and send to them too, once this producer's metadata knows them."""
        admin_clients.admin(alias).create_partitions({topic: partitions})
        if not KafkaPythonProducer(self._producer).await_partitions(topic, partitions, timeout=30):
            raise AssertionError(f"the test producer never saw {partitions} partitions of {topic}")
        with self._lock:
            self._partitions[topic] = partitions

    def finish_after(self, more: int) -> None:
        """Send ``more`` records after those sent so far, then end (``wait_done``)."""
        with self._lock:
            self.total = self._sent + more

    def wait_done(self, timeout: float) -> None:
        """Until ``total`` records were sent (the thread ends by itself)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the test producer did not send {self.total} records in {timeout:g} s"

    def stop(self) -> int:
        """Stop producing; returns how many records were produced, all acknowledged by the source."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._producer.flush(timeout=60)
        failed = [f.exception for f in self._futures if f.failed()]
        assert not failed, f"{len(failed)} test records were not produced, e.g. {failed[0]!r}"
        return self._sent


# --- faults ----------------------------------------------------------------------------------------------


class InjectedFault(RuntimeError):
    """Raised by an ``Injection``; nothing else raises it, so a retried batch is known to be ours."""


@dataclass
class Injection:
    """Makes a patched method raise instead of running on chosen calls (or, with ``after``, once it has run): the
    failure lands at one exact point of a batch. Only calls that ``matches`` are counted, so other flows' and
    topics' batches are left alone."""

    fail_on: Collection[int]
    after: bool = False
    calls: int = 0
    fired: int = 0

    def install(
        self,
        monkeypatch: pytest.MonkeyPatch,
        owner: type,
        name: str,
        matches: Callable[..., bool] = lambda *args: True,
    ) -> None:
        real = getattr(owner, name)

        def patched(obj: Any, *args: Any, **kwargs: Any) -> Any:
            if not matches(obj, *args, **kwargs):
                return real(obj, *args, **kwargs)
            self.calls += 1
            if self.calls not in self.fail_on:
                return real(obj, *args, **kwargs)
            if self.after:
                real(obj, *args, **kwargs)
            self.fired += 1
            raise InjectedFault(f"injected into {owner.__name__}.{name}, call {self.calls}")

        monkeypatch.setattr(owner, name, patched)


@dataclass
class LongestBatch:
    """Times ``Mirror.mirror``: how long one batch held its handler (blocked in flush during an outage, say)."""

    seconds: float = 0.0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = Mirror.mirror

        def timed(mirror: Mirror, batch: Sequence[SourceRecord], deadline: float | None = None) -> BatchReport:
            started = time.monotonic()
            try:
                return real(mirror, batch, deadline)
            finally:
                self.seconds = max(self.seconds, time.monotonic() - started)

        monkeypatch.setattr(Mirror, "mirror", timed)


@dataclass
class FailedBatches:
    """Counts the batches whose handler invocation raised in the in-process local runtime: what the emulated ESM
    retries as a failed batch. ``after_ack`` adds up the failures the mirror reported and survived in batches
    that succeeded (``afterAckFailures``: offset syncs or gap checks that failed once the records were acked).

    The emulator's own ``FlowTotals.failures`` is not used: it also counts consumer errors (a poller whose
    consumer, commit or group membership broke and was replaced), which are no failed batch.
    """

    count: int = 0
    after_ack: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap every handler the emulator builds from now on (one per emulated ESM)."""
        real = build_handler  # what the emulator calls, by this name, for each poller's handler

        def counting(*args: Any, **kwargs: Any) -> Handler:
            handler = real(*args, **kwargs)

            def counted(event: MirrorPayload, context: Any) -> dict[str, Any]:
                try:
                    report = handler(event, context)
                except Exception:
                    with self._lock:
                        self.count += 1
                    raise
                with self._lock:
                    self.after_ack += int(report.get("afterAckFailures", 0))
                return report

            return counted

        monkeypatch.setattr(emulator, "build_handler", counting)


class Poison:
    """Makes the mirror fail any write that holds a poisoned record (a value ending in ``POISON_MARK``) until
    ``cure``: a batch the mapping delivers and a range the mirror copies from the source alike, as a record the
    function cannot handle fails wherever it comes from. Counts, per flow, the failed writes and those that held the
    poisoned record alone (bisected out of its batch)."""

    def __init__(self) -> None:
        self.active = threading.Event()
        self.active.set()
        self.failures: Counter[str] = Counter()
        self.alone: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = Mirror._mirror  # where both the mapping's batches and copied ranges are written

        def poisoned(mirror: Mirror, partitions: list[tuple[tuple[str, int], list[SourceRecord]]], report: Any) -> None:
            values = [r.value or b"" for _, batch in partitions for r in batch]
            if self.active.is_set() and any(v.endswith(POISON_MARK) for v in values):
                with self._lock:
                    self.failures[mirror.flow.name] += 1
                    self.alone[mirror.flow.name] += len(values) == 1
                raise InjectedFault(f"injected: a poisoned record among {len(values)} of flow {mirror.flow.name}")
            real(mirror, partitions, report)

        monkeypatch.setattr(Mirror, "_mirror", poisoned)

    def cure(self) -> None:
        self.active.clear()


class SmmProcess:
    """``smm run CONFIG`` as a real child process: the ESM emulator and every scheduled function in it.

    Output goes to ``log`` (appended across restarts) so a failure can show what the process said.
    """

    def __init__(self, config_path: Path, log: Path, duration: float = 240.0, processes: int = 1) -> None:
        self.config_path = config_path
        self.log = log
        self.duration = duration
        self.processes = processes
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmmProcess:
        command = [str(SMM), "run", str(self.config_path), "--duration", f"{self.duration:g}", "--progress", "2"]
        command += ["--processes", str(self.processes)]
        if not SMM.exists():
            command[:1] = [sys.executable, "-m", "shared.cli.commands"]
        with self.log.open("ab") as out:
            out.write(f"--- {' '.join(command)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: no handler returns, no offset is committed, no client closes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: every thread stands still (what it had already sent still reaches the brokers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> None:
        """Ctrl-C (a clean shutdown); SIGKILL if that hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a paused process would not see the Ctrl-C
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no smm output)"
        return f"last lines of {self.log}:\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def local_runtime(mirror_config: MirrorConfig, timeout: float = 300.0) -> Iterator[dict[str, Any]]:
    """The local runtime in-process, in the background for the block; yields its totals (filled at the end)."""
    done = threading.Event()
    totals: dict[str, Any] = {}

    def run() -> None:
        totals.update(run_flows(mirror_config, until=done.is_set, timeout=timeout))

    thread = threading.Thread(target=run, name="smm-run", daemon=True)
    thread.start()
    try:
        yield totals
    finally:
        done.set()
        thread.join(timeout=120)


def topic_ids(clients: KafkaClients, alias: str, topics: Iterable[str]) -> dict[str, tuple[str, int]]:
    """topic -> (topic id, partition count) on ``alias``: a topic deleted and created again gets a new id."""
    described = clients.admin(alias).describe_topic_partitions(sorted(topics))["topics"]
    return {t["name"]: (str(t["topic_id"]), len(t["partitions"])) for t in described if t["error_code"] == 0}


# --- the tally -------------------------------------------------------------------------------------------


def records(clients: KafkaClients, alias: str, topic: str) -> list[TopicRecord]:
    """Every committed record of ``topic`` on ``alias``, read to its end."""
    return read_topic(clients, alias, topic).records


def given_up_on(clients: KafkaClients, alias: str, failure_topic: str, topics: Collection[str]) -> list[SourceRecord]:
    """The records of ``topics`` that mappings sent to the Kafka failure topic ``failure_topic`` on ``alias``: Lambda's
    document per record (``shared/local/failure_destinations.py``) holds it as an ESM event under ``payload``."""
    found: list[SourceRecord] = []
    for message in records(clients, alias, failure_topic):
        _, given_up = parse_event(json.loads(message.value or b"{}")["payload"])
        found += [r for r in given_up if r.topic in topics]
    return found


@dataclass(frozen=True)
class FaultResult:
    """What one fault did to the data: the row of the suite's table, and the checks every mode must pass."""

    fault: str
    mode: str
    produced: int
    mirrored: int
    lost: int
    duplicated: int
    out_of_order: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # a few of the lost records, for the failure message
    notes: str = ""

    @classmethod
    def tally(
        cls,
        fault: str,
        mode: str,
        pairs: Iterable[tuple[Sequence[TopicRecord], Sequence[TopicRecord]]],
        notes: str = "",
    ) -> FaultResult:
        """Compare each (source, target) topic pair partition by partition; records are told apart by value."""
        produced = mirrored = lost = duplicated = 0
        out_of_order: list[str] = []
        missing: list[str] = []
        for source, target in pairs:
            wanted = _by_partition(source)
            got = _by_partition(target)
            for partition in sorted(wanted.keys() | got.keys()):
                src, dst = wanted.get(partition, []), got.get(partition, [])
                src_set, dst_set = set(src), set(dst)
                absent = [v for v in src if v not in dst_set]
                produced += len(src)
                mirrored += len(dst)
                lost += len(absent)
                duplicated += len(dst) - len(dst_set & src_set)
                missing.extend(f"{v!r} (partition {partition})" for v in absent[:3])
                if _first_occurrences(dst, src_set) != [v for v in src if v in dst_set]:
                    out_of_order.append(f"partition {partition} of {_topic_of(src or dst)}")
        return cls(fault, mode, produced, mirrored, lost, duplicated, tuple(out_of_order), tuple(missing[:10]), notes)

    def cells(self) -> tuple[str, ...]:
        return (
            self.fault,
            self.mode,
            *map(str, (self.produced, self.mirrored, self.lost, self.duplicated)),
            self.notes,
        )

    def line(self) -> str:
        return " | ".join(self.cells())

    def row(self) -> dict[str, Any]:
        """The row of the results file (``fault_table`` documents its keys)."""
        return {
            "scenario": self.fault,
            "mode": self.mode,
            "source_records": self.produced,
            "target_records": self.mirrored,
            "lost": self.lost,
            "duplicates": self.duplicated,
            "notes": self.notes,
        }

    def check(self) -> None:
        """lost = 0 and source order per partition in every mode; duplicated = 0 as well in exactly-once."""
        assert self.lost == 0, f"{self.line()}\n{self.lost} source records missing on the target, e.g. {self.missing}"
        assert not self.out_of_order, f"{self.line()}\nfirst occurrences out of source order in {self.out_of_order}"
        if self.mode == EXACTLY_ONCE:
            assert self.duplicated == 0, f"{self.line()}\n{self.duplicated} duplicates in exactly-once mode"


def _by_partition(records: Sequence[TopicRecord]) -> dict[int, list[bytes | None]]:
    grouped: dict[int, list[bytes | None]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        grouped.setdefault(r.partition, []).append(r.value)
    return grouped


def _first_occurrences(values: Sequence[bytes | None], among: set[bytes | None]) -> list[bytes | None]:
    seen: set[bytes | None] = set()
    firsts = []
    for v in values:
        if v in among and v not in seen:
            seen.add(v)
            firsts.append(v)
    return firsts


def _topic_of(values: Sequence[bytes | None]) -> str:
    first = values[0] if values else None
    return first.decode(errors="replace").rsplit("/", 2)[0] if first else "?"


def offset_sync_mismatches(
    clients: KafkaClients, flow: FlowConfig, topic: str, source: Sequence[TopicRecord], target: Sequence[TopicRecord]
) -> list[OffsetSync]:
    """Offset syncs of ``topic`` that do not point at the same record on both sides (should be none)."""
    at_source = {(r.partition, r.offset): r.value for r in source}
    at_target = {(r.partition, r.offset): r.value for r in target}
    syncs = [
        OffsetSync.deserialize(r.key or b"", r.value or b"")
        for r in records(clients, flow.offset_syncs_cluster(), flow.offset_syncs_topic())
    ]
    mine = [s for s in syncs if s.topic == topic]
    return [
        s
        for s in mine
        if (upstream := at_source.get((s.partition, s.upstream_offset))) is None
        or upstream != at_target.get((s.partition, s.downstream_offset))
    ]


class FaultReport:
    """The rows of one module: written to ``path`` (``fault_table.RESULTS``) as each test finishes, printed as a
    table when the module ends; ``make fault-table`` makes the README's table from the file.

    The file starts empty for each run, so it holds only what this run measured (``fault_table`` documents its
    format). ``rows`` names each scenario, in table order, with the delivery modes it runs in (in that order). A
    row is written as not passed and marked passed by ``passed`` once the test's checks held.
    """

    def __init__(self, path: Path | None, rows: Mapping[str, Sequence[str]], command: str) -> None:
        self.path = path
        self.rows = {scenario: list(modes) for scenario, modes in rows.items()}  # scenario -> its delivery modes
        self.command = command
        self.commit, self.dirty = _git_state()
        self.started = _now()
        self.finished: str | None = None
        self._results: dict[tuple[str, str], FaultResult] = {}
        self._passed: set[tuple[str, str]] = set()
        self._write()

    @property
    def results(self) -> list[FaultResult]:
        return [self._results[key] for key in sorted(self._results, key=self._rank)]

    def add(self, result: FaultResult) -> FaultResult:
        """Record (and print) a test's row; it counts as passed only once the test calls ``passed``."""
        key = (result.fault, result.mode)
        assert result.fault in self.rows, f"{result.fault!r} is not one of the suite's scenarios"
        assert result.mode in self.rows[result.fault], f"{result.fault!r} does not run in mode {result.mode!r}"
        self._results[key] = result
        self._passed.discard(key)
        print(result.line(), flush=True)
        self._write()
        return result

    def passed(self, result: FaultResult) -> None:
        """The test that added ``result`` passed every check."""
        self._passed.add((result.fault, result.mode))
        self._write()

    def finish(self) -> None:
        self.finished = _now()
        self._write()

    def document(self) -> dict[str, Any]:
        """The results file's content (``fault_table`` describes it)."""
        rows = [{**r.row(), "passed": (r.fault, r.mode) in self._passed} for r in self.results]
        missing = [f"{s} / {m}" for s, modes in self.rows.items() for m in modes if (s, m) not in self._results]
        return {
            "format": fault_table.FORMAT,
            "about": "Rows of the fault-injection suite, tests/kafka/test_faults.py; see tests/kafka/fault_table.py.",
            "command": self.command,
            "commit": self.commit,
            "dirty": self.dirty,
            "started": self.started,
            "finished": self.finished,
            "expected": sum(len(modes) for modes in self.rows.values()),
            "missing": missing,
            "complete": bool(self.finished) and not missing and all(r["passed"] for r in rows),
            "columns": fault_table.COLUMNS,
            "rows": rows,
        }

    def table(self) -> str:
        return fault_table.markdown_table([r.row() for r in self.results], padded=True)

    def emit(self, pytest_config: pytest.Config) -> None:
        """Print the table past pytest's output capture, so it shows in a plain ``pytest`` run."""
        if not self._results:
            return
        where = f"; written to {self.path}" if self.path else ""
        text = f"fault-injection results ({len(self._results)} rows{where})\n{self.table()}"
        plugins = pytest_config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        if reporter is None or capture is None:  # pytest run without its terminal or capture plugins
            print(text, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write("\n")
            for line in text.splitlines():
                reporter.write_line(line)

    def _rank(self, key: tuple[str, str]) -> tuple[int, int]:
        return list(self.rows).index(key[0]), self.rows[key[0]].index(key[1])

    def _write(self) -> None:
        """Replace the file in one step, so a reader never sees half of it."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.document(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, self.path)


def pytest_command(pytest_config: pytest.Config) -> str:
    """The command line that started this pytest run, as typed (``.venv/bin/pytest -q tests/kafka/...``)."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        head = ["python", "-m", "pytest"]
    elif program.is_absolute() and program.is_relative_to(Path.cwd()):
        head = [program.relative_to(Path.cwd()).as_posix()]
    else:
        head = [str(program)]
    return shlex.join([*head, *pytest_config.invocation_params.args])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether tracked files differ from it), or (None, None) outside a git checkout."""
    root = fault_table.ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())
