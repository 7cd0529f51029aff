"""Fault injection on real brokers: scenarios 18-20 of ``shared/reference/scenarios.md`` (issue 6, part 2), and
faults under the shipped examples' event-source mapping settings (issue 11, item 3).

Each test drives a flow through one fault, compares source and target record by record, prints the row
``scenario | mode | source records | target records | lost | duplicates | notes`` and asserts that nothing was
lost and that each partition's first occurrences keep the source's order. At-least-once may duplicate (a
redelivered batch is written again); exactly-once (``faults.MODES``) must not. Every row goes to
``build/reports/faults.json`` as its test finishes (format: ``fault_table``), and the module prints them as one
table when it ends; ``make fault-table`` makes the README's Reliability table from that file.

The example rows run a flow of each shipped example (``infra/examples``) side by side, with the mapping settings
``smm run --settings deploy.json`` gives it, in the examples' delivery mode (at-least-once): a mapping with a
retry limit or a failure destination moves past batches it cannot deliver, and the mirror copies them from the
source; one that retries forever waits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from kafka import IsolationLevel, OffsetSpec, TopicPartition
from kafka.errors import KafkaError

from functions.config_sync import rules
from functions.config_sync.state import key_for
from functions.mirror.mirror import Mirror
from functions.mirror.skipped import mirrored_group
from infra.settings import DEFAULT_FUNCTIONS
from shared.aws.config_source import EventSourceTemplate
from shared.aws.esm_event import SourceRecord
from shared.kafka import admin_sync
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import TopicRecord, group_offsets
from shared.local.broker import LocalBroker, free_port
from shared.local.emulator import FlowTotals, MappingOptions
from shared.mm2 import config
from shared.mm2.config import FlowConfig, FlowSettings, MirrorConfig
from shared.mm2.formats import Checkpoint, OffsetSync
from tests.kafka.fault_table import RESULTS
from tests.kafka.faults import (
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    MODES,
    POISON_MARK,
    QUICK_BACKOFF_SECONDS,
    FailedBatches,
    FaultReport,
    FaultResult,
    Injection,
    LongestBatch,
    Poison,
    ShippedExample,
    SmmProcess,
    SteadyProducer,
    given_up_on,
    local_runtime,
    offset_sync_mismatches,
    properties,
    pytest_command,
    records,
    topic_ids,
    wait_drained,
    wait_mirrored,
    wait_until,
    write_properties,
)
from tests.kafka.support import SEND_METHODS, LiveRuntime, running
from tests.kafka.test_checkpoints import consume, warm_up

pytestmark = pytest.mark.kafka

OUTAGE_SECONDS = 20.0
# The producer reconnects within 1 s (kafka_clients: reconnect_backoff_max_ms); the table reports the time seen. The
# bound is only a generous ceiling that still fails a flow that waits for a whole refresh interval to come back.
RESUME_SECONDS = 60.0
LAMBDA_TIMEOUT = DEFAULT_FUNCTIONS["mirror"].timeout_seconds  # the deployed mirror's timeout, by default
# Short intervals keep the module within minutes (refresh.topics and the batching window: support.SINGLE_BROKER).
QUICK = {"emit.checkpoints.interval.seconds": "1", "emit.heartbeats.interval.seconds": "1"}
# For a real ``smm run`` that is SIGKILLed: a 6 s session (the broker's minimum) lets the next process take over
# the dead one's partitions quickly instead of after kafka-python's 45 s default.
SHORT_SESSION = {"A.consumer.session.timeout.ms": "6000", "A.consumer.heartbeat.interval.ms": "1000"}
# How many times the SIGKILLed process may be paused and found with nothing in flight (its batch was committed
# as it was caught) before the test gives up.
CATCH_TRIES = 20

# The scenarios, in the order of the table (each in every mode of ``faults.MODES``).
HANDLER_AFTER_FLUSH = "handler raises after the records' flush"
OFFSET_SYNC_FAILS = "sending an offset sync fails part-way"
KILLED_MID_FLOW = "smm run SIGKILLed mid-flow"
TARGET_OUTAGE = f"target broker stopped {OUTAGE_SECONDS:.0f} s"
PARTITIONS_ADDED = "partitions added mid-run (2 -> 4)"
EVERYTHING_KILLED = "every process SIGKILLed and restarted"
SCENARIOS = (
    HANDLER_AFTER_FLUSH,
    OFFSET_SYNC_FAILS,
    KILLED_MID_FLOW,
    TARGET_OUTAGE,
    PARTITIONS_ADDED,
    EVERYTHING_KILLED,
)

# Under the shipped examples' mapping settings: the flow of each example (infra/examples/<name>) the rows run.
EXAMPLE_FLOWS = {"msk": "primary->dr", "self-managed": "cloud->onprem"}
PAST_BUDGET = "target broker stopped past the retry budget"
OVERSIZED = "oversized record, smm.oversized.record.action = fail"
POISONED = "poison record, failing until fixed"


def example_row(fault: str, example: str) -> str:
    return f"{fault} ({example} example)"


# Each row of the table with the delivery modes it runs in, in table order.
ROWS = {
    **{scenario: list(MODES) for scenario in SCENARIOS},
    **{example_row(f, e): [AT_LEAST_ONCE] for f in (PAST_BUDGET, OVERSIZED, POISONED) for e in EXAMPLE_FLOWS},
}


@pytest.fixture(scope="module")
def fault_report(request: pytest.FixtureRequest) -> Iterator[FaultReport]:
    """Collects each test's row in ``build/reports/faults.json`` as it finishes; prints the table at the end."""
    report = FaultReport(RESULTS, ROWS, pytest_command(request.config))
    yield report
    report.finish()
    report.emit(request.config)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """Every test runs once per delivery mode (``faults.MODES``)."""
    name: str = request.param
    return name


