"""``make bench``: this project against Apache MirrorMaker 2 and the broker's own limit, on the same clusters.

One invocation starts two local clusters (src, dst), writes a fixed workload to ``src``, and measures:

1. the physical limit: Kafka's Java ``ProducerPerformance`` writing the same number and size of records to dst;
2. Apache MirrorMaker 2 (dedicated mode, same Kafka version) mirroring the workload src->dst, in the best
   configuration found here (its producer batching as smm's), at ``tasks.max = 1`` and at one task per core;
3. this project through the local runtime (``smm run``) with the project's default settings, once per other
   producer backend, and in exactly-once mode;
4. the mirror handler alone on ESM events of Lambda's maximum size, each decoded from its JSON text as Lambda's
   runtime does just before the invocation (CPU per record, no broker time; memory of one invocation);
5. replication latency p50/p99 at a steady rate, for MM2 and for this project.

Every mirror run starts from fresh remote topics and consumer groups and is timed to its last record on the
target; its CPU is that of the whole process tree, its memory the peak RSS of each process in it. The table gives
each run's ratio to the faster MM2 run and to the producer-perf limit, and the report ends with issue 14's goals,
met or not, judged on this invocation's figures. It writes ``results.json``, ``results.txt`` and ``results.png``,
and derives the Lambda cost per GB mirrored from the measured CPU at the published Lambda price.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_LIBS = REPO / ".kafka" / "bench-libs"
TOPIC = "bench"
LATENCY_TOPIC = "latency"
LAMBDA_MAX_PAYLOAD = 6 * 1024 * 1024
LAMBDA_MAX_BATCH = 10_000
# Lambda's published on-demand price per GB-second (us-east-1), arm64 and x86_64; a function given 1,769 MB has
# one full vCPU, so one CPU-second of handler work costs 1.769 GB-seconds.
LAMBDA_PRICE_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
LAMBDA_MEMORY_GB_PER_VCPU = 1.769
# MSK Replicator's per-GB charge (us-east-1) as remembered in ../shared/reference/aws.md §7: unverified.
MSK_REPLICATOR_PER_GB = 0.08
# ``--backends`` name for no ``smm.producer.backend`` line: the project's default, whatever it is.
DEFAULT_BACKEND = "default"
# MirrorMaker 2's records go through Connect's task producer (``dst.producer.*`` reaches it), whose Kafka defaults
# (16 KB batches, one request in flight) cap it at about half its speed here; with smm's own producer batching
# (1 MB, linger 5 ms) it mirrors twice as fast (/work/notes/perf-plan.md, "MirrorMaker 2 in the benchmark").
# Idempotence with 5 requests in flight (order still kept) was no slower, and a larger src.consumer.max.poll.records
# did not help: MM2 gets the first two.
MM2_BEST_PROPERTIES = {
    "dst.producer.batch.size": "1048576",
    "dst.producer.linger.ms": "5",
    "dst.producer.enable.idempotence": "true",
    "dst.producer.max.in.flight.requests.per.connection": "5",
}


@dataclass
class Workload:
    records: int
    value_bytes: int
    key_bytes: int
    partitions: int

    @property
    def payload_bytes(self) -> int:
        """Key, value and the two headers of every record (what both mirrors move)."""
        return self.records * (self.value_bytes + self.key_bytes + 2 * (2 + 8))


@dataclass
class Run:
    """One mirror run: time from start to the last record on the target, throughput and process CPU."""

    name: str
    seconds: float = 0.0
    first_record_seconds: float = 0.0
    records_per_second: float = 0.0
    mb_per_second: float = 0.0
    cpu_seconds: float = 0.0
    cpu_us_per_record: float = 0.0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    peak_rss_mb: list[float] = field(default_factory=list)  # per process of the tree, largest first
    kind: str = "smm"  # limit, mm2 or smm
    backend: str = ""  # smm: the producer backend as --backends names it
    exactly_once: bool = False
    processes: int = 1  # smm: processes sharing the partitions
    notes: list[str] = field(default_factory=list)


@dataclass
class Results:
    workload: Workload
    limit: Run | None = None
    runs: list[Run] = field(default_factory=list)
    handler: dict[str, dict[str, float]] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)


# --- clusters and clients ------------------------------------------------------------------------------------


@contextmanager
def clusters(state_dir: Path) -> Iterator[dict[str, str]]:
    from shared.local.broker import LocalBroker, free_port

    brokers = [LocalBroker(alias, free_port(), state_dir) for alias in ("src", "dst")]
    try:
        threads = [threading.Thread(target=b.start, kwargs={"timeout": 120}) for b in brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for b in brokers:
            if not b.is_running():
                raise RuntimeError(f"broker {b.alias} did not start; see {b.log_file}")
        yield {b.alias: b.bootstrap for b in brokers}
    finally:
        for b in brokers:
            b.stop()


def _admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap)


def _end_offsets(admin: Any, topic: str, partitions: int) -> int:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    try:
        found = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST for p in range(partitions)})
    except Exception:
        return 0
    return sum(o.offset for o in found.values())


def _committed(admin: Any, group: str) -> int:
    try:
        found = admin.list_group_offsets({group: None}).get(group, {})
    except Exception:
        return 0
    return sum(max(0, o.offset) for o in found.values())


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = _admin(bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        admin.close()


def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = _admin(bootstrap)
    try:
        doomed = [t for t in admin.list_topics() if t.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(t.startswith(prefix) for t in admin.list_topics()):
            time.sleep(0.5)
    finally:
        admin.close()


def _delete_groups(bootstrap: str, prefix: str) -> None:
    """Forget the previous run's progress; a group is deletable once its members have left."""
    admin = _admin(bootstrap)
    try:
        deadline = time.monotonic() + 90
        while True:
            doomed = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix)]
            if not doomed:
                return
            try:
                admin.delete_groups(doomed)
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot delete consumer groups {doomed}: {exc}") from None
                time.sleep(1)
    finally:
        admin.close()


