"""MM2's rules for what config sync copies, as pure functions: topics, configs, ACLs and internal topics.

- Topics: ``MirrorSourceConnector.shouldReplicateTopic`` (the flow's ``TopicSelector``), minus heartbeats topics
  when ``heartbeats.replication.enabled`` is false.
- Configs: ``targetConfig`` with ``DefaultConfigPropertyFilter``: read-only, sensitive and static-broker
  values are never copied, nor names matching ``config.properties.exclude``; with ``use.defaults.from=target``
  (the default) a source value that is Kafka's built-in default is not copied but reset on the remote, so the
  target's own default applies.
- ACLs: ``syncTopicAcls``: literal topic ACLs only; ALLOW WRITE is never copied; ALLOW ALL becomes ALLOW READ;
  every other binding is copied with the remote topic's name. ACLs are added, never removed (as in MM2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from shared.kafka.admin_sync import STATIC_BROKER_SOURCE, TOPIC_SOURCE, ConfigEntry, TopicAcl
from shared.mm2.config import FlowConfig, FlowSettings
from shared.mm2.filters import NameFilter

COMPACT = {"cleanup.policy": "compact"}


def mirrored_topics(flow: FlowConfig, topics: Iterable[str]) -> list[str]:
    """The source topics flow ``flow`` mirrors, sorted: one ESM and one remote topic each."""
    selector = flow.topic_selector()
    return sorted(t for t in topics if selector.should_replicate(t))


@dataclass(frozen=True)
class ConfigPlan:
    """What the remote topic's configs should be: values to set and names to reset to the target's default."""

    set: Mapping[str, str] = field(default_factory=dict)
    reset: frozenset[str] = frozenset()

    def digest(self) -> str:
        """Stable fingerprint, recorded in the state topic so an unchanged source is not re-applied."""
        return _digest({"set": dict(sorted(self.set.items())), "reset": sorted(self.reset)})


def config_plan(source: Mapping[str, ConfigEntry], settings: FlowSettings) -> ConfigPlan:
    """The remote topic's configs for a source topic's described configs (MM2's ``targetConfig``)."""
    allowed = NameFilter.of((".*",), settings.config_properties_exclude)
    copy_defaults = settings.use_defaults_from == "source"
    values: dict[str, str] = {}
    reset: set[str] = set()
    for name, entry in source.items():
        if entry.read_only or entry.sensitive or entry.source == STATIC_BROKER_SOURCE or not allowed.matches(name):
            continue
        if entry.is_default and not copy_defaults:
            reset.add(name)
        elif entry.value is not None:
            values[name] = entry.value
    return ConfigPlan(values, frozenset(reset))


def config_changes(plan: ConfigPlan, target: Mapping[str, ConfigEntry]) -> dict[str, str | None]:
    """The incremental alteration that brings the remote topic to ``plan``: name -> value, or None to reset.

    Only differences are sent, so an up-to-date remote topic gets no write at all.
    """
    changes: dict[str, str | None] = {}
    for name, value in plan.set.items():
        current = target.get(name)
        if current is None or current.value != value:
            changes[name] = value
    for name in plan.reset:
        current = target.get(name)
        if current is not None and current.source == TOPIC_SOURCE:
            changes[name] = None
    return dict(sorted(changes.items()))


def remote_acl(acl: TopicAcl, remote_topic: str) -> TopicAcl | None:
    """The binding MM2 creates on the remote topic for a source binding, or None if it copies none."""
    if acl.pattern != "LITERAL":
        return None
    if acl.permission == "ALLOW" and acl.operation == "WRITE":
        return None
    operation = "READ" if acl.permission == "ALLOW" and acl.operation == "ALL" else acl.operation
    return replace(acl, topic=remote_topic, operation=operation)


def remote_acls(source_acls: Iterable[TopicAcl], remote_names: Mapping[str, str]) -> dict[str, list[TopicAcl]]:
    """Remote bindings per mirrored source topic (``remote_names``: source topic -> remote topic)."""
    result: dict[str, list[TopicAcl]] = {t: [] for t in remote_names}
    for acl in source_acls:
        remote = remote_names.get(acl.topic)
        copied = remote_acl(acl, remote) if remote is not None else None
        if copied is not None and copied not in result[acl.topic]:
            result[acl.topic].append(copied)
    return {t: sorted(acls) for t, acls in result.items()}


def acl_digest(acls: Iterable[TopicAcl]) -> str:
    return _digest(sorted([a.principal, a.host, a.operation, a.permission, a.pattern, a.topic] for a in acls))


@dataclass(frozen=True)
class InternalTopic:
    """An MM2 internal topic: one partition, compacted."""

    cluster: str
    name: str
    replication_factor: int


def heartbeats_topic(flow: FlowConfig) -> InternalTopic:
    """``heartbeats`` on the flow's target, where ``Heartbeat(source, target)`` records go."""
    return InternalTopic(
        flow.target, flow.policy().heartbeats_topic(), flow.settings.heartbeats_topic_replication_factor
    )


def state_topic(flow: FlowConfig) -> InternalTopic:
    """Where config sync records what it applied: ``mm2-config-sync.<source>.internal`` on the target.

    Named like MM2's own per-source Connect topics (``mm2-configs.<source>.internal``), always with dots, so
    every flow's default ``topics.exclude`` and the internal-topic rule keep it from being mirrored. It is
    internal state of the flow on the target, like the checkpoints topic, so it shares that replication factor.
    """
    name = f"mm2-config-sync.{flow.source}.internal"
    return InternalTopic(flow.target, name, flow.settings.checkpoints_topic_replication_factor)


def internal_topics(flow: FlowConfig) -> list[InternalTopic]:
    """MM2's internal topics of an enabled flow (MM2's names and replication factors) plus the state topic."""
    s, policy = flow.settings, flow.policy()
    topics = [state_topic(flow)]
    if s.emit_offset_syncs_enabled:
        topics.append(
            InternalTopic(
                flow.offset_syncs_cluster(), flow.offset_syncs_topic(), s.offset_syncs_topic_replication_factor
            )
        )
    if s.emit_checkpoints_enabled:
        topics.append(
            InternalTopic(flow.target, policy.checkpoints_topic(flow.source), s.checkpoints_topic_replication_factor)
        )
    if s.emit_heartbeats_enabled:
        topics.append(heartbeats_topic(flow))
    return topics


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
