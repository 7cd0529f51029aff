"""Admin calls the config-sync function needs beyond ``KafkaClients``: topic configs, ACLs, partitions in bulk.

Each call batches every topic into one request (a flow may mirror hundreds of topics) and turns per-topic
errors into one ``ClusterError`` that names the cluster, each topic and the broker's reason, so one bad topic
does not hide the others. The clients themselves come from ``KafkaClients`` (created once per container).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import kafka.errors as errors
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from shared.kafka.clients import ClusterError, KafkaClients

DEFAULT_SOURCE = "DEFAULT_CONFIG"
STATIC_BROKER_SOURCE = "STATIC_BROKER_CONFIG"
TOPIC_SOURCE = "DYNAMIC_TOPIC_CONFIG"


@dataclass(frozen=True)
class ConfigEntry:
    """One topic config as the broker describes it; ``source`` is Kafka's ``ConfigSource`` name."""

    name: str
    value: str | None
    source: str
    read_only: bool = False
    sensitive: bool = False

    @property
    def is_default(self) -> bool:
        """Kafka's ``ConfigEntry.isDefault()``: the value is the built-in default, not set anywhere."""
        return self.source == DEFAULT_SOURCE


@dataclass(frozen=True)
class NewTopic:
    """A topic to create: partitions, replication factor (-1: the broker's default) and configs."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True, order=True)
class TopicAcl:
    """A topic ACL binding (Kafka's ``AclBinding`` restricted to topics), names as Kafka spells them."""

    topic: str
    principal: str
    host: str
    operation: str  # ALL, READ, WRITE, DESCRIBE, ... (ACLOperation names)
    permission: str  # ALLOW or DENY
    pattern: str = "LITERAL"  # LITERAL or PREFIXED


def partition_counts(clients: KafkaClients, alias: str, topics: Collection[str] | None = None) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists on ``alias`` (every topic when None), one request."""
    if topics is not None and not topics:
        return {}
    described = clients.admin(alias).describe_topics(None if topics is None else sorted(topics))
    return {t["name"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def describe_topic_configs(
    clients: KafkaClients, alias: str, topics: Collection[str]
) -> dict[str, dict[str, ConfigEntry]]:
    """Every config of each topic with where its value comes from; topics that do not exist are left out."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in sorted(topics)]
    described = clients.admin(alias).describe_configs(resources, config_filter="all").get("topic", {})
    result: dict[str, dict[str, ConfigEntry]] = {}
    for topic, entries in described.items():
        if not entries:
            continue  # Kafka answers an unknown topic with an error and no entries
        result[topic] = {
            name: ConfigEntry(
                name=name,
                value=None if e.get("value") is None else str(e["value"]),
                source=str(e.get("config_source", "UNKNOWN")),
                read_only=bool(e.get("read_only", False)),
                sensitive=bool(e.get("is_sensitive", False)),
            )
            for name, e in entries.items()
        }
    return result


def create_topics(clients: KafkaClients, alias: str, topics: Mapping[str, NewTopic]) -> list[str]:
    """Create ``topics``; returns those this call created (one created concurrently is not an error)."""
    if not topics:
        return []
    request = {
        name: {"num_partitions": t.partitions, "replication_factor": t.replication_factor, "configs": dict(t.configs)}
        for name, t in topics.items()
    }
    admin = clients.admin(alias)
    answer = admin.create_topics(request, raise_errors=False)
    created: list[str] = []
    problems: list[str] = []
    for result in answer.get("topics", []):
        name, error = result["name"], errors.for_code(result.get("error_code", 0))
        if error is errors.NoError:
            created.append(name)
        elif error is errors.InvalidReplicationFactorError:
            problems.append(
                f"{name}: replication factor {topics[name].replication_factor} is more than the cluster's brokers "
                f"({result.get('error_message')}); lower replication.factor (remote topics) or the internal "
                f"topic's <name>.topic.replication.factor, or use -1 for the broker default"
            )
        elif error is not errors.TopicAlreadyExistsError:
            problems.append(f"{name}: {error.__name__}: {result.get('error_message')}")
    if created:
        admin.wait_for_topics(created)
    _raise(problems, f"cannot create topics on cluster {alias!r}")
    return sorted(created)


def grow_partitions(clients: KafkaClients, alias: str, counts: Mapping[str, int]) -> None:
    """Raise each topic's partition count to ``counts[topic]``; a topic already that large is left alone."""
    if not counts:
        return
    answer = clients.admin(alias).create_partitions(dict(counts), raise_errors=False)
    problems = []
    for result in answer.results:
        error = errors.for_code(result.error_code)
        if error not in (errors.NoError, errors.InvalidPartitionsError):  # the latter: grown concurrently
            problems.append(f"{result.name}: {error.__name__}: {result.error_message}")
    _raise(problems, f"cannot add partitions on cluster {alias!r}")


def alter_topic_configs(clients: KafkaClients, alias: str, changes: Mapping[str, Mapping[str, str | None]]) -> None:
    """Incrementally set (value) or reset to the default (None) configs of each topic: other keys stay as they are."""
    resources = [
        ConfigResource(
            ConfigResourceType.TOPIC,
            topic,
            {k: (AlterConfigOp.DELETE, None) if v is None else (AlterConfigOp.SET, v) for k, v in ops.items()},
        )
        for topic, ops in sorted(changes.items())
        if ops
    ]
    if not resources:
        return
    answer = clients.admin(alias).alter_configs(resources, raise_on_unknown=False, incremental=True)
    problems = [f"{topic}: {result}" for topic, result in answer.get("topic", {}).items() if result != "OK"]
    _raise(problems, f"cannot alter topic configs on cluster {alias!r}")


def describe_topic_acls(clients: KafkaClients, alias: str) -> list[TopicAcl] | None:
    """Every topic ACL on ``alias``; None when the cluster has no authorizer (so there is nothing to sync)."""
    any_topic = ResourcePatternFilter(ResourceType.TOPIC, None, ACLResourcePatternType.ANY)
    try:
        acls, _ = clients.admin(alias).describe_acls(
            ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, any_topic)
        )
    except errors.SecurityDisabledError:
        return None
    return sorted(_topic_acl(acl) for acl in acls)