def produce_workload(bootstrap: str, workload: Workload, topic: str = TOPIC) -> float:
    """Write the workload with librdkafka (fast, so generation does not dominate); returns seconds taken."""
    from confluent_kafka import Producer

    _create_topic(bootstrap, topic, workload.partitions)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "acks": "all"})
    value = os.urandom(workload.value_bytes)
    headers: list[tuple[str, str | bytes | None]] = [("h1", b"12345678"), ("h2", b"abcdefgh")]
    started = time.monotonic()
    for i in range(workload.records):
        key = i.to_bytes(workload.key_bytes, "big")
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, partition=i % workload.partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return time.monotonic() - started


# --- processes ----------------------------------------------------------------------------------------------


def _tree(pid: int) -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields (after the name) of a process and its running descendants (Linux)."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, fields in stats.items():
            if int(fields[1]) == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return {p: stats[p] for p in tree if p in stats}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants so far, reaped or running."""
    ticks = sum(sum(int(v) for v in fields[11:15]) for fields in _tree(pid).values())  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int | str, field_name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field_name}:")), 0)


def _sample_peak_rss(pid: int, peaks: dict[int, int]) -> None:
    """Keep the largest VmHWM (peak RSS, kB) seen of each process of the tree: peers may end before the run."""
    for member in _tree(pid):
        peaks[member] = max(peaks.get(member, 0), _status_kb(member, "VmHWM"))


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found:
        raise RuntimeError("java not found: the benchmark runs Kafka's tools and MirrorMaker 2 on a JDK 17+")
    return found


def _log4j(directory: Path) -> Path:
    path = directory / "log4j2.properties"
    path.write_text(
        "rootLogger.level = WARN\nrootLogger.appenderRef.file.ref = F\nappender.file.type = File\n"
        f"appender.file.name = F\nappender.file.fileName = {directory / 'java.log'}\n"
        "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = %d %p %m (%c)%n\n"
    )
    return path


def _tools_classpath() -> str:
    """Kafka's tools: the bench jars when fetched (``make bench``), else the broker's (they include kafka-tools)."""
    from shared.local.broker import kafka_libs

    return str((BENCH_LIBS if BENCH_LIBS.is_dir() else kafka_libs()) / "*")


def measure_limit(bootstrap: str, workload: Workload, work: Path) -> Run:
    """The target broker's ingest rate for the same records, with Kafka's own Java producer."""
    _create_topic(bootstrap, "limit", workload.partitions)
    command = [
        _java(),
        f"-Dlog4j2.configurationFile={_log4j(work)}",
        "-cp",
        _tools_classpath(),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", "limit",
        "--num-records", str(workload.records),
        "--record-size", str(workload.value_bytes + workload.key_bytes + 20),
        "--throughput", "-1",
        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=5", "batch.size=262144",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    seconds = time.monotonic() - started
    summary = [line for line in done.stdout.splitlines() if "records sent" in line][-1]
    rate = float(summary.split("records sent,")[1].split("records/sec")[0])
    run = Run("producer-perf limit", seconds=seconds, records_per_second=rate, kind="limit")
    run.mb_per_second = rate * workload.payload_bytes / workload.records / 1e6
    run.notes.append(summary.strip())
    return run


def _flow_properties(servers: dict[str, str]) -> list[str]:
    """The src->dst flow both mirrors run: same topics, single-broker replication factors."""
    return [
        "clusters = src, dst",
        f"src.bootstrap.servers = {servers['src']}",
        f"dst.bootstrap.servers = {servers['dst']}",
        "src->dst.enabled = true",
        f"src->dst.topics = {TOPIC}, {LATENCY_TOPIC}",
        "replication.factor = 1",
        "checkpoints.topic.replication.factor = 1",
        "offset.storage.replication.factor = 1",
        "heartbeats.topic.replication.factor = 1",
        "offset-syncs.topic.replication.factor = 1",
        "sync.topic.acls.enabled = false",
        "refresh.topics.interval.seconds = 5",
    ]


def _mm2_properties(work: Path, servers: dict[str, str], tasks: int) -> Path:
    path = work / f"mm2-reference-tasks{tasks}.properties"
    connect = [f"{name}.storage.replication.factor = 1" for name in ("offset", "status", "config")]
    best = [f"tasks.max = {tasks}", *(f"{key} = {value}" for key, value in MM2_BEST_PROPERTIES.items())]
    path.write_text("\n".join([*_flow_properties(servers), *connect, *best]) + "\n")
    return path


def _default_backend() -> str:
    """What ``smm.producer.backend`` is when a file does not set it."""
    from shared.mm2.config import FLOW_KEYS

    return str(FLOW_KEYS["smm.producer.backend"].default)


def backend_label(backend: str) -> str:
    return f"{DEFAULT_BACKEND} ({_default_backend()})" if backend == DEFAULT_BACKEND else backend


def _smm_properties(work: Path, servers: dict[str, str], backend: str, exactly_once: bool = False) -> Path:
    """The flow as ``smm run`` gets it: Lambda's largest batches, and the default backend unless one is named."""
    path = work / f"smm-{backend}{'-eos' if exactly_once else ''}.properties"
    lambda_like = [
        f"smm.batch.size = {LAMBDA_MAX_BATCH}",
        "smm.batching.window.ms = 100",
        *([] if backend == DEFAULT_BACKEND else [f"smm.producer.backend = {backend}"]),
        f"dst.exactly.once.source.support = {'enabled' if exactly_once else 'disabled'}",
    ]
    path.write_text("\n".join([*_flow_properties(servers), *lambda_like]) + "\n")
    return path