def flow_properties(clusters: Mapping[str, str], prefix: str, mode: str, **settings: str) -> dict[str, str]:
    """Flow A->B over ``prefix``'s topics and groups, in ``mode``."""
    pattern = f"{prefix}\\..*"
    return properties(clusters, {"A->B": pattern}, **{"A->B.groups": pattern, **QUICK, **MODES[mode], **settings})


def flow_config(clusters: Mapping[str, str], prefix: str, mode: str, **settings: str) -> MirrorConfig:
    return config.parse(flow_properties(clusters, prefix, mode, **settings))


def smm_config(
    tmp_path: Path, clusters: Mapping[str, str], prefix: str, mode: str, **settings: str
) -> tuple[Path, MirrorConfig]:
    """The configuration as an mm2.properties file, for a real ``smm run`` process that a test may SIGKILL."""
    path = tmp_path / "mm2.properties"
    return path, write_properties(path, flow_properties(clusters, prefix, mode, **SHORT_SESSION, **settings))


def remote(flow: FlowConfig, topic: str) -> str:
    return flow.policy().format_remote_topic(flow.source, topic)


def on_target(clients: KafkaClients, flow: FlowConfig, topic: str) -> int:
    """Records in ``topic``'s remote topic (duplicates included); 0 before it exists."""
    info = clients.topic_info(flow.target, remote(flow, topic), refresh=True)
    tps = [TopicPartition(remote(flow, topic), p) for p in range(info.partitions if info else 0)]
    return sum(clients.latest_offsets(flow.target, tps).values())


def committed(clients: KafkaClients, flow: FlowConfig, topic: str) -> int:
    """Records of ``topic`` the flow has committed on the source: each one acknowledged by the target first."""
    return sum(clients.committed_offsets(flow.source, flow.consumer_group_id(topic)).values())


def tally(
    clients: KafkaClients, flow: FlowConfig, topics: list[str], fault: str, mode: str, notes: str = ""
) -> FaultResult:
    pairs = [(records(clients, flow.source, t), records(clients, flow.target, remote(flow, t))) for t in topics]
    return FaultResult.tally(fault, mode, pairs, notes)


# --- scenario 19: the handler raises part-way through a batch ---------------------------------------------


def _fail_after_flush(monkeypatch: pytest.MonkeyPatch, flow: FlowConfig, topic: str) -> Injection:
    """The batch's records are flushed and acknowledged on the target (exactly-once: their transactions are
    committed); then the handler raises, before the batch's offset syncs, as a container that dies there would."""
    injection = Injection(fail_on={2, 5}, after=True)
    injection.install(
        monkeypatch, Mirror, "_acknowledge", lambda _mirror, pending, *_: any(p.topic == topic for p in pending)
    )
    return injection


def _fail_in_offset_syncs(monkeypatch: pytest.MonkeyPatch, flow: FlowConfig, topic: str) -> Injection:
    """Some offset syncs of the batch are sent, then sending the next one fails (test_mirror fails a record).

    The records are acknowledged by then: MM2 logs such a failure and goes on, and so does the mirror (the batch
    stands, its remaining syncs are left out), unless it fails the batch, which is then redelivered."""
    injection = Injection(fail_on={3, 12})
    syncs_topic = flow.offset_syncs_topic()

    def sync_of_topic(_producer: object, to: str, key: bytes | None, value: bytes | None, *_: object) -> bool:
        return to == syncs_topic and OffsetSync.deserialize(key or b"", value or b"").topic == topic

    injection.install(monkeypatch, *SEND_METHODS[flow.settings.producer_backend], sync_of_topic)
    return injection


# Where the batch fails (scenario -> injection); each leaves it half done in its own way. Only this test's topic
# is hit (the flow also mirrors ``heartbeats``), so every failed batch redelivers records the tally sees.
INJECTIONS = {
    HANDLER_AFTER_FLUSH: _fail_after_flush,
    OFFSET_SYNC_FAILS: _fail_in_offset_syncs,
}