def create_topic_acls(clients: KafkaClients, alias: str, acls: Collection[TopicAcl]) -> None:
    """Create ``acls`` (creating an ACL that exists already is a no-op in Kafka)."""
    if not acls:
        return
    requested = sorted(acls)
    try:
        answer = clients.admin(alias).create_acls([_kafka_acl(a) for a in requested])
    except errors.SecurityDisabledError:
        raise ClusterError(
            f"cannot create topic ACLs on cluster {alias!r}: it has no authorizer; enable one there "
            "(authorizer.class.name) or set sync.topic.acls.enabled = false"
        ) from None
    problems = [f"{error.__name__}" for error in answer.get("failed", [])]
    _raise(problems, f"cannot create {len(problems)} of {len(requested)} topic ACLs on cluster {alias!r}")


def _topic_acl(acl: Any) -> TopicAcl:
    pattern = acl.resource_pattern
    return TopicAcl(
        topic=pattern.resource_name,
        principal=acl.principal,
        host=acl.host,
        operation=acl.operation.name,
        permission=acl.permission_type.name,
        pattern=pattern.pattern_type.name,
    )


def _kafka_acl(acl: TopicAcl) -> Any:
    pattern = ResourcePattern(ResourceType.TOPIC, acl.topic, ACLResourcePatternType[acl.pattern])
    return ACL(acl.principal, acl.host, ACLOperation[acl.operation], ACLPermissionType[acl.permission], pattern)


def _raise(problems: list[str], what: str) -> None:
    if problems:
        raise ClusterError(f"{what}:\n  - " + "\n  - ".join(problems))