def measure_mirror(
    run: Run,
    command: list[str],
    servers: dict[str, str],
    workload: Workload,
    work: Path,
    latency: tuple[int, float] | None,
    env: dict[str, str] | None = None,
) -> Run:
    """Start a mirror process, time the workload to the last record on dst, then measure latency while it runs.

    In exactly-once mode the remote partitions also hold commit markers, so the run ends when the flow's
    consumer group on src has committed every record instead (each commit follows the transaction's). The peak
    RSS of each process of the tree is sampled about once a second and at the end.
    """
    name, exactly_once = run.name, run.exactly_once
    remote = f"src.{TOPIC}"
    _delete_topics(servers["dst"], "src.")
    _delete_topics(servers["dst"], "mm2-")  # MM2's (Connect's) offsets, configs and status; smm's source offsets
    # a fresh latency topic: an earlier run's records would be a backlog this run's latency phase queues behind
    _delete_topics(servers["src"], LATENCY_TOPIC)
    _create_topic(servers["src"], LATENCY_TOPIC, workload.partitions)
    _delete_groups(servers["src"], "smm:")  # each run starts from the beginning, as a new deployment would
    admin = _admin(servers["src" if exactly_once else "dst"])
    log = (work / f"{name.replace(' ', '-')}.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    peaks: dict[int, int] = {}
    sampled = 0.0
    try:
        first = None
        while True:
            if time.monotonic() - sampled >= 1.0:
                _sample_peak_rss(process.pid, peaks)
                sampled = time.monotonic()
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {log.name}")
            landed = (
                _committed(admin, f"smm:src:dst:{TOPIC}")
                if exactly_once
                else _end_offsets(admin, remote, workload.partitions)
            )
            now = time.monotonic()
            if landed and first is None:
                first = now - started
            if landed >= workload.records:
                break
            if now - started > 900:
                raise RuntimeError(f"{name} mirrored {landed} of {workload.records} records in 900 s")
            time.sleep(0.1)
        run.seconds = time.monotonic() - started
        run.cpu_seconds = _cpu_seconds(process.pid)
        run.first_record_seconds = first or run.seconds
        steady = run.seconds - run.first_record_seconds
        run.records_per_second = workload.records / run.seconds
        run.mb_per_second = workload.payload_bytes / run.seconds / 1e6
        run.cpu_us_per_record = run.cpu_seconds / workload.records * 1e6
        run.notes.append(f"{workload.records / steady:,.0f} rec/s after the first record" if steady > 0 else "")
        if latency is not None:
            members = run.processes if run.kind == "smm" else 0
            run.latency_p50_ms, run.latency_p99_ms = measure_latency(servers, latency, workload, members)
        _sample_peak_rss(process.pid, peaks)
        run.peak_rss_mb = sorted((round(kb / 1024, 1) for kb in peaks.values() if kb), reverse=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        admin.close()
    return run


def measure_latency(
    servers: dict[str, str], latency: tuple[int, float], workload: Workload, members: int
) -> tuple[float, float]:
    """Produce ``rate`` rec/s for ``seconds`` (``latency``) to src; p50/p99 of (arrival on dst - produce time).

    Before the clock starts, the mirror must be in its steady state on the latency topic, for MM2 and this project
    alike: ``members`` processes of ``smm run`` in the topic's consumer group (a peer joining later would make the
    group rebalance mid-phase), and a probe record on every partition arrived (what a mirror does the first time
    it sees a partition, an exactly-once producer, a task's assignment, is start-up, not latency).
    """
    from confluent_kafka import Consumer, Producer

    rate, seconds = latency
    remote = f"src.{LATENCY_TOPIC}"
    producer = Producer({"bootstrap.servers": servers["src"], "linger.ms": 1, "acks": "all"})
    deadline = time.monotonic() + 120
    if members:
        _await_members(servers["src"], f"smm:src:dst:{LATENCY_TOPIC}", members, deadline)
    unseen = set(range(workload.partitions))
    consumer = Consumer(
        {"bootstrap.servers": servers["dst"], "group.id": f"latency-{time.time()}", "auto.offset.reset": "earliest"}
    )
    subscribed = False
    while time.monotonic() < deadline and unseen:
        for partition in unseen:
            producer.produce(LATENCY_TOPIC, value=b"probe", partition=partition, timestamp=int(time.time() * 1000))
        producer.flush(10)
        try:
            if not subscribed:
                consumer.subscribe([remote])
                subscribed = True
        except Exception:
            time.sleep(1)
            continue
        probing_until = time.monotonic() + 2.0
        while unseen and time.monotonic() < probing_until:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None and message.value() == b"probe":
                unseen.discard(message.partition())
    if unseen:
        raise RuntimeError(f"partitions {sorted(unseen)} of the latency topic were not mirrored within 120 s")
    latencies: list[float] = []
    stop = threading.Event()
    phase_ms = int(time.time() * 1000)  # earlier runs' records are mirrored again by a new flow: not this phase's

    def collect() -> None:
        while not stop.is_set():
            message = consumer.poll(0.2)
            if message is None or message.error() is not None or message.value() == b"probe":
                continue
            produced = message.timestamp()[1]
            if produced >= phase_ms:
                latencies.append(time.time() * 1000 - produced)

    collector = threading.Thread(target=collect)
    collector.start()
    interval = 1.0 / rate
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed / interval)
        while sent < due:
            producer.produce(LATENCY_TOPIC, value=b"x" * 512, timestamp=int(time.time() * 1000))
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    tail = time.monotonic() + 30  # late records count with their latency, they are not left out
    while len(latencies) < sent and time.monotonic() < tail:
        time.sleep(0.1)
    stop.set()
    collector.join()
    consumer.close()
    if len(latencies) < sent * 0.99:
        raise RuntimeError(f"latency run: only {len(latencies)} of {sent} records arrived within 30 s")
    quantiles = statistics.quantiles(latencies, n=100)
    return round(quantiles[49], 1), round(quantiles[98], 1)


def _await_members(bootstrap: str, group: str, members: int, deadline: float) -> None:
    """Wait until ``group`` is stable with ``members`` members."""
    admin = _admin(bootstrap)
    try:
        while True:
            described = admin.describe_groups([group]).get(group, {})
            found = len(described.get("members") or [])
            if described.get("group_state") == "Stable" and found == members:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer group {group} has {found} of {members} members, not stable in time")
            time.sleep(0.2)
    finally:
        admin.close()


# --- the handler alone ------------------------------------------------------------------------------------------


def measure_handler(
    servers: dict[str, str], workload: Workload, backend: str, records: int, work: Path
) -> dict[str, float]:
    """CPU and wall time of the mirror handler on Lambda-maximum ESM events (no broker CPU counted).

    As in a Lambda container, one event is alive at a time: each is built and serialised just before its
    invocation (not timed), then decoded from its JSON text as Lambda's runtime does before calling the handler
    (timed apart: billed, but not this project's code), then handled (timed). Afterwards one more event's
    invocation is measured for memory, the runtime's decode of its text included: the growth of peak RSS over the
    call (VmHWM, reset through ``/proc/self/clear_refs``; it misses what earlier invocations left free in the heap)
    and the tracemalloc peak of the call (Python allocations only, librdkafka's queue not included), the larger of
    the two against the event's JSON size.
    """
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    from aws_lambda_powertools.metrics import EphemeralMetrics

    from functions.mirror.handler import build_handler
    from functions.mirror.mirror import Mirror
    from shared.aws.config_source import parse_text
    from shared.aws.esm_event import SourceRecord, build_event
    from shared.kafka.clients import KafkaClients
    from shared.local.emulator import LambdaContext
    from shared.mm2.formats import Header

    config = parse_text(_smm_properties(work, servers, backend).read_text())
    clients = KafkaClients(config)
    mirror = Mirror(config.flow("src", "dst"), clients)
    metrics = EphemeralMetrics(namespace="bench")
    handler = build_handler(lambda: mirror, metrics)
    context = LambdaContext("bench")
    now = int(time.time() * 1000)
    value = os.urandom(workload.value_bytes)
    headers: list[Header] = [("h1", b"12345678"), ("h2", b"abcdefgh")]
    per_event = LAMBDA_MAX_BATCH

    def event_text(index: int) -> str:
        """The ``index``-th event of ``per_event`` records as Lambda's runtime receives it."""
        start = index * per_event
        batch = [
            SourceRecord(TOPIC, (start + i) % workload.partitions, (start + i) // workload.partitions, now,
                         "CREATE_TIME", (start + i).to_bytes(workload.key_bytes, "big"), value, headers)
            for i in range(per_event)
        ]  # fmt: skip
        return json.dumps(build_event(batch, [servers["src"]]))

    while len(event_text(0)) > LAMBDA_MAX_PAYLOAD:
        per_event = int(per_event * 0.9)
    handler(json.loads(event_text(0)), context)  # warm: remote topic created, producer connected
    events = max(1, records // per_event)
    decode_cpu = cpu = wall = 0.0
    for index in range(1, events + 1):
        text = event_text(index)
        started_cpu = time.process_time()
        event = json.loads(text)
        decoded_cpu, started_wall = time.process_time(), time.monotonic()
        handler(event, context)
        cpu += time.process_time() - decoded_cpu
        wall += time.monotonic() - started_wall
        decode_cpu += decoded_cpu - started_cpu
        del event, text
        metrics.clear_metrics()  # kept, not published, with metrics disabled: they would pile up
    done = per_event * events
    text = event_text(events + 1)
    rss_growth = _invocation_rss_growth(lambda: handler(json.loads(text), context))
    tracemalloc.start()
    handler(json.loads(text), context)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    clients.close()
    record_bytes = workload.value_bytes + workload.key_bytes + 20
    return {
        "records": done,
        "recordsPerEvent": per_event,
        "eventBytes": len(text),
        "cpuMicrosPerRecord": round(cpu / done * 1e6, 2),
        "decodeCpuMicrosPerRecord": round(decode_cpu / done * 1e6, 2),
        "recordsPerSecond": round(done / wall),
        "cpuSecondsPerGB": round(cpu / (done * record_bytes) * 1e9, 2),
        "billedCpuSecondsPerGB": round((cpu + decode_cpu) / (done * record_bytes) * 1e9, 2),
        "invocationRssGrowthMB": round(rss_growth / 1e6, 1),
        "invocationTracemallocPeakMB": round(traced_peak / 1e6, 1),
        "invocationMemoryPerEventSize": round(max(rss_growth, traced_peak) / len(text), 2),
    }


def _invocation_rss_growth(invoke: Callable[[], object]) -> int:
    """Bytes by which this process's peak RSS rose above its RSS during ``invoke`` (0 if the peak cannot be reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)
    except OSError:
        return 0
    before = _status_kb("self", "VmRSS")
    invoke()
    return max(0, _status_kb("self", "VmHWM") - before) * 1024


# --- report -----------------------------------------------------------------------------------------------------


def report(results: Results, out: Path) -> str:
    lines = []
    w = results.workload
    lines.append(
        f"workload: {w.records:,} records, {w.value_bytes} B values, {w.key_bytes} B keys, 2 headers, "
        f"{w.partitions} partitions ({w.payload_bytes / 1e6:.0f} MB)"
    )
    mm2 = fastest_mm2(results)
    limit = results.limit
    header = f"{'run':54s} {'rec/s':>10s} {'MB/s':>7s} {'wall s':>7s} {'1st rec s':>9s} {'CPU s':>7s} "
    header += f"{'CPU µs/rec':>10s} {'peak RSS MB/process':>19s} {'p50 ms':>7s} {'p99 ms':>7s} {'vs MM2':>6s} "
    header += f"{'vs limit':>8s}"
    lines.append(header)
    for run in ([limit] if limit else []) + results.runs:
        ratio_mm2 = f"{run.records_per_second / mm2.records_per_second:.2f}" if mm2 and mm2.records_per_second else "-"
        ratio_limit = f"{run.records_per_second / limit.records_per_second:.2f}" if limit else "-"
        p50 = f"{run.latency_p50_ms:.0f}" if run.latency_p50_ms is not None else "-"
        p99 = f"{run.latency_p99_ms:.0f}" if run.latency_p99_ms is not None else "-"
        rss = "/".join(f"{mb:.0f}" for mb in run.peak_rss_mb) or "-"
        first = f"{run.first_record_seconds:9.1f}" if run.kind != "limit" else f"{'-':>9s}"
        lines.append(
            f"{run.name:54s} {run.records_per_second:10,.0f} {run.mb_per_second:7.1f} {run.seconds:7.1f} {first} "
            f"{run.cpu_seconds:7.1f} {run.cpu_us_per_record:10.1f} {rss:>19s} {p50:>7s} {p99:>7s} {ratio_mm2:>6s} "
            f"{ratio_limit:>8s}"
        )
    if mm2:
        lines.append(f"vs MM2: against the faster MirrorMaker 2 run, {mm2.name} ({mm2.records_per_second:,.0f} rec/s)")
    for backend, h in results.handler.items():
        lines.append(
            f"handler alone ({backend}): {h['cpuMicrosPerRecord']} µs CPU/record, {h['recordsPerSecond']:,.0f} rec/s, "
            f"{h['recordsPerEvent']:,} records per {h['eventBytes'] / 1e6:.1f} MB event; Lambda runtime decode "
            f"(json.loads of the event, billed): {h['decodeCpuMicrosPerRecord']} µs CPU/record; one invocation: peak "
            f"RSS +{h['invocationRssGrowthMB']} MB, tracemalloc peak {h['invocationTracemallocPeakMB']} MB "
            f"({h['invocationMemoryPerEventSize']}x the event)"
        )
    for backend, c in results.cost.items():
        lines.append(
            f"Lambda cost per GB mirrored ({backend}, handler + runtime decode, arm64, 1 vCPU): ${c['arm64']:.4f} "
            f"(x86_64 ${c['x86_64']:.4f}); MSK Replicator ~${MSK_REPLICATOR_PER_GB:.2f}/GB (unverified list price)"
        )
    lines.extend(f"goal: {goal}" for goal in goals(results))
    text = "\n".join(lines)
    (out / "results.json").write_text(json.dumps(asdict(results), indent=2))
    (out / "results.txt").write_text(text + "\n")
    _chart(results, out / "results.png")
    return text


def fastest_mm2(results: Results) -> Run | None:
    return max((r for r in results.runs if r.kind == "mm2"), key=lambda r: r.records_per_second, default=None)


def goals(results: Results) -> list[str]:
    """Issue 14's goals, each met / NOT MET on this invocation's figures (or not measured by it)."""
    mm2, limit = fastest_mm2(results), results.limit
    smm = [r for r in results.runs if r.kind == "smm"]
    alo = next((r for r in smm if r.backend == DEFAULT_BACKEND and not r.exactly_once), None)
    eos = next((r for r in smm if r.backend == DEFAULT_BACKEND and r.exactly_once), None)
    handler = results.handler.get(backend_label(DEFAULT_BACKEND))
    timed = [r for r in smm if r.latency_p99_ms is not None]
    timed_alo = [r for r in timed if not r.exactly_once and r.latency_p50_ms is not None]
    lines: list[str] = []

    def goal(text: str, figure: str | None = None, met: bool = False) -> None:
        lines.append(f"{text}: {figure or '-'}: {'not measured' if figure is None else 'met' if met else 'NOT MET'}")

    default = "smm run with the default settings"
    if alo and mm2:
        ratio = alo.records_per_second / mm2.records_per_second
        goal(f"{default}, rec/s >= 1.5x the faster MM2", f"{ratio:.2f}x", ratio >= 1.5)
        figure = f"{alo.cpu_us_per_record:.1f} vs {mm2.cpu_us_per_record:.1f} µs"
        goal(f"{default}, CPU/rec <= the faster MM2's", figure, alo.cpu_us_per_record <= mm2.cpu_us_per_record)
    else:
        goal(f"{default}, rec/s >= 1.5x the faster MM2")
        goal(f"{default}, CPU/rec <= the faster MM2's")
    if alo and limit:
        share = alo.records_per_second / limit.records_per_second
        goal(f"{default}, >= 50% of the producer-perf limit", f"{share:.0%}", share >= 0.5)
    else:
        goal(f"{default}, >= 50% of the producer-perf limit")
    if handler:
        micros, memory = handler["cpuMicrosPerRecord"], handler["invocationMemoryPerEventSize"]
        goal("handler alone <= 5 µs CPU/record on the default backend", f"{micros} µs", micros <= 5)
        goal("one handler invocation needs <= 4x its event (default backend)", f"{memory}x", memory <= 4)
    else:
        goal("handler alone <= 5 µs CPU/record on the default backend")
        goal("one handler invocation needs <= 4x its event (default backend)")
    if timed:
        figure = ", ".join(f"{r.name} {r.latency_p99_ms:.0f} ms" for r in timed)
        goal("p99 < 1 s in every mode", figure, all((r.latency_p99_ms or 0) < 1000 for r in timed))
    else:
        goal("p99 < 1 s in every mode")
    if timed_alo:
        figure = ", ".join(f"{r.name} {r.latency_p50_ms:.0f} ms" for r in timed_alo)
        goal("p50 < 50 ms at-least-once", figure, all((r.latency_p50_ms or 0) < 50 for r in timed_alo))
    else:
        goal("p50 < 50 ms at-least-once")
    if alo and eos:
        cost = 1 - eos.records_per_second / alo.records_per_second
        goal("exactly-once costs <= 15% of at-least-once rec/s (default backend)", f"{cost:.0%}", cost <= 0.15)
    else:
        goal("exactly-once costs <= 15% of at-least-once rec/s (default backend)")
    return lines


def _chart(results: Results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    runs = ([results.limit] if results.limit else []) + results.runs
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh([r.name for r in runs], [r.records_per_second for r in runs], color="#4472c4")
    left.set_xlabel("records/s (higher is better)")
    left.invert_yaxis()
    timed = [r for r in results.runs if r.latency_p99_ms is not None]
    if timed:
        y = range(len(timed))
        right.barh([i - 0.2 for i in y], [r.latency_p50_ms or 0 for r in timed], height=0.4, label="p50")
        right.barh([i + 0.2 for i in y], [r.latency_p99_ms or 0 for r in timed], height=0.4, label="p99")
        right.set_yticks(list(y), [r.name for r in timed])
        right.set_xlabel("replication latency ms (lower is better)")
        right.invert_yaxis()
        right.legend()
    fig.suptitle(f"Serverless MirrorMaker vs MirrorMaker 2, {results.workload.records:,} records")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from shared.kafka.producers import BACKENDS

    cores = os.cpu_count() or 1
    others = [b for b in BACKENDS if b != _default_backend()]
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--value-bytes", type=int, default=512)
    p.add_argument("--key-bytes", type=int, default=16)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--latency-rate", type=int, default=10_000, help="records/s of the latency run")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="0 skips the latency runs")
    p.add_argument("--handler-records", type=int, default=200_000)
    p.add_argument(
        "--backends",
        default=",".join([DEFAULT_BACKEND, *others]),
        help=f"producer backends of the smm runs and the handler runs: {DEFAULT_BACKEND!r} (no "
        f"smm.producer.backend line: the project's default) or one of {', '.join(BACKENDS)}",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=cores,
        help="smm run --processes: processes sharing the partitions (default: one per core, as MM2 uses the cores)",
    )
    p.add_argument(
        "--exactly-once-backends",
        default=DEFAULT_BACKEND,
        help="backends also run in exactly-once mode (dst.exactly.once.source.support = enabled); empty skips",
    )
    p.add_argument(
        "--mm2-tasks",
        default=",".join(str(n) for n in sorted({1, cores})),
        help="MirrorMaker 2 runs, one per tasks.max (default: 1 and one task per core)",
    )
    p.add_argument("--skip-mm2", action="store_true", help="skip MirrorMaker 2 (no connect-mirror jars needed)")
    p.add_argument("--out", default=str(REPO / "bench-results"))
    p.add_argument(
        "--readme",
        help="also write the report between the bench markers of this Markdown file (make bench: README.md)",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workload = Workload(args.records, args.value_bytes, args.key_bytes, args.partitions)
    latency = (args.latency_rate, args.latency_seconds) if args.latency_seconds > 0 else None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    exactly_once_backends = [b.strip() for b in args.exactly_once_backends.split(",") if b.strip()]
    for backend in {*backends, *exactly_once_backends} - {DEFAULT_BACKEND, *BACKENDS}:
        p.error(f"backend {backend!r} is not {DEFAULT_BACKEND!r} or one of {', '.join(BACKENDS)}")
    mm2_tasks = [] if args.skip_mm2 else [int(n) for n in args.mm2_tasks.split(",") if n.strip()]
    results = Results(workload)
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="smm-bench-") as tmp:
        work = Path(tmp)
        with clusters(work / "clusters") as servers:
            say(f"== clusters: {servers}")
            say(f"== generating {workload.records:,} records on src")
            say(f"   {produce_workload(servers['src'], workload):.1f} s")
            say("== physical limit: ProducerPerformance into dst")
            results.limit = measure_limit(servers["dst"], workload, work)
            for tasks in mm2_tasks:
                run = Run(f"MirrorMaker 2 (tasks.max {tasks})", kind="mm2")
                say(f"== Apache MirrorMaker 2 (dedicated mode): {run.name}")
                command = [
                    _java(), "-Xmx1g", f"-Dlog4j2.configurationFile={_log4j(work)}", "-cp", str(BENCH_LIBS / "*"),
                    "org.apache.kafka.connect.mirror.MirrorMaker", str(_mm2_properties(work, servers, tasks)),
                    "--clusters", "dst",
                ]  # fmt: skip
                results.runs.append(measure_mirror(run, command, servers, workload, work, latency))
            modes = [(b, False) for b in backends] + [(b, True) for b in exactly_once_backends]
            for backend, exactly_once in modes:
                mode = ", exactly-once" if exactly_once else ""
                name = f"smm run ({backend_label(backend)}{mode}, x{args.processes})"
                run = Run(name, backend=backend, exactly_once=exactly_once, processes=args.processes)
                say(f"== this project: {run.name}")
                properties = _smm_properties(work, servers, backend, exactly_once)
                command = [str(REPO / ".venv" / "bin" / "smm"), "run", str(properties), "--progress", "3600"]
                command += ["--processes", str(args.processes)]
                env = {**os.environ, "SMM_LOCAL_DIR": str(work / "state")}
                results.runs.append(measure_mirror(run, command, servers, workload, work, latency, env))
            for backend in backends:
                label = backend_label(backend)
                say(f"== mirror handler alone ({label})")
                results.handler[label] = measure_handler(servers, workload, backend, args.handler_records, work)
                per_gb = results.handler[label]["billedCpuSecondsPerGB"]
                results.cost[label] = {
                    arch: round(per_gb * LAMBDA_MEMORY_GB_PER_VCPU * price, 5)
                    for arch, price in LAMBDA_PRICE_PER_GB_SECOND.items()
                }
    text = report(results, out)
    print(text)
    say(f"== results in {out}/results.json, results.txt and results.png")
    if args.readme:
        invoked = " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
        write_readme(Path(args.readme), text, invoked)
        say(f"== report written into {args.readme}")
    return 0


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def write_readme(path: Path, text: str, command: str) -> None:
    """Replace what is between the bench markers of ``path`` with ``text``, saying which command wrote it when."""
    readme = path.read_text()
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {README_START} ... {README_END} markers to write the report between")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
    at = f"on top of commit `{commit.stdout.strip()}`" if commit.returncode == 0 else "outside a git checkout"
    if commit.returncode == 0 and dirty.stdout.strip():
        at += " with uncommitted changes"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    block = f"{README_START}\n`{command}` wrote this on {day}, {at}:\n\n```\n{text.rstrip()}\n```\n"
    path.write_text(readme[:start] + block + readme[end:])


if __name__ == "__main__":
    sys.exit(main())