@pytest.mark.parametrize("scenario", list(INJECTIONS))
def test_handler_raising_part_way_is_redelivered(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    mode: str,
    scenario: str,
    fault_report: FaultReport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"{unique_prefix}.flaky"
    cfg = flow_config(kafka_clusters, unique_prefix, mode, **{"smm.batch.size": "100"})
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic("A", topic, 3, 1)
        with SteadyProducer(kafka_clusters["A"], {topic: 3}, rate=1e6, total=1800) as producer:
            producer.wait_done(60)
            producer.stop()
        failed = FailedBatches()
        failed.install(monkeypatch)
        injection = INJECTIONS[scenario](monkeypatch, flow, topic)
        with local_runtime(cfg):
            wait_drained(clients, flow, [topic], 90)
        monkeypatch.undo()
        notes = (
            f"{injection.fired} injected failures, {failed.count} failed batches redelivered, "
            f"{failed.after_ack} failures logged after the ack"
        )
        result = fault_report.add(tally(clients, flow, [topic], scenario, mode, notes))
        assert injection.fired == 2, f"the fault was injected {injection.fired} times, not 2: batches too small?"
        if scenario == HANDLER_AFTER_FLUSH:
            assert failed.count >= injection.fired
        else:  # each failed sync either failed its batch or was reported by a batch that stood
            assert failed.count + failed.after_ack >= injection.fired
        result.check()
        source, target = records(clients, "A", topic), records(clients, "B", remote(flow, topic))
        assert offset_sync_mismatches(clients, flow, topic, source, target) == []
        fault_report.passed(result)
    finally:
        clients.close()


# --- scenario 18, data path: smm run SIGKILLed between produce and commit --------------------------------


def remote_partitions(clients: KafkaClients, flow: FlowConfig, topic: str) -> list[TopicPartition]:
    info = clients.topic_info(flow.target, remote(flow, topic), refresh=True)
    return [TopicPartition(remote(flow, topic), p) for p in range(info.partitions if info else 0)]


def end_offsets(clients: KafkaClients, alias: str, tps: list[TopicPartition], isolation: IsolationLevel) -> list[int]:
    """End offsets of ``tps`` as a consumer with ``isolation`` sees them: ``READ_UNCOMMITTED``, the high watermark
    (every record written); ``READ_COMMITTED``, the last stable offset (before the first open transaction)."""
    answer = clients.admin(alias).list_partition_offsets(
        dict.fromkeys(tps, OffsetSpec.LATEST), isolation_level=isolation
    )
    return [answer[tp].offset for tp in tps]


def in_open_transactions(clients: KafkaClients, flow: FlowConfig, topic: str) -> int:
    """Records of the remote topic written in transactions not committed (nor aborted) yet: per partition, the
    ``read_uncommitted`` end offset minus the ``read_committed`` one.

    Each remote partition has one writer (the transactional id of its source partition), so past the last stable
    offset lie only the records of that writer's open transaction. The high watermark is read first: a commit
    between the two reads can only make the difference smaller, so a positive one was in flight at the second.
    """
    tps = remote_partitions(clients, flow, topic)
    written = end_offsets(clients, flow.target, tps, IsolationLevel.READ_UNCOMMITTED)
    stable = end_offsets(clients, flow.target, tps, IsolationLevel.READ_COMMITTED)
    return sum(max(0, w - s) for w, s in zip(written, stable, strict=True))


def ahead_of_source(clients: KafkaClients, flow: FlowConfig, topic: str) -> int:
    """Per partition, records on the target past the flow's committed source offset (the target is read first,
    for the same reason as in ``in_open_transactions``); exact while the target holds no duplicate."""
    tps = remote_partitions(clients, flow, topic)
    written = end_offsets(clients, flow.target, tps, IsolationLevel.READ_UNCOMMITTED)
    done = clients.committed_offsets(flow.source, flow.consumer_group_id(topic))
    return sum(max(0, w - done.get(TopicPartition(topic, tp.partition), 0)) for w, tp in zip(written, tps, strict=True))


def written_not_committed(clients: KafkaClients, flow: FlowConfig, topic: str) -> int:
    """Source records with a copy on the target at or past the flow's committed source offset: what the group's
    next consumer reads, and the mirror writes, again. Counted record by record, so duplicates count once."""
    done = clients.committed_offsets(flow.source, flow.consumer_group_id(topic))
    position = {r.value: (r.partition, r.offset) for r in records(clients, flow.source, topic)}
    copied = {r.value for r in records(clients, flow.target, remote(flow, topic))}
    at = [position[v] for v in copied if v in position]
    return sum(1 for partition, offset in at if offset >= done.get(TopicPartition(topic, partition), 0))


def settled(measure: Callable[[], int], timeout: float = 60.0) -> int:
    """``measure()`` once two readings half a second apart agree: whatever the killed process sent has landed."""
    previous = measure()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = measure()
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"still changing after {timeout:g} s: {previous}")


def kill_with_records_in_flight(
    process: SmmProcess, clients: KafkaClients, flow: FlowConfig, topic: str, mode: str
) -> int:
    """SIGKILL ``process`` while records are in flight; returns how many were (always some).

    In flight: in exactly-once mode, written to the target in transactions not committed
    (``in_open_transactions``); in at-least-once mode, written to the target but not committed on the source
    (``written_not_committed``). As soon as a quick look sees some, the process is paused (SIGSTOP) and they are
    counted once nothing it sent is still landing; if its batch got committed meanwhile, none are left, so it is
    resumed and caught again (up to ``CATCH_TRIES`` times). The count is thus the state at the kill itself.
    """

    def ahead() -> int:
        return (in_open_transactions if mode == EXACTLY_ONCE else ahead_of_source)(clients, flow, topic)

    def caught() -> bool:
        try:
            return ahead() > 0
        except KafkaError:
            return False

    deadline = time.monotonic() + 120
    for _ in range(CATCH_TRIES):
        while not caught():  # as fast as the brokers answer: the batch may be committed any moment
            if time.monotonic() > deadline:
                raise AssertionError(f"no records in flight seen within 120 s\n{process.tail()}")
        process.pause()
        left = settled(ahead)
        if mode != EXACTLY_ONCE:
            left = written_not_committed(clients, flow, topic)
        if left > 0:
            process.kill()
            return left
        process.resume()
    raise AssertionError(f"{CATCH_TRIES} pauses, none with records in flight\n{process.tail()}")


def test_smm_run_killed_mid_flow_then_restarted(
    kafka_clusters: dict[str, str], unique_prefix: str, mode: str, fault_report: FaultReport, tmp_path: Path
) -> None:
    topic = f"{unique_prefix}.killed"
    quiet = {"emit.checkpoints.enabled": "false", "emit.heartbeats.enabled": "false"}
    path, cfg = smm_config(tmp_path, kafka_clusters, unique_prefix, mode, **quiet)
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    log = tmp_path / "smm.log"
    try:
        clients.ensure_topic("A", topic, 3, 1)
        with SteadyProducer(kafka_clusters["A"], {topic: 3}, rate=300) as producer:
            with SmmProcess(path, log) as first:
                wait_until("records flowing to B", lambda: on_target(clients, flow, topic) >= 300, 60, first.tail)
                in_flight = kill_with_records_in_flight(first, clients, flow, topic, mode)
            producer.finish_after(1800)  # the flow goes on through the restart, however long the catch took
            with SmmProcess(path, log) as second:
                producer.wait_done(60)
                produced = producer.stop()
                wait_drained(clients, flow, [topic], 120, second.tail)
                assert second.alive(), second.tail()
        how = "(read_uncommitted minus read_committed end offsets)" if mode == EXACTLY_ONCE else "on the source"
        notes = f"killed with {in_flight} records written to the target but not committed {how}; restarted"
        result = fault_report.add(tally(clients, flow, [topic], KILLED_MID_FLOW, mode, notes))
        assert result.produced == produced
        result.check()
        assert in_flight > 0
        if mode != EXACTLY_ONCE:  # each record in flight was read and written again: a duplicate
            assert result.duplicated >= in_flight, f"{in_flight} records in flight at the kill"
        fault_report.passed(result)
    finally:
        clients.close()


