"""``make bench``: this project against Apache MirrorMaker 2 and the broker's own limit, on the same clusters.

One invocation starts two local clusters (src, dst), writes a fixed workload to ``src``, and measures:

1. the physical limit: Kafka's Java ``ProducerPerformance`` writing the same number and size of records to dst;
2. Apache MirrorMaker 2 (dedicated mode, same Kafka version) mirroring the workload src->dst;
3. this project through the local runtime (``smm run``), once per producer backend, and in exactly-once mode;
4. the mirror handler alone on pre-built ESM events of Lambda's maximum size (CPU per record, no broker time);
5. replication latency p50/p99 at a steady rate, for MM2 and for this project.

It prints one table with the ratios, writes ``results.json`` and ``results.png``, and derives the Lambda cost per
GB mirrored from the measured handler CPU at the published Lambda price.
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants so far, reaped or running (Linux /proc)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        ticks[child] = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


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
    run = Run("producer-perf limit", seconds=seconds, records_per_second=rate)
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


def _mm2_properties(work: Path, servers: dict[str, str]) -> Path:
    path = work / "mm2-reference.properties"
    connect = [f"{name}.storage.replication.factor = 1" for name in ("offset", "status", "config")]
    path.write_text("\n".join([*_flow_properties(servers), *connect]) + "\n")
    return path


def _smm_properties(work: Path, servers: dict[str, str], backend: str, exactly_once: bool = False) -> Path:
    path = work / f"smm-{backend}{'-eos' if exactly_once else ''}.properties"
    lambda_like = [
        f"smm.batch.size = {LAMBDA_MAX_BATCH}",
        "smm.batching.window.ms = 100",
        f"smm.producer.backend = {backend}",
        f"dst.exactly.once.source.support = {'enabled' if exactly_once else 'disabled'}",
    ]
    path.write_text("\n".join([*_flow_properties(servers), *lambda_like]) + "\n")
    return path


def measure_mirror(
    name: str,
    command: list[str],
    servers: dict[str, str],
    workload: Workload,
    work: Path,
    latency: tuple[int, float] | None,
    env: dict[str, str] | None = None,
    exactly_once: bool = False,
) -> Run:
    """Start a mirror process, time the workload to the last record on dst, then measure latency while it runs.

    In exactly-once mode the remote partitions also hold commit markers, so the run ends when the flow's
    consumer group on src has committed every record instead (each commit follows the transaction's).
    """
    remote = f"src.{TOPIC}"
    _delete_topics(servers["dst"], "src.")
    _delete_topics(servers["dst"], "mm2-offsets.src.")
    # a fresh latency topic: an earlier run's records would be a backlog this run's latency phase queues behind
    _delete_topics(servers["src"], LATENCY_TOPIC)
    _create_topic(servers["src"], LATENCY_TOPIC, workload.partitions)
    _delete_groups(servers["src"], "smm:")  # each run starts from the beginning, as a new deployment would
    admin = _admin(servers["src" if exactly_once else "dst"])
    log = (work / f"{name.replace(' ', '-')}.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    run = Run(name)
    try:
        first = None
        while True:
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
            run.latency_p50_ms, run.latency_p99_ms = measure_latency(servers, latency[0], latency[1])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        admin.close()
    return run


def measure_latency(servers: dict[str, str], rate: int, seconds: float) -> tuple[float, float]:
    """Produce ``rate`` rec/s for ``seconds`` to src; p50/p99 of (arrival on dst - produce time)."""
    from confluent_kafka import Consumer, Producer

    remote = f"src.{LATENCY_TOPIC}"
    producer = Producer({"bootstrap.servers": servers["src"], "linger.ms": 1, "acks": "all"})
    # the mirror must be live on the latency topic before the clock starts: wait for a probe
    deadline = time.monotonic() + 120
    probe_seen = False
    consumer = Consumer(
        {"bootstrap.servers": servers["dst"], "group.id": f"latency-{time.time()}", "auto.offset.reset": "earliest"}
    )
    while time.monotonic() < deadline and not probe_seen:
        producer.produce(LATENCY_TOPIC, value=b"probe", timestamp=int(time.time() * 1000))
        producer.flush(10)
        try:
            consumer.subscribe([remote])
        except Exception:
            time.sleep(1)
            continue
        message = consumer.poll(2.0)
        probe_seen = message is not None and message.error() is None and message.value() == b"probe"
    if not probe_seen:
        raise RuntimeError("the latency topic was not mirrored within 120 s")
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
    time.sleep(3)  # let the tail arrive
    stop.set()
    collector.join()
    consumer.close()
    if len(latencies) < sent * 0.99:
        raise RuntimeError(f"latency run: only {len(latencies)} of {sent} records arrived")
    quantiles = statistics.quantiles(latencies, n=100)
    return round(quantiles[49], 1), round(quantiles[98], 1)


# --- the handler alone ------------------------------------------------------------------------------------------


def measure_handler(
    servers: dict[str, str], workload: Workload, backend: str, records: int, work: Path
) -> dict[str, float]:
    """CPU and wall time of the mirror handler on pre-built, Lambda-maximum ESM events (no broker CPU counted)."""
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
    handler = build_handler(lambda: mirror, EphemeralMetrics(namespace="bench"))
    now = int(time.time() * 1000)
    value = os.urandom(workload.value_bytes)
    headers: list[Header] = [("h1", b"12345678"), ("h2", b"abcdefgh")]

    def batch(start: int, count: int) -> list[SourceRecord]:
        return [
            SourceRecord(TOPIC, (start + i) % workload.partitions, (start + i) // workload.partitions, now,
                         "CREATE_TIME", (start + i).to_bytes(workload.key_bytes, "big"), value, headers)
            for i in range(count)
        ]  # fmt: skip

    per_event = LAMBDA_MAX_BATCH
    while len(json.dumps(build_event(batch(0, per_event), [servers["src"]]))) > LAMBDA_MAX_PAYLOAD:
        per_event = int(per_event * 0.9)
    events = [
        build_event(batch(i * per_event, per_event), [servers["src"]]) for i in range(max(1, records // per_event))
    ]
    context = LambdaContext("bench")
    handler(events[0], context)  # warm: remote topic created, producer connected
    cpu, wall = time.process_time(), time.monotonic()
    for event in events:
        handler(event, context)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    done = per_event * len(events)
    clients.close()
    return {
        "records": done,
        "recordsPerEvent": per_event,
        "cpuMicrosPerRecord": round(cpu / done * 1e6, 2),
        "recordsPerSecond": round(done / wall),
        "cpuSecondsPerGB": round(cpu / (done * (workload.value_bytes + workload.key_bytes + 20)) * 1e9, 2),
    }


# --- report -----------------------------------------------------------------------------------------------------


def report(results: Results, out: Path) -> str:
    lines = []
    w = results.workload
    lines.append(
        f"workload: {w.records:,} records, {w.value_bytes} B values, {w.key_bytes} B keys, 2 headers, "
        f"{w.partitions} partitions ({w.payload_bytes / 1e6:.0f} MB)"
    )
    mm2 = next((r for r in results.runs if r.name.startswith("MirrorMaker 2")), None)
    limit = results.limit
    header = f"{'run':44s} {'rec/s':>10s} {'MB/s':>7s} {'wall s':>7s} {'CPU s':>7s} {'CPU µs/rec':>10s} "
    header += f"{'p50 ms':>7s} {'p99 ms':>7s} {'vs MM2':>6s} {'vs limit':>8s}"
    lines.append(header)
    for run in ([limit] if limit else []) + results.runs:
        ratio_mm2 = f"{run.records_per_second / mm2.records_per_second:.2f}" if mm2 and mm2.records_per_second else "-"
        ratio_limit = f"{run.records_per_second / limit.records_per_second:.2f}" if limit else "-"
        p50 = f"{run.latency_p50_ms:.0f}" if run.latency_p50_ms is not None else "-"
        p99 = f"{run.latency_p99_ms:.0f}" if run.latency_p99_ms is not None else "-"
        lines.append(
            f"{run.name:44s} {run.records_per_second:10,.0f} {run.mb_per_second:7.1f} {run.seconds:7.1f} "
            f"{run.cpu_seconds:7.1f} {run.cpu_us_per_record:10.1f} {p50:>7s} {p99:>7s} {ratio_mm2:>6s} "
            f"{ratio_limit:>8s}"
        )
    for backend, h in results.handler.items():
        lines.append(
            f"handler alone ({backend}): {h['cpuMicrosPerRecord']} µs CPU/record, {h['recordsPerSecond']:,.0f} rec/s, "
            f"{h['recordsPerEvent']:,} records per 6 MB event"
        )
    for backend, c in results.cost.items():
        lines.append(
            f"Lambda cost per GB mirrored ({backend}, arm64, 1 vCPU): ${c['arm64']:.4f} "
            f"(x86_64 ${c['x86_64']:.4f}); MSK Replicator ~${MSK_REPLICATOR_PER_GB:.2f}/GB (unverified list price)"
        )
    text = "\n".join(lines)
    (out / "results.json").write_text(json.dumps(asdict(results), indent=2))
    (out / "results.txt").write_text(text + "\n")
    _chart(results, out / "results.png")
    return text


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
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--value-bytes", type=int, default=512)
    p.add_argument("--key-bytes", type=int, default=16)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--latency-rate", type=int, default=10_000, help="records/s of the latency run")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="0 skips the latency runs")
    p.add_argument("--handler-records", type=int, default=200_000)
    p.add_argument("--backends", default="kafka-python,confluent-kafka")
    p.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="smm run --processes: processes sharing the partitions (default: one per core, as MM2 uses the cores)",
    )
    p.add_argument(
        "--exactly-once-backends",
        default="confluent-kafka",
        help="backends also run in exactly-once mode (dst.exactly.once.source.support = enabled); empty skips",
    )
    p.add_argument("--skip-mm2", action="store_true", help="skip MirrorMaker 2 (no connect-mirror jars needed)")
    p.add_argument("--out", default=str(REPO / "bench-results"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workload = Workload(args.records, args.value_bytes, args.key_bytes, args.partitions)
    latency = (args.latency_rate, args.latency_seconds) if args.latency_seconds > 0 else None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    exactly_once_backends = [b.strip() for b in args.exactly_once_backends.split(",") if b.strip()]
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
            if not args.skip_mm2:
                say("== Apache MirrorMaker 2 (dedicated mode)")
                command = [
                    _java(), "-Xmx1g", f"-Dlog4j2.configurationFile={_log4j(work)}", "-cp", str(BENCH_LIBS / "*"),
                    "org.apache.kafka.connect.mirror.MirrorMaker", str(_mm2_properties(work, servers)),
                    "--clusters", "dst",
                ]  # fmt: skip
                results.runs.append(measure_mirror("MirrorMaker 2", command, servers, workload, work, latency))
            modes = [(b, False) for b in backends] + [(b, True) for b in exactly_once_backends]
            for backend, exactly_once in modes:
                name = f"smm run ({backend}{', exactly-once' if exactly_once else ''}, x{args.processes})"
                say(f"== this project: {name}")
                properties = _smm_properties(work, servers, backend, exactly_once)
                command = [str(REPO / ".venv" / "bin" / "smm"), "run", str(properties), "--progress", "3600"]
                command += ["--processes", str(args.processes)]
                env = {**os.environ, "SMM_LOCAL_DIR": str(work / "state")}
                results.runs.append(
                    measure_mirror(name, command, servers, workload, work, latency, env, exactly_once=exactly_once)
                )
            for backend in backends:
                say(f"== mirror handler alone ({backend})")
                results.handler[backend] = measure_handler(servers, workload, backend, args.handler_records, work)
                per_gb = results.handler[backend]["cpuSecondsPerGB"]
                results.cost[backend] = {
                    arch: round(per_gb * LAMBDA_MEMORY_GB_PER_VCPU * price, 5)
                    for arch, price in LAMBDA_PRICE_PER_GB_SECOND.items()
                }
    print(report(results, out))
    say(f"== results in {out}/results.json, results.txt and results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
