"""Config sync without Kafka: MM2's config and ACL rules, internal topics, state records, ESM reconciliation,
and the scheduling helpers (the in-invocation loop, the local task registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from functions.config_sync import rules
from functions.config_sync.config_sync import ConfigSyncTask
from functions.config_sync.state import TopicState
from functions.heartbeats.heartbeats import emitting_flows
from functions.scheduled import budget_seconds, run_tasks
from shared.aws.esm import EsmMapping, EsmReconciler
from shared.kafka.admin_sync import ConfigEntry, TopicAcl
from shared.kafka.clients import KafkaClients
from shared.local import schedule
from shared.mm2 import config
from shared.mm2.config import FlowConfig, MirrorConfig


def make_config(**settings: str) -> MirrorConfig:
    props = {
        "clusters": "A, B, C",
        "A.bootstrap.servers": "127.0.0.1:9092",
        "B.bootstrap.servers": "127.0.0.1:9093",
        "C.bootstrap.servers": "127.0.0.1:9094",
        "A->B.enabled": "true",
        **settings,
    }
    return config.parse(props)


def flow(**settings: str) -> FlowConfig:
    return make_config(**settings).flow("A", "B")


def entry(name: str, value: str | None, source: str = "DYNAMIC_TOPIC_CONFIG", **flags: bool) -> ConfigEntry:
    return ConfigEntry(name, value, source, **flags)


SOURCE_CONFIGS = {
    e.name: e
    for e in [
        entry("retention.ms", "3600000"),
        entry("cleanup.policy", "compact"),
        entry("min.insync.replicas", "2"),  # excluded by default
        entry("message.timestamp.type", "LogAppendTime"),  # excluded by default
        entry("segment.bytes", "1073741824", "DEFAULT_CONFIG"),
        entry("max.message.bytes", "2000000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),  # not Kafka's built-in default
        entry("log.dirs.like", "/data", "STATIC_BROKER_CONFIG"),
        entry("read.only.one", "x", read_only=True),
        entry("secret.one", None, sensitive=True),
    ]
}


# --- topics ------------------------------------------------------------------------------------------------


def test_mirrored_topics_follow_the_filters_the_internal_rule_and_cycles() -> None:
    topics = ["orders", "payments", "B.orders", "C.orders", "__consumer_offsets", "mm2-config-sync.A.internal"]
    topics += ["heartbeats", "C.heartbeats", "B.heartbeats", "x.replica"]
    assert rules.mirrored_topics(flow(), topics) == ["C.heartbeats", "C.orders", "heartbeats", "orders", "payments"]
    assert rules.mirrored_topics(flow(**{"A->B.topics": "orders"}), topics) == ["C.heartbeats", "heartbeats", "orders"]


def test_heartbeats_are_not_mirrored_when_heartbeats_replication_is_off() -> None:
    off = flow(**{"heartbeats.replication.enabled": "false", "A->B.topics": "orders"})
    assert rules.mirrored_topics(off, ["orders", "heartbeats", "C.heartbeats"]) == ["orders"]
    # as in MM2, the switch only stops the exemption: a topic filter that matches them still mirrors them
    matching = flow(**{"heartbeats.replication.enabled": "false"})
    assert rules.mirrored_topics(matching, ["orders", "heartbeats"]) == ["heartbeats", "orders"]


# --- configs -----------------------------------------------------------------------------------------------


def test_config_plan_copies_only_what_mm2_copies() -> None:
    plan = rules.config_plan(SOURCE_CONFIGS, flow().settings)
    assert dict(plan.set) == {"retention.ms": "3600000", "cleanup.policy": "compact", "max.message.bytes": "2000000"}
    assert plan.reset == {"segment.bytes"}  # a built-in default on the source: the target's own default applies


def test_use_defaults_from_source_copies_default_values_too() -> None:
    plan = rules.config_plan(SOURCE_CONFIGS, flow(**{"A->B.use.defaults.from": "source"}).settings)
    assert plan.set["segment.bytes"] == "1073741824"
    assert plan.reset == frozenset()


def test_config_properties_exclude_patterns_match_whole_names() -> None:
    settings = flow(**{"config.properties.exclude": r"retention\..*, cleanup"}).settings
    plan = rules.config_plan(SOURCE_CONFIGS, settings)
    assert "retention.ms" not in plan.set
    assert plan.set["cleanup.policy"] == "compact"  # "cleanup" must match the whole name to exclude it
    assert plan.set["min.insync.replicas"] == "2"  # the default exclusions are replaced, not extended


def test_config_changes_send_only_differences() -> None:
    plan = rules.ConfigPlan({"retention.ms": "1000", "cleanup.policy": "compact"}, frozenset({"segment.ms", "x"}))
    target = {
        "retention.ms": entry("retention.ms", "1000"),
        "cleanup.policy": entry("cleanup.policy", "delete", "DEFAULT_CONFIG"),
        "segment.ms": entry("segment.ms", "60000"),  # set on the remote topic: reset it
        "x": entry("x", "1", "DEFAULT_CONFIG"),  # already the target's default: nothing to do
    }
    assert rules.config_changes(plan, target) == {"cleanup.policy": "compact", "segment.ms": None}
    assert rules.config_changes(plan, {**target, "cleanup.policy": entry("cleanup.policy", "compact")}) == {
        "segment.ms": None
    }


def test_config_changes_set_keys_the_target_does_not_describe() -> None:
    assert rules.config_changes(rules.ConfigPlan({"retention.ms": "5"}), {}) == {"retention.ms": "5"}


def test_config_digest_is_stable_and_sensitive() -> None:
    a = rules.ConfigPlan({"a": "1", "b": "2"}, frozenset({"c", "d"}))
    b = rules.ConfigPlan({"b": "2", "a": "1"}, frozenset({"d", "c"}))
    assert a.digest() == b.digest()
    assert a.digest() != rules.ConfigPlan({"a": "1", "b": "3"}, frozenset({"c", "d"})).digest()
    assert a.digest() != rules.ConfigPlan({"a": "1", "b": "2"}, frozenset({"c"})).digest()


# --- ACLs --------------------------------------------------------------------------------------------------


def acl(operation: str, permission: str = "ALLOW", principal: str = "User:alice", **kw: str) -> TopicAcl:
    return TopicAcl(
        kw.get("topic", "t"), principal, kw.get("host", "*"), operation, permission, kw.get("pattern", "LITERAL")
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (acl("READ"), acl("READ", topic="A.t")),
        (acl("DESCRIBE", host="10.0.0.1"), acl("DESCRIBE", host="10.0.0.1", topic="A.t")),
        (acl("ALL"), acl("READ", topic="A.t")),  # ALLOW ALL is downgraded to READ
        (acl("WRITE"), None),  # ALLOW WRITE is never copied
        (acl("WRITE", "DENY"), acl("WRITE", "DENY", topic="A.t")),  # denials are kept
        (acl("ALL", "DENY"), acl("ALL", "DENY", topic="A.t")),
        (acl("READ", pattern="PREFIXED"), None),  # MM2 syncs literal bindings only
    ],
)
def test_remote_acl_follows_mm2(source: TopicAcl, expected: TopicAcl | None) -> None:
    assert rules.remote_acl(source, "A.t") == expected


def test_remote_acls_cover_mirrored_topics_only_without_duplicates() -> None:
    source = [acl("ALL"), acl("READ"), acl("READ", topic="other"), acl("WRITE", principal="User:bob")]
    assert rules.remote_acls(source, {"t": "A.t", "quiet": "A.quiet"}) == {"t": [acl("READ", topic="A.t")], "quiet": []}


def test_acl_digest_ignores_order() -> None:
    one, two = acl("READ"), acl("DESCRIBE", principal="User:bob")
    assert rules.acl_digest([one, two]) == rules.acl_digest([two, one]) != rules.acl_digest([one])


# --- internal topics ---------------------------------------------------------------------------------------


def test_internal_topics_have_mm2_names_clusters_and_replication_factors() -> None:
    f = flow(**{"offset-syncs.topic.replication.factor": "5", "heartbeats.topic.replication.factor": "4"})
    assert rules.internal_topics(f) == [
        rules.InternalTopic("B", "mm2-config-sync.A.internal", 3),
        rules.InternalTopic("A", "mm2-offset-syncs.B.internal", 5),
        rules.InternalTopic("B", "A.checkpoints.internal", 3),
        rules.InternalTopic("B", "heartbeats", 4),
    ]


def test_internal_topics_follow_the_separator_location_and_switches() -> None:
    f = flow(
        **{
            "replication.policy.separator": "_",
            "offset-syncs.topic.location": "target",
            "emit.heartbeats.enabled": "false",
            "emit.checkpoints.enabled": "false",
        }
    )
    names = [(t.cluster, t.name) for t in rules.internal_topics(f)]
    assert names == [("B", "mm2-config-sync.A.internal"), ("B", "mm2-offset-syncs_A_internal")]


def test_state_topic_is_never_mirrored() -> None:
    state = rules.state_topic(flow()).name
    reverse = make_config(**{"B->A.enabled": "true"}).flow("B", "A")
    assert rules.mirrored_topics(reverse, [state]) == []
    assert rules.mirrored_topics(flow(**{"replication.policy.separator": "_"}), [state]) == []


# --- state records -----------------------------------------------------------------------------------------


def test_state_record_round_trips() -> None:
    state = TopicState("orders", "A.orders", 3, configs="abc", acls=None, esm="enabled")
    assert state.key() == b"topic:orders"
    assert TopicState.parse(state.key(), state.value()) == state


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"orders", b'{"v":1,"remote":"A.orders","partitions":3}', "does not start with"),
        (b"topic:orders", b'{"v":2,"remote":"A.orders","partitions":3}', "version-1"),
        (b"topic:orders", b'{"v":1,"partitions":3}', "lacks"),
        (b"topic:orders", b'{"v":1,"remote":"A.orders","partitions":"many"}', "mistypes"),
    ],
)
def test_bad_state_records_say_why(key: bytes, value: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        TopicState.parse(key, value)


# --- ESM reconciliation ------------------------------------------------------------------------------------


class MemoryReconciler(EsmReconciler):
    """ESMs in a dict, recording each call."""

    def __init__(self, mappings: dict[str, EsmMapping] | None = None) -> None:
        self.store = dict(mappings or {})
        self.calls: list[tuple[str, str]] = []

    def mappings(self) -> dict[str, EsmMapping]:
        return dict(self.store)

    def create(self, topic: str) -> None:
        self.calls.append(("create", topic))
        self.store[topic] = EsmMapping(topic, enabled=True)

    def set_enabled(self, mapping: EsmMapping, enabled: bool) -> None:
        self.calls.append(("enable" if enabled else "disable", mapping.topic))
        self.store[mapping.topic] = EsmMapping(mapping.topic, enabled=enabled)

    def delete(self, mapping: EsmMapping) -> None:
        self.calls.append(("delete", mapping.topic))
        del self.store[mapping.topic]


def test_reconcile_creates_enables_disables_and_deletes() -> None:
    esms = MemoryReconciler(
        {
            "kept": EsmMapping("kept", enabled=True),
            "paused": EsmMapping("paused", enabled=False),
            "unmatched": EsmMapping("unmatched", enabled=True),
            "gone": EsmMapping("gone", enabled=True),
            "moving": EsmMapping("moving", enabled=True, busy=True, state="Updating"),
        }
    )
    changes = esms.reconcile(["kept", "paused", "new", "moving"], ["kept", "paused", "new", "unmatched", "moving"])
    assert sorted(esms.calls) == [("create", "new"), ("delete", "gone"), ("disable", "unmatched"), ("enable", "paused")]
    assert changes.outcome == {
        "kept": "enabled",
        "paused": "enabled",
        "new": "enabled",
        "unmatched": "disabled",
        "gone": "deleted",
        "moving": "pending:Updating",
    }
    assert changes.as_dict() == {
        "created": ["new"],
        "enabled": ["paused"],
        "disabled": ["unmatched"],
        "deleted": ["gone"],
    }

    esms.calls.clear()
    again = esms.reconcile(["kept", "paused", "new"], ["kept", "paused", "new", "unmatched"])
    assert esms.calls == [] and not again


# --- the task's schedule -----------------------------------------------------------------------------------


def test_interval_is_the_shortest_enabled_job() -> None:
    cfg = make_config(
        **{
            "refresh.topics.interval.seconds": "30",
            "sync.topic.configs.interval.seconds": "20",
            "sync.topic.acls.interval.seconds": "10",
        }
    )
    f = cfg.flow("A", "B")
    assert ConfigSyncTask(f, KafkaClients(cfg)).interval_seconds() == 10
    no_acls = make_config(**{"sync.topic.acls.enabled": "false", "sync.topic.configs.interval.seconds": "20"})
    assert ConfigSyncTask(no_acls.flow("A", "B"), KafkaClients(no_acls)).interval_seconds() == 20
    assert ConfigSyncTask(f, KafkaClients(cfg), refresh_seconds=0.5).interval_seconds() == 0.5


def test_heartbeats_are_emitted_for_every_pair_enabled_or_not() -> None:
    cfg = make_config(**{"C->A.emit.heartbeats.enabled": "false"})
    names = [f.name for f in emitting_flows(cfg)]
    assert names == ["A->B", "A->C", "B->A", "B->C", "C->B"]


# --- the in-invocation loop (Lambda) -----------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class CountingTask:
    interval: float
    clock: FakeClock
    name: str = "counting"
    fail: bool = False
    runs: int = 0

    def interval_seconds(self) -> float:
        return self.interval

    def run_once(self) -> dict[str, Any]:
        self.runs += 1
        self.clock.now += 0.01  # work takes time
        if self.fail:
            raise RuntimeError("broker unreachable")
        return {"runs": self.runs}


def test_run_tasks_loops_each_task_at_its_interval_within_the_budget() -> None:
    clock = FakeClock()
    fast, slow, broken = CountingTask(1.0, clock), CountingTask(20.0, clock), CountingTask(5.0, clock, fail=True)
    reports = run_tasks({"fast": fast, "slow": slow, "broken": broken}, 55.0, clock, clock.sleep)
    # the broken task is retried after 1, 2, 4 s, then every 5 s (its interval caps the backoff): 0, 1, 3, 7, 12, ...
    assert fast.runs == 55 and slow.runs == 3 and broken.runs == 13
    assert reports["broken"].failures == 13 and reports["broken"].errors[0] == "RuntimeError: broker unreachable"
    assert reports["fast"].failures == 0 and reports["fast"].last == {"runs": 55}
    assert clock.now < 100.0 + 55.0 + 1.0


def test_run_tasks_with_no_budget_runs_one_pass() -> None:
    clock = FakeClock()
    task = CountingTask(1.0, clock)
    assert run_tasks({"t": task}, 0, clock, clock.sleep)["t"].runs == 1


def test_budget_leaves_a_safety_margin_before_the_timeout() -> None:
    @dataclass
    class Context:
        remaining_ms: int

        def get_remaining_time_in_millis(self) -> int:
            return self.remaining_ms

    assert budget_seconds(Context(900_000)) == 55.0
    assert budget_seconds(Context(20_000)) == 15.0
    assert budget_seconds(Context(1_000)) == 0.0


# --- the local registry ------------------------------------------------------------------------------------


def test_local_registry_gives_each_flow_its_roles() -> None:
    cfg = make_config()
    runtime = schedule.LocalRuntime(reconciler_for=lambda f: None, refresh_seconds=1.0)
    clients = KafkaClients(cfg)
    roles = {
        (f.name, role): factory(f, clients, runtime) is not None
        for f in cfg.flows
        for role, factory in schedule.FACTORIES
        if role != "checkpoints"
    }
    assert roles[("A->B", "config-sync")] and roles[("A->B", "heartbeats")]
    assert not roles[("B->A", "config-sync")] and roles[("B->A", "heartbeats")]  # disabled flows still beat


def test_optional_task_for_skips_missing_modules() -> None:
    assert schedule.optional_task_for(["functions.no_such_role", "functions.no_such_role.core"]) is None
    assert schedule.optional_task_for(["functions.heartbeats.heartbeats"]) is not None


def test_describe_summarises_a_run() -> None:
    summary = {"created": ["A.t"], "grown": {}, "esm": {"created": ["t"]}, "changed": True}
    assert schedule.describe(summary) == "created ['A.t']; esm {'created': ['t']}"