# --- scenario 20: the target broker stops for 20 s --------------------------------------------------------


@pytest.fixture
def outage_brokers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, LocalBroker]]:
    """A source and a target broker of this test's own: the session clusters are never stopped."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # as the session fixture does: no EMF lines
    brokers = {alias: LocalBroker(alias, free_port(), tmp_path / "brokers") for alias in ("A", "B")}
    with ExitStack() as stopping:  # stops each broker, even when starting or stopping another one fails
        for broker in brokers.values():
            stopping.callback(broker.stop)
        with ThreadPoolExecutor(len(brokers)) as pool:
            list(pool.map(lambda b: b.start(timeout=120), brokers.values()))
        warm_up({alias: b.bootstrap for alias, b in brokers.items()})
        yield brokers


def test_target_outage_resumes_by_itself(
    outage_brokers: dict[str, LocalBroker],
    unique_prefix: str,
    mode: str,
    fault_report: FaultReport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clusters = {alias: b.bootstrap for alias, b in outage_brokers.items()}
    topic = f"{unique_prefix}.steady"
    cfg = flow_config(clusters, unique_prefix, mode)
    flow = cfg.flow("A", "B")
    target = outage_brokers["B"]
    clients = KafkaClients(cfg)
    longest = LongestBatch()
    longest.install(monkeypatch)
    failed = FailedBatches()
    failed.install(monkeypatch)
    try:
        clients.ensure_topic("A", topic, 3, 1)
        with SteadyProducer(clusters["A"], {topic: 3}, rate=100) as producer, local_runtime(cfg):
            wait_until("records flowing to B", lambda: on_target(clients, flow, topic) >= 200, 60)
            stopped = time.monotonic()
            target.stop()
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            target.start(timeout=120)
            back = time.monotonic()
            before = committed(clients, flow, topic)  # on the source, which stayed up
            resumed = wait_until("the flow resumed", lambda: committed(clients, flow, topic) > before, 120)
            time.sleep(2)  # the steady flow goes on for a while after it resumed
            produced = producer.stop()
            drained = wait_drained(clients, flow, [topic], 120)
        notes = (
            f"down {back - stopped:.0f} s; a batch waited up to {longest.seconds:.0f} s; first commit {resumed:.1f} s "
            f"after the restart, drained {drained:.1f} s later; {failed.count} failed batches"
        )
        result = fault_report.add(tally(clients, flow, [topic], TARGET_OUTAGE, mode, notes))
        assert result.produced == produced
        result.check()
        assert resumed < RESUME_SECONDS, f"the flow resumed {resumed:.0f} s after the target was back"
        assert longest.seconds < LAMBDA_TIMEOUT, f"a batch held the handler {longest.seconds:.0f} s, past Lambda's"
        fault_report.passed(result)
    finally:
        clients.close()


# --- scenario 8 under load: partitions added to a mirrored topic -----------------------------------------


def test_partitions_added_mid_run(
    kafka_clusters: dict[str, str], unique_prefix: str, mode: str, fault_report: FaultReport
) -> None:
    topic = f"{unique_prefix}.growing"
    cfg = flow_config(kafka_clusters, unique_prefix, mode)
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    try:
        clients.ensure_topic("A", topic, 2, 1)
        with SteadyProducer(kafka_clusters["A"], {topic: 2}, rate=300) as producer, local_runtime(cfg):
            wait_until("records flowing to B", lambda: on_target(clients, flow, topic) >= 300, 60)
            producer.grow(clients, "A", topic, 4)
            grown = wait_until(
                "the remote topic grown to 4 partitions",
                lambda: getattr(clients.topic_info("B", remote(flow, topic), refresh=True), "partitions", 0) == 4,
                30,
            )
            time.sleep(3)  # records go on into all four partitions
            producer.stop()
            wait_drained(clients, flow, [topic], 90)
        result = fault_report.add(
            tally(clients, flow, [topic], PARTITIONS_ADDED, mode, f"remote grown in {grown:.1f} s")
        )
        result.check()
        mirrored = records(clients, "B", remote(flow, topic))
        assert {r.partition for r in mirrored} == {0, 1, 2, 3}, "records of the new partitions did not arrive"
        fault_report.passed(result)
    finally:
        clients.close()


# --- scenario 18, everything: every function process killed and restarted --------------------------------


def checkpoints_of(clients: KafkaClients, flow: FlowConfig, group: str) -> list[tuple[int, Checkpoint]]:
    """(offset, checkpoint) of ``group`` in the flow's checkpoints topic, in topic order."""
    topic = flow.policy().checkpoints_topic(flow.source)
    found = [
        (r.offset, Checkpoint.deserialize(r.key or b"", r.value or b"")) for r in records(clients, flow.target, topic)
    ]
    return [(offset, c) for offset, c in found if c.group == group]


