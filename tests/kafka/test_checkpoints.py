"""Checkpoints and failover on real brokers (scenarios 11-16 and the restart half of 18).

Records are mirrored by the local runtime with its checkpoint role switched off; each test then runs the
checkpoint task itself, from a configuration with checkpoints on, so it decides exactly when a run happens.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from functions.checkpoints.checkpoints import CheckpointTask, RunReport
from shared.cli.failover import apply_failover, plan_failover
from shared.kafka.clients import KafkaClients
from shared.kafka.groups import read_topic
from shared.kafka.mirror_client import MirrorClient
from shared.mm2.config import MirrorConfig
from shared.mm2.formats import Checkpoint, OffsetSync
from tests.kafka.support import SINGLE_BROKER, make_config, read_all, run_flows

pytestmark = pytest.mark.kafka

LAG_MAX = 50
PER_PARTITION = 1000


# --- helpers (also used by test_failover_cli) ------------------------------------------------------------


def settings(prefix: str, flows: Iterable[str], **extra: str) -> dict[str, str]:
    """Flow settings restricted to ``prefix``'s groups, with a small ``offset.lag.max`` and large batches."""
    values = {
        "offset.lag.max": str(LAG_MAX),
        "smm.batch.size": "500",
        "emit.checkpoints.interval.seconds": "1",
        "sync.group.offsets.interval.seconds": "1",
        **extra,
    }
    for flow in flows:
        values[f"{flow}.groups"] = f"{prefix}.*"
    return values


def configs(
    clusters: Mapping[str, str], prefix: str, flows: Iterable[str], **extra: str
) -> tuple[MirrorConfig, MirrorConfig]:
    """(config for mirroring: no scheduled checkpoints or heartbeats, config for the checkpoint task)."""
    flows = list(flows)
    topics = {flow: f"{prefix}.*" for flow in flows}
    quiet = {"emit.checkpoints.enabled": "false", "emit.heartbeats.enabled": "false"}
    quiet_config = make_config(clusters, topics, **settings(prefix, flows, **quiet))
    return quiet_config, make_config(clusters, topics, **settings(prefix, flows, **extra))


def produce(clients: KafkaClients, alias: str, topic: str, counts: Mapping[int, int], start: int = 0) -> None:
    """``counts[p]`` records into partition p, valued ``topic/p/i`` (so a record is found again downstream)."""
    clients.ensure_topic(alias, topic, max(counts) + 1, 1)
    producer = clients.producer(alias)
    for p, count in counts.items():
        for i in range(start, start + count):
            producer.send(topic, key=f"k{i}".encode(), value=f"{topic}/{p}/{i}".encode(), partition=p)
    producer.flush()


def drained(clients: KafkaClients, mirror_config: MirrorConfig, topics: Mapping[str, Iterable[str]]) -> bool:
    """Every topic's ESM group (per flow name) has committed its partitions' end offsets."""
    try:
        return _drained(clients, mirror_config, topics)
    except KafkaError:  # e.g. the group coordinator is still loading on a fresh cluster: ask again later
        return False


def _drained(clients: KafkaClients, mirror_config: MirrorConfig, topics: Mapping[str, Iterable[str]]) -> bool:
    for flow_name, names in topics.items():
        flow = next(f for f in mirror_config.flows if f.name == flow_name)
        for topic in names:
            info = clients.topic_info(flow.source, topic)
            tps = [TopicPartition(topic, p) for p in range(info.partitions if info else 0)]
            ends = clients.latest_offsets(flow.source, tps)
            committed = clients.committed_offsets(flow.source, flow.consumer_group_id(topic))
            if any(committed.get(tp, 0) < end for tp, end in ends.items()):
                return False
    return True


def mirror(mirror_config: MirrorConfig, topics: Mapping[str, Iterable[str]]) -> None:
    """Run the local runtime until every topic is mirrored (``topics``: flow name -> source topics).

    A second run starts if the first stalls: the emulator's poller thread can die when a commit meets a
    rebalance on a fresh cluster (reported to its owner). The second run mirrors the uncommitted records again,
    as a redelivering ESM would, so the tests below tolerate duplicates on the target.
    """
    clients = KafkaClients(mirror_config)
    try:
        for timeout in (30, 90):
            run_flows(mirror_config, until=lambda: drained(clients, mirror_config, topics), timeout=timeout)
            if drained(clients, mirror_config, topics):
                return
        raise AssertionError(f"not mirrored in time: {topics}")
    finally:
        clients.close()