def checkpointed(clients: KafkaClients, flow: FlowConfig, group: str, positions: Mapping[TopicPartition, int]) -> bool:
    """Whether the newest checkpoint of every partition has the group's upstream position."""
    newest = {(c.topic, c.partition): c.upstream_offset for _, c in checkpoints_of(clients, flow, group)}
    return all(newest.get((remote(flow, tp.topic), tp.partition)) == at for tp, at in positions.items())


def checkpoint_regressions(history: list[tuple[int, Checkpoint]], restarted_at: int) -> list[str]:
    """Checkpoints that moved backwards, or were emitted again unchanged after the restart (stale)."""
    last: dict[tuple[str, int], Checkpoint] = {}
    problems = []
    for offset, c in history:
        before = last.get((c.topic, c.partition))
        if before is not None and (
            c.upstream_offset < before.upstream_offset or c.downstream_offset < before.downstream_offset
        ):
            problems.append(f"{c} after {before}")
        elif before == c and offset >= restarted_at:
            problems.append(f"{c} re-emitted after the restart")
        last[(c.topic, c.partition)] = c
    return problems


def state_records_since(clients: KafkaClients, flow: FlowConfig, offset: int, topics: list[str]) -> list[TopicRecord]:
    """Records config sync wrote about ``topics`` to its state topic at or after ``offset``."""
    keys = {key_for(t) for t in topics}
    return [
        r for r in records(clients, flow.target, rules.state_topic(flow).name) if r.offset >= offset and r.key in keys
    ]


def ends(clients: KafkaClients, alias: str, topic: str) -> int:
    """The end offset of a single-partition topic (the state and checkpoints topics)."""
    return clients.latest_offsets(alias, [TopicPartition(topic, 0)])[TopicPartition(topic, 0)]


def test_every_process_killed_and_restarted(
    kafka_clusters: dict[str, str], unique_prefix: str, mode: str, fault_report: FaultReport, tmp_path: Path
) -> None:
    partitions = {f"{unique_prefix}.a": 3, f"{unique_prefix}.b": 2}
    topics = list(partitions)
    group = f"{unique_prefix}.g"
    path, cfg = smm_config(tmp_path, kafka_clusters, unique_prefix, mode)
    flow = cfg.flow("A", "B")
    clients = KafkaClients(cfg)
    log = tmp_path / "smm.log"
    state_topic = rules.state_topic(flow).name
    checkpoints_topic = flow.policy().checkpoints_topic(flow.source)
    watched = {
        "A": [flow.offset_syncs_topic()],
        "B": [remote(flow, t) for t in topics] + [t.name for t in rules.internal_topics(flow) if t.cluster == "B"],
    }

    def mirrored_so_far() -> dict[TopicPartition, int]:
        return {tp: o for t in topics for tp, o in group_offsets(clients, "A", flow.consumer_group_id(t)).items()}

    try:
        for topic, count in partitions.items():
            clients.ensure_topic("A", topic, count, 1)
        with SteadyProducer(kafka_clusters["A"], partitions, rate=200) as producer:
            with SmmProcess(path, log) as first:
                wait_until(
                    "both topics flowing to B, every partition's position committed",
                    lambda: (
                        all(on_target(clients, flow, t) >= 100 for t in topics)
                        and len(mirrored_so_far()) == sum(partitions.values())
                    ),
                    60,
                    first.tail,
                )
                positions = mirrored_so_far()
                consume(kafka_clusters["A"], group, positions)
                wait_until(
                    "checkpoints of the group", lambda: checkpointed(clients, flow, group, positions), 60, first.tail
                )
                consume(kafka_clusters["A"], group, mirrored_so_far())  # the group moves on as the kill strikes
                first.kill()
            time.sleep(1)  # nothing the killed process sent is still on its way
            restarted_at = {t: ends(clients, "B", t) for t in (state_topic, checkpoints_topic)}
            ids_before = {alias: topic_ids(clients, alias, names) for alias, names in watched.items()}
            assert all(len(ids_before[alias]) == len(names) for alias, names in watched.items()), ids_before
            recorded = {r.key for r in state_records_since(clients, flow, 0, topics)}
            assert recorded == {key_for(t) for t in topics}, "config sync had not recorded both topics before the kill"
            with SmmProcess(path, log) as second:
                time.sleep(3)
                producer.stop()
                wait_drained(clients, flow, topics, 120, second.tail)
                final = mirrored_so_far()
                consume(kafka_clusters["A"], group, final)
                wait_until(
                    "checkpoints at the group's final offsets",
                    lambda: checkpointed(clients, flow, group, final),
                    60,
                    second.tail,
                )
                time.sleep(2)  # a few more config-sync, heartbeat and checkpoint runs over unchanged state
                assert second.alive(), second.tail()
        ids_after = {alias: topic_ids(clients, alias, names) for alias, names in watched.items()}
        history = checkpoints_of(clients, flow, group)
        regressions = checkpoint_regressions(history, restarted_at[checkpoints_topic])
        rewritten = state_records_since(clients, flow, restarted_at[state_topic], topics)
        after_restart = sum(1 for offset, _ in history if offset >= restarted_at[checkpoints_topic])
        recreated = sorted(
            t for alias in watched for t in ids_before[alias] if ids_after[alias].get(t) != ids_before[alias][t]
        )
        notes = (
            f"{len(history)} checkpoints ({after_restart} after the restart), {len(regressions)} backwards or stale; "
            f"{len(recreated)} topics re-created, {len(rewritten)} state records rewritten"
        )
        result = fault_report.add(tally(clients, flow, topics, EVERYTHING_KILLED, mode, notes))
        result.check()
        assert after_restart > 0, "no checkpoint was emitted after the restart"
        assert regressions == [], f"checkpoints moved backwards or were re-emitted: {regressions}"
        assert recreated == [], f"re-created (new id) or resized: {recreated}; before {ids_before}, after {ids_after}"
        assert rewritten == [], f"config sync rewrote state of unchanged topics after the restart: {rewritten}"
        fault_report.passed(result)
    finally:
        clients.close()


# --- issue 11: faults under the shipped examples' event-source mapping settings -----------------------------

PARTITIONS = 3
# Retry budgets each flow goes through before the fault is lifted: a mapping that may skip gives up that many
# batches; one that retries forever fails as often as a mapping capped at Lambda's 10 retries does to give up as many.
OUTAGE_BUDGETS = 2
STALL_BUDGETS = 3
# While the target is down its producer fails a send within a second, so a budget of 11 invocations takes seconds
# (a deployed invocation waits until the mirror function's timeout). The data path is librdkafka's: kafka-python's
# idempotent producer, once a batch it had sent expired, waits for a new producer id and expires nothing more, so
# a flush lasts until the target is back; the emulator does not cut an invocation at the function's timeout, as
# Lambda would, so no retry budget would run out.
FAST_FAILING = {"producer.delivery.timeout.ms": "1000", "producer.request.timeout.ms": "750"}
FAST_FAILING_BACKEND = {"smm.producer.backend": "confluent-kafka"}
EXAMPLE_QUIET = {"emit.checkpoints.enabled": "false", "emit.heartbeats.enabled": "false"}
OVERSIZED_BYTES = 100_000
SMALL_LIMIT = 65_536  # the remote topic's max.message.bytes until the test raises it
RAISED_LIMIT = 1_048_576
PACE = f"Test pace: backoff capped at {QUICK_BACKOFF_SECONDS:g} s"


@pytest.fixture(scope="module")
def examples() -> list[ShippedExample]:
    """The shipped examples' flows and mapping settings, as their files read when the module starts."""
    return [ShippedExample.load(name, flow) for name, flow in EXAMPLE_FLOWS.items()]


@dataclass(frozen=True)
class ExampleRun:
    """One example's flow in a test (under the example's cluster aliases) and the source topic it mirrors."""

    example: ShippedExample
    flow: FlowConfig
    topic: str

    @property
    def name(self) -> str:
        return self.flow.name

    @property
    def recovers(self) -> bool:
        """Whether its mappings may skip, so that its mirror keeps a position and copies what they skipped."""
        return self.example.template.may_skip

    def row(self, fault: str) -> str:
        return example_row(fault, self.example.name)


def example_runs(
    source: str, target: str, prefix: str, examples: Sequence[ShippedExample], topic: str, **settings: str
) -> tuple[MirrorConfig, list[ExampleRun]]:
    """Every example's flow side by side, from cluster ``source`` to cluster ``target`` (bootstrap servers) under the
    example's aliases, each mirroring ``<prefix>.<example>.<topic>``."""
    clusters = {alias: bootstrap for ex in examples for alias, bootstrap in ((ex.source, source), (ex.target, target))}
    topics = {ex.flow: f"{prefix}.{ex.name}.{topic}" for ex in examples}
    cfg = config.parse(properties(clusters, {f: re.escape(t) for f, t in topics.items()}, **EXAMPLE_QUIET, **settings))
    return cfg, [ExampleRun(ex, cfg.flow(ex.source, ex.target), topics[ex.flow]) for ex in examples]


def example_mappings(runs: Sequence[ExampleRun]) -> dict[str, MappingOptions]:
    return {run.name: run.example.options for run in runs}


def flowing(clients: KafkaClients, run: ExampleRun, at_least: int) -> bool:
    """Records reach the target and, where the mirror keeps a position of its own, it has one for every partition."""
    if on_target(clients, run.flow, run.topic) < at_least:
        return False
    return not run.recovers or len(mirrored_position(clients, run)) == PARTITIONS


def mirrored_position(clients: KafkaClients, run: ExampleRun) -> dict[TopicPartition, int]:
    """How far the flow mirrored each partition: the mirror's own position where it keeps one, else the mapping's."""
    group = mirrored_group(run.flow, run.topic) if run.recovers else run.flow.consumer_group_id(run.topic)
    return clients.committed_offsets(run.flow.source, group)


def positions(clients: KafkaClients, run: ExampleRun) -> tuple[int, int, int]:
    """Summed over the partitions: mirrored (``mirrored_position``), committed by the mapping, and the end."""
    tps = [TopicPartition(run.topic, p) for p in range(PARTITIONS)]
    end = sum(clients.latest_offsets(run.flow.source, tps).values())
    return sum(mirrored_position(clients, run).values()), committed(clients, run.flow, run.topic), end


def values_on_target(clients: KafkaClients, run: ExampleRun) -> set[bytes | None]:
    return {r.value for r in records(clients, run.flow.target, remote(run.flow, run.topic))}


def given_up_aside(clients: KafkaClients, run: ExampleRun) -> list[SourceRecord] | None:
    """The records of the run's topic on its Kafka failure topic; None without one."""
    failure_topic = run.example.failure_topic
    return None if failure_topic is None else given_up_on(clients, run.flow.source, failure_topic, {run.topic})


def given_up_note(totals: FlowTotals, aside: list[SourceRecord] | None, template: EventSourceTemplate) -> str:
    """What the mapping gave up, and how much of it its on-failure destination got."""
    given_up = f"{totals.given_up_batches} batches ({totals.given_up_records} records) given up"
    if aside is not None:
        return f"{given_up}, {len(aside)} on the failure topic"
    return (
        f"{given_up}, {totals.sent_to_destination} sent to {template.on_failure}" if template.on_failure else given_up
    )


def live_totals(live: LiveRuntime, runs: Sequence[ExampleRun]) -> str:
    return "\n".join(f"{run.name}: {live.totals(run.name)}" for run in runs)