@contextmanager
def mirroring(mirror_config: MirrorConfig) -> Iterator[Callable[[Mapping[str, Iterable[str]]], None]]:
    """The local runtime running in the background; yields ``wait(topics)``, which returns once they are mirrored.

    One run for a whole test: the emulated ESM consumers stay in their groups instead of rejoining them.
    """
    done = threading.Event()
    runner = threading.Thread(target=run_flows, args=(mirror_config, done.is_set, 300), daemon=True)
    runner.start()
    clients = KafkaClients(mirror_config)

    def wait(topics: Mapping[str, Iterable[str]]) -> None:
        deadline = time.monotonic() + 120
        while not drained(clients, mirror_config, topics):
            assert time.monotonic() < deadline, f"not mirrored in time: {topics}"
            time.sleep(0.3)

    try:
        yield wait
    finally:
        done.set()
        runner.join(timeout=60)
        clients.close()


def consume(bootstrap: str, group: str, positions: Mapping[TopicPartition, int]) -> None:
    """A real consumer group reads each partition up to ``positions[tp]`` and commits there, then leaves."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign(sorted(positions))
        consumer.seek_to_beginning(*positions)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < want for tp, want in positions.items()):
            assert time.monotonic() < deadline, f"{group} could not read to {positions}"
            for tp in positions:
                if consumer.position(tp) >= positions[tp]:
                    consumer.pause(tp)
            consumer.poll(timeout_ms=200, max_records=50)
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()})
    finally:
        consumer.close(autocommit=False)


def join(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    """A consumer that is an active member of ``group`` (state Stable) once this returns; the caller closes it."""
    member = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    member.subscribe([topic])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 60
        while not any(g["group_id"] == group and g["group_state"] == "Stable" for g in admin.list_groups()):
            assert time.monotonic() < deadline, f"{group} never became an active group"
            member.poll(timeout_ms=200, max_records=1)
    except BaseException:
        member.close(autocommit=False)
        raise
    finally:
        admin.close()
    return member


def warm_up(clusters: Mapping[str, str]) -> None:
    """Make each cluster's group coordinator ready (a fresh cluster creates ``__consumer_offsets`` on first use).

    The emulated ESM consumers then join their groups at once; on a cold cluster they can rebalance while
    committing, which stops the emulator's poller thread (reported to the emulator's owner).
    """
    for bootstrap in clusters.values():
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    admin.list_group_offsets({"smm-test-warm-up": None})
                    break
                except KafkaError:
                    assert time.monotonic() < deadline, f"no group coordinator on {bootstrap}"
                    time.sleep(0.3)
        finally:
            admin.close()


def read_from(bootstrap: str, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, list[str]]:
    """Values a consumer starting at ``offsets`` reads to the end of each partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    values: dict[TopicPartition, list[str]] = {tp: [] for tp in offsets}
    try:
        consumer.assign(sorted(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        ends = consumer.end_offsets(list(offsets))
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in offsets):
            assert time.monotonic() < deadline
            for tp, records in consumer.poll(timeout_ms=200).items():
                values[tp].extend(r.value.decode() for r in records)
    finally:
        consumer.close()
    return values


def index(value: str) -> int:
    return int(value.rsplit("/", 1)[1])


def copies_on(bootstrap: str, remote: str, expected: int) -> dict[tuple[int, int], int]:
    """(partition, offset on the target) -> index of the source record copied there."""
    return {(r.partition, r.offset): index(r.value.decode()) for r in read_all(bootstrap, remote, expected) if r.value}


def newest_copies(copies: Mapping[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """(partition, source record index) -> offset of its newest copy (the one current offset syncs point at)."""
    return {(p, i): offset for (p, offset), i in sorted(copies.items())}


def checkpoints_of(clients: KafkaClients, target: str, source: str, group: str) -> dict[TopicPartition, Checkpoint]:
    found = MirrorClient(clients, target).checkpoints(source, lambda g: g == group).get(group, {})
    return {tp: entry.checkpoint for tp, entry in found.items()}


def run_task(mirror_config: MirrorConfig, flow: str = "A->B") -> tuple[CheckpointTask, RunReport]:
    """A fresh task (a cold start) and its first run; the caller closes the task."""
    source, target = flow.split("->")
    task = CheckpointTask(mirror_config.flow(source, target), KafkaClients(mirror_config))
    return task, task.run()


def close(task: CheckpointTask) -> None:
    task.close()
    task.clients.close()


# --- one mirrored data set for scenarios 11-15 and 18 ----------------------------------------------------


@dataclass(frozen=True)
class Mirrored:
    prefix: str
    mirroring: MirrorConfig
    config: MirrorConfig
    clusters: Mapping[str, str]
    orders: str  # 2 partitions x PER_PARTITION records
    sparse: str  # 2 partitions, records only in partition 0
    empty: str  # 1 partition, no records
    restart: str  # 1 partition, 400 records, for the cold-start test
    copies: dict[tuple[int, int], int]  # what landed where on B: (partition, offset) -> record index of ``orders``
    positions: dict[tuple[int, int], int]  # where each record of ``orders`` landed on B (newest copy)

    def group(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def remote(self, topic: str) -> str:
        return f"A.{topic}"


@pytest.fixture(scope="module")
def mirrored(kafka_clusters: dict[str, str]) -> Iterator[Mirrored]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    quiet, checkpointing = configs(kafka_clusters, prefix, ["A->B"])
    topics = {name: f"{prefix}-{name}" for name in ("orders", "sparse", "empty", "restart")}
    warm_up(kafka_clusters)
    clients = KafkaClients(quiet)
    try:
        produce(clients, "A", topics["orders"], {0: PER_PARTITION, 1: PER_PARTITION})
        produce(clients, "A", topics["sparse"], {0: 10, 1: 0})
        produce(clients, "A", topics["empty"], {0: 0})
        produce(clients, "A", topics["restart"], {0: 400})
    finally:
        clients.close()
    mirror(quiet, {"A->B": topics.values()})
    copies = copies_on(kafka_clusters["B"], f"A.{topics['orders']}", 2 * PER_PARTITION)
    yield Mirrored(
        prefix, quiet, checkpointing, kafka_clusters, **topics, copies=copies, positions=newest_copies(copies)
    )


# --- scenario 11 -----------------------------------------------------------------------------------------


def test_offset_syncs_pair_the_same_record_on_both_sides(mirrored: Mirrored) -> None:
    clients = KafkaClients(mirrored.config)
    try:
        flow = mirrored.config.flow("A", "B")
        records = read_topic(clients, flow.offset_syncs_cluster(), flow.offset_syncs_topic()).records
    finally:
        clients.close()
    syncs = [OffsetSync.deserialize(r.key, r.value) for r in records if r.key and r.value]
    ours = [s for s in syncs if s.topic == mirrored.orders]
    assert {s.partition for s in ours} == {0, 1}
    for s in ours:
        assert mirrored.copies[(s.partition, s.downstream_offset)] == s.upstream_offset
    for p in (0, 1):
        upstream = sorted(s.upstream_offset for s in ours if s.partition == p)
        assert upstream[-1] == PER_PARTITION - 1  # the last record is synced: exact after the drain
        assert all(b - a <= LAG_MAX for a, b in pairwise(upstream))  # the dense rule


# --- scenarios 12 and 13 ---------------------------------------------------------------------------------


def test_checkpoints_are_within_offset_lag_max_and_translation_resumes_without_skipping(mirrored: Mirrored) -> None:
    group = mirrored.group("partial")
    a, b = mirrored.clusters["A"], mirrored.clusters["B"]
    consume(a, group, {TopicPartition(mirrored.orders, 0): 617, TopicPartition(mirrored.orders, 1): PER_PARTITION})
    task, _ = run_task(mirrored.config)
    try:
        found = checkpoints_of(task.clients, "B", "A", group)
        translated = MirrorClient(task.clients, "B").translate_offsets(group, "A")
    finally:
        close(task)
    remote = mirrored.remote(mirrored.orders)
    at_617 = mirrored.positions[(0, 617)]
    cp0, cp1 = found[TopicPartition(remote, 0)], found[TopicPartition(remote, 1)]
    assert cp0.upstream_offset == 617
    assert at_617 - LAG_MAX <= cp0.downstream_offset <= at_617
    assert cp1.downstream_offset == mirrored.positions[(1, PER_PARTITION - 1)] + 1  # drained: exact
    assert {tp: m.offset for tp, m in translated.items()} == {tp: c.downstream_offset for tp, c in found.items()}

    # scenario 13: a consumer on B resumes from the translation, skipping nothing
    values = read_from(b, {tp: m.offset for tp, m in translated.items()})
    resumed = [index(v) for v in values[TopicPartition(remote, 0)]]
    assert 617 - LAG_MAX <= resumed[0] <= 617
    assert resumed == list(range(resumed[0], PER_PARTITION))
    assert values[TopicPartition(remote, 1)] == []


# --- scenario 14 -----------------------------------------------------------------------------------------


def test_group_offset_sync_writes_idle_groups_only_and_only_forward(mirrored: Mirrored) -> None:
    idle, active, ahead = (mirrored.group(n) for n in ("sync-idle", "sync-active", "sync-ahead"))
    a, b = mirrored.clusters["A"], mirrored.clusters["B"]
    source_tp = TopicPartition(mirrored.orders, 0)
    remote_tp = TopicPartition(mirrored.remote(mirrored.orders), 0)
    for group in (idle, active, ahead):
        consume(a, group, {source_tp: 617})
    consume(b, ahead, {remote_tp: 900})  # already further on B: must not move back
    _, syncing = configs(mirrored.clusters, mirrored.prefix, ["A->B"], **{"sync.group.offsets.enabled": "true"})
    member = join(b, active, remote_tp.topic)
    try:
        task, report = run_task(syncing)
        try:
            on_b = {g: task.clients.committed_offsets("B", g) for g in (idle, active, ahead)}
        finally:
            close(task)
    finally:
        member.close(autocommit=False)
    assert mirrored.positions[(0, 617)] - LAG_MAX <= on_b[idle][remote_tp] <= mirrored.positions[(0, 617)]
    assert idle in report.groups_synced
    assert active in report.active_groups_left_alone and on_b[active] == {}
    assert on_b[ahead][remote_tp] == 900


# --- scenario 15 -----------------------------------------------------------------------------------------


def test_no_checkpoints_for_partitions_without_mirrored_records(mirrored: Mirrored) -> None:
    some, none = mirrored.group("sparse"), mirrored.group("nothing")
    a = mirrored.clusters["A"]
    consume(a, some, {TopicPartition(mirrored.sparse, 0): 5, TopicPartition(mirrored.sparse, 1): 0})
    consume(a, none, {TopicPartition(mirrored.empty, 0): 0})
    task, _ = run_task(mirrored.config)
    try:
        sparse = checkpoints_of(task.clients, "B", "A", some)
        empty = checkpoints_of(task.clients, "B", "A", none)
    finally:
        close(task)
    assert set(sparse) == {TopicPartition(mirrored.remote(mirrored.sparse), 0)}
    assert empty == {}


# --- scenario 18 (restart) and concurrent runs -----------------------------------------------------------


def test_checkpoints_never_go_backwards_across_cold_starts(mirrored: Mirrored) -> None:
    group = mirrored.group("restart")
    a = mirrored.clusters["A"]
    tp = TopicPartition(mirrored.restart, 0)
    remote_tp = TopicPartition(mirrored.remote(mirrored.restart), 0)
    consume(a, group, {tp: 300})
    first, report = run_task(mirrored.config)
    close(first)
    emitted = [c for c in report.emitted if c.group == group]
    assert [c.upstream_offset for c in emitted] == [300]

    again, report = run_task(mirrored.config)  # a cold start: state comes back from Kafka, nothing is re-emitted
    close(again)
    assert [c for c in report.emitted if c.group == group] == []

    # the remote topic was "recreated": a sync into a fresh log makes offset 300 translate lower than before
    clients = KafkaClients(mirrored.config)
    try:
        flow = mirrored.config.flow("A", "B")
        rewind = OffsetSync(mirrored.restart, 0, 300, 5)
        producer = clients.producer(flow.offset_syncs_cluster())
        producer.send(flow.offset_syncs_topic(), key=rewind.record_key(), value=rewind.record_value(), partition=0)
        producer.flush()
    finally:
        clients.close()
    lower, report = run_task(mirrored.config)
    try:
        assert lower.syncs.store.translate_downstream(mirrored.restart, 0, 300) == 5
        assert [c for c in report.emitted if c.group == group] == []
        assert checkpoints_of(lower.clients, "B", "A", group)[remote_tp] == emitted[0]
    finally:
        close(lower)


def test_a_run_fenced_by_a_newer_one_writes_nothing(mirrored: Mirrored) -> None:
    group = mirrored.group("fenced")
    a = mirrored.clusters["A"]
    tp = TopicPartition(mirrored.orders, 1)
    remote_tp = TopicPartition(mirrored.remote(mirrored.orders), 1)
    older = CheckpointTask(mirrored.config.flow("A", "B"), KafkaClients(mirrored.config))
    newer = CheckpointTask(mirrored.config.flow("A", "B"), KafkaClients(mirrored.config))
    try:
        consume(a, group, {tp: 100})
        assert older.run().emitted  # older holds the flow's transactional id
        consume(a, group, {tp: 200})
        assert newer.run().emitted  # a second container starts: it fences the older one
        consume(a, group, {tp: 300})
        report = older.run()
        assert report.fenced and not report.emitted
        assert checkpoints_of(newer.clients, "B", "A", group)[remote_tp].upstream_offset == 200
        assert newer.run().emitted[0].upstream_offset == 300
    finally:
        close(older)
        close(newer)


# --- scenario 16 -----------------------------------------------------------------------------------------


def test_failback_through_the_reverse_flow(kafka_clusters: dict[str, str], unique_prefix: str) -> None:
    topic = f"{unique_prefix}-fb"
    group = f"{unique_prefix}-app"
    a, b = kafka_clusters["A"], kafka_clusters["B"]
    flows = ["A->B", "B->A"]
    quiet, config = configs(kafka_clusters, unique_prefix, flows)
    both = {"A->B": [topic], "B->A": [topic]}
    warm_up(kafka_clusters)
    clients = KafkaClients(config)
    try:
        produce(clients, "A", topic, {0: 300})
        clients.ensure_topic("B", topic, 1, 1)
        with mirroring(quiet) as wait_mirrored:
            wait_mirrored(both)
            consume(a, group, {TopicPartition(topic, 0): 200})
            close(run_task(config, "A->B")[0])
            apply_failover(clients, plan_failover(config, clients, "A", "B", re.compile(re.escape(group))))

            # on B: the group finishes A's records and consumes part of what producers now write on B
            copy, local = TopicPartition(f"A.{topic}", 0), TopicPartition(topic, 0)
            moved_to = clients.committed_offsets("B", group)[copy]
            assert 200 - LAG_MAX <= moved_to <= 200
            produce(clients, "B", topic, {0: 100})
            consume(b, group, {copy: 300, local: 60})
            wait_mirrored(both)

        close(run_task(config, "B->A")[0])
        plan = plan_failover(config, clients, "B", "A", re.compile(re.escape(group)))
        assert plan.ok, plan.as_dict()
        apply_failover(clients, plan)
        back = clients.committed_offsets("A", group)
    finally:
        clients.close()
    origin, remote = TopicPartition(topic, 0), TopicPartition(f"B.{topic}", 0)
    assert back[origin] == 300  # A's own records: everything was read on B, exactly
    assert 60 - LAG_MAX <= back[remote] <= 60  # B's records, through the reverse flow's offset syncs
    values = read_from(a, back)
    assert values[origin] == []
    resumed = [index(v) for v in values[remote]]
    assert resumed == list(range(resumed[0], 100))


# --- the Lambda handler ----------------------------------------------------------------------------------


@dataclass
class ShortContext:
    """A Lambda context with little time left, so the handler makes about one pass."""

    function_name: str = "smm-checkpoints"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:smm-checkpoints"
    aws_request_id: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 5_500


def test_the_lambda_handler_runs_every_enabled_flow(
    mirrored: Mirrored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.checkpoints import handler

    group = mirrored.group("handler")
    consume(mirrored.clusters["A"], group, {TopicPartition(mirrored.orders, 0): 42})
    path = tmp_path / "mm2.properties"
    lines = [f"{alias}.bootstrap.servers = {bootstrap}" for alias, bootstrap in mirrored.clusters.items()]
    lines += [f"{k} = {v}" for k, v in {**SINGLE_BROKER, **settings(mirrored.prefix, ["A->B"])}.items()]
    lines += ["clusters = A, B, C", "A->B.enabled = true", f"A->B.topics = {mirrored.prefix}.*"]
    path.write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setenv("SMM_CONFIG_FILE", str(path))
    monkeypatch.delenv("SMM_FLOW", raising=False)
    try:
        result = handler.lambda_handler({}, ShortContext())
    finally:
        handler._cache.close()
    assert result["A->B"]["runs"] >= 1 and result["A->B"]["failed"] == 0
    clients = KafkaClients(mirrored.config)
    try:
        found = checkpoints_of(clients, "B", "A", group)
    finally:
        clients.close()
    assert found[TopicPartition(mirrored.remote(mirrored.orders), 0)].upstream_offset == 42