def test_target_outage_past_the_retry_budget(
    outage_brokers: dict[str, LocalBroker],
    unique_prefix: str,
    examples: list[ShippedExample],
    fault_report: FaultReport,
) -> None:
    """The target stays down until every flow went through its retry budget twice. A mapping that may skip gives
    batches up (to its failure destination) meanwhile; once the target is back, the mirror copies them from the
    source before its next batch. A mapping that retries forever retries until the target is back."""
    source, target = outage_brokers["A"], outage_brokers["B"]
    fast = {f"{ex.target}.{key}": value for ex in examples for key, value in FAST_FAILING.items()}
    fast.update(FAST_FAILING_BACKEND)
    cfg, runs = example_runs(source.bootstrap, target.bootstrap, unique_prefix, examples, "steady", **fast)
    clients = KafkaClients(cfg)
    try:
        for run in runs:
            clients.ensure_topic(run.flow.source, run.topic, PARTITIONS, 1)
        topics = {run.topic: PARTITIONS for run in runs}
        with (
            SteadyProducer(source.bootstrap, topics, rate=100) as producer,
            running(cfg, mappings=example_mappings(runs)) as live,
        ):
            wait_until("records flowing to the target", lambda: all(flowing(clients, r, 100) for r in runs), 60)
            before = {run.name: on_target(clients, run.flow, run.topic) for run in runs}
            stopped = time.monotonic()
            target.stop()
            wait_until(
                f"every flow through its retry budget {OUTAGE_BUDGETS} times",
                lambda: all(r.example.past_budget(live.totals(r.name), OUTAGE_BUDGETS) for r in runs),
                180,
                lambda: live_totals(live, runs),
            )
            target.start(timeout=120)
            down = time.monotonic() - stopped

            def resumed(run: ExampleRun) -> bool:
                landed = on_target(clients, run.flow, run.topic) > before[run.name]
                return landed and (not run.recovers or live.totals(run.name).recovered_records > 0)

            wait_until("mirroring again", lambda: all(resumed(r) for r in runs), 120, lambda: live_totals(live, runs))
            producer.finish_after(300)  # batches of every partition after the outage, each copying what preceded it
            producer.wait_done(60)
            producer.stop()
            for run in runs:
                wait_mirrored(clients, run.flow, [run.topic], run.recovers, 120, lambda: live_totals(live, runs))
        fails_in = FAST_FAILING["producer.delivery.timeout.ms"]
        checks = []
        for run in runs:
            totals = live.final[run.name]
            aside = given_up_aside(clients, run)
            if run.recovers:
                what = (
                    f"{given_up_note(totals, aside, run.example.template)}, {totals.recovered_records} recovered from "
                    "the source once it was back"
                )
            else:
                what = "retried until the target was back, nothing given up"
            notes = (
                f"{run.example.label()}. Target down {down:.0f} s: {what}; {totals.failed_batches} failed batches. "
                f"{PACE}; data path confluent-kafka, the target's delivery.timeout.ms {fails_in}, so an invocation "
                f"fails in about a second (deployed: by the {run.example.options.timeout_seconds:g} s timeout)"
            )
            result = fault_report.add(tally(clients, run.flow, [run.topic], run.row(PAST_BUDGET), AT_LEAST_ONCE, notes))
            checks.append((run, totals, aside, result))
        for run, totals, aside, result in checks:
            result.check()
            if run.recovers:
                assert totals.given_up_batches >= OUTAGE_BUDGETS, totals
                assert totals.recovered_records >= totals.given_up_records, totals
                if aside is not None:
                    assert len(aside) == totals.sent_to_destination == totals.given_up_records, (len(aside), totals)
            else:
                assert totals.given_up_records == 0, totals
            fault_report.passed(result)
    finally:
        clients.close()


class Stall(Protocol):
    """A record of partition 0 that fails every write until ``fix``."""

    settings: Mapping[str, str]

    def prepare(self, clients: KafkaClients, runs: Sequence[ExampleRun], monkeypatch: pytest.MonkeyPatch) -> None: ...

    def value(self, topic: str) -> bytes: ...

    def fix(self, clients: KafkaClients, runs: Sequence[ExampleRun]) -> None: ...

    def describe(self, run: ExampleRun) -> str:
        """The fault, and what it did to ``run``'s flow."""
        ...


class Oversized:
    """A record larger than the remote topic's max.message.bytes (``SMALL_LIMIT``, kept out of config sync by
    ``config.properties.exclude``), until the test raises it to ``RAISED_LIMIT``."""

    def __init__(self) -> None:
        excluded = (*FlowSettings().config_properties_exclude, r"max\.message\.bytes")
        self.settings: Mapping[str, str] = {
            "smm.oversized.record.action": "fail",
            "config.properties.exclude": ", ".join(excluded),
        }

    def prepare(self, clients: KafkaClients, runs: Sequence[ExampleRun], monkeypatch: pytest.MonkeyPatch) -> None:
        for run in runs:
            limit = {"max.message.bytes": str(SMALL_LIMIT)}
            clients.ensure_topic(run.flow.target, remote(run.flow, run.topic), PARTITIONS, 1, limit)

    def value(self, topic: str) -> bytes:
        return f"{topic}/0/oversized ".encode().ljust(OVERSIZED_BYTES, b"x")

    def fix(self, clients: KafkaClients, runs: Sequence[ExampleRun]) -> None:
        for run in runs:
            raised = {remote(run.flow, run.topic): {"max.message.bytes": str(RAISED_LIMIT)}}
            admin_sync.alter_topic_configs(clients, run.flow.target, raised)

    def describe(self, run: ExampleRun) -> str:
        return f"A {OVERSIZED_BYTES}-byte record, remote max.message.bytes {SMALL_LIMIT} raised to {RAISED_LIMIT}"


class Poisoned:
    """A record the mirror fails to write, whether the mapping delivers it or the mirror copies it from the source
    (``faults.Poison``), until the test cures it."""

    def __init__(self) -> None:
        self.settings: Mapping[str, str] = {}
        self.poison = Poison()

    def prepare(self, clients: KafkaClients, runs: Sequence[ExampleRun], monkeypatch: pytest.MonkeyPatch) -> None:
        self.poison.install(monkeypatch)

    def value(self, topic: str) -> bytes:
        return f"{topic}/0".encode() + POISON_MARK

    def fix(self, clients: KafkaClients, runs: Sequence[ExampleRun]) -> None:
        self.poison.cure()

    def describe(self, run: ExampleRun) -> str:
        failures, alone = self.poison.failures[run.name], self.poison.alone[run.name]
        isolated = f", {alone} with it alone (bisect isolated it)" if alone else ""
        return f"A poisoned record (the mirror fails any write holding it): {failures} writes failed on it{isolated}"


STALLS: dict[str, Callable[[], Stall]] = {OVERSIZED: Oversized, POISONED: Poisoned}


@pytest.mark.parametrize("fault", list(STALLS))
def test_a_record_failing_until_fixed_stalls_its_flow_and_is_not_lost(
    kafka_clusters: dict[str, str],
    unique_prefix: str,
    examples: list[ShippedExample],
    fault: str,
    fault_report: FaultReport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One record of partition 0 fails every write until the test fixes it. A mapping that may skip gives its batch
    up, the next batch's copy of the skipped range hits it again, and so on: the flow stalls on it rather than
    losing it. A mapping that retries forever holds it (bisect delivers its neighbours). Once fixed, all is there."""
    stall = STALLS[fault]()
    cfg, runs = example_runs(
        kafka_clusters["A"], kafka_clusters["B"], unique_prefix, examples, "stalled", **stall.settings
    )
    clients = KafkaClients(cfg)
    try:
        for run in runs:
            clients.ensure_topic(run.flow.source, run.topic, PARTITIONS, 1)
        stall.prepare(clients, runs, monkeypatch)
        topics = {run.topic: PARTITIONS for run in runs}
        with (
            SteadyProducer(kafka_clusters["A"], topics, rate=60) as producer,
            running(cfg, mappings=example_mappings(runs)) as live,
        ):
            wait_until("records flowing to the target", lambda: all(flowing(clients, r, 60) for r in runs), 60)
            before = {run.name: on_target(clients, run.flow, run.topic) for run in runs}
            bad: dict[str, int] = {}
            for run in runs:
                sent = clients.producer(run.flow.source).send(run.topic, value=stall.value(run.topic), partition=0)
                bad[run.name] = int(sent.get(timeout=30).offset)
            injected = time.monotonic()
            wait_until(
                f"every flow through its retry budget {STALL_BUDGETS} times",
                lambda: all(r.example.past_budget(live.totals(r.name), STALL_BUDGETS) for r in runs),
                180,
                lambda: live_totals(live, runs),
            )
            stalled = time.monotonic() - injected
            during = {run.name: live.totals(run.name) for run in runs}
            meanwhile = {run.name: on_target(clients, run.flow, run.topic) - before[run.name] for run in runs}
            seen = {run.name: positions(clients, run) for run in runs}
            early = [r.name for r in runs if stall.value(r.topic) in values_on_target(clients, r)]
            stall.fix(clients, runs)
            fixed = time.monotonic()

            def written(run: ExampleRun) -> bool:
                return mirrored_position(clients, run).get(TopicPartition(run.topic, 0), 0) > bad[run.name]

            wait_until("the record mirrored once fixed", lambda: all(written(r) for r in runs), 120)
            landed = time.monotonic() - fixed
            producer.finish_after(120)
            producer.wait_done(60)
            producer.stop()
            for run in runs:
                wait_mirrored(clients, run.flow, [run.topic], run.recovers, 120, lambda: live_totals(live, runs))
        checks = []
        for run in runs:
            totals, final = during[run.name], live.final[run.name]
            aside = given_up_aside(clients, run)
            mirrored, mapped, end = seen[run.name]
            if run.recovers:
                among = " (the record among them)" if aside is not None else ""  # checked below
                what = (
                    f"{given_up_note(totals, aside, run.example.template)}{among}, {totals.failed_batches} failed "
                    f"batches, {meanwhile[run.name]} other records mirrored meanwhile; the mapping's lag "
                    f"{end - mapped} records, its mirror {end - mirrored} behind. {final.recovered_records} recovered "
                    "from the source once fixed"
                )
            else:
                what = (
                    f"nothing given up, {totals.failed_batches} failed batches, {meanwhile[run.name]} other records "
                    f"mirrored meanwhile; lag {end - mapped} records"
                )
            notes = (
                f"{run.example.label()}. {stall.describe(run)}. Stalled {stalled:.0f} s until fixed, mirrored "
                f"{landed:.1f} s after; while stalled: {what}. {PACE}"
            )
            result = fault_report.add(tally(clients, run.flow, [run.topic], run.row(fault), AT_LEAST_ONCE, notes))
            checks.append((run, totals, final, aside, result))
        for run, totals, final, aside, result in checks:
            result.check()
            assert run.name not in early, f"{run.name}: the record was written before the fix: {early}"
            if run.recovers:
                assert totals.given_up_batches >= STALL_BUDGETS and final.recovered_records > 0, (totals, final)
                if aside is not None:
                    assert (0, bad[run.name]) in {(r.partition, r.offset) for r in aside}, "not on the failure topic"
            else:
                assert final.given_up_records == 0, final
            fault_report.passed(result)
    finally:
        clients.close()
