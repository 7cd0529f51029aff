"""MM2's dedicated-mode ``mm2.properties``, read the way Apache MirrorMaker 2 (4.3) reads it.

``load`` reads the file with ``java.util.Properties`` semantics (``properties``), resolves config providers
(``providers``), then follows ``MirrorMakerConfig``: which cluster pairs exist (``clusterPairs``), what each
flow's connectors are configured with (``connectorBaseConfig``: a top-level setting unless ``A->B.<setting>``
overrides it), and what each cluster's clients get (``clusterProps``: the cluster's connection settings, from
``A.<key>`` or the top level, under the role's own ``A.producer.*``, ``A.consumer.*``, ``A.admin.*``). Values are
read as ``ConfigDef`` reads them (``configdef``). ``docs/mm2-config.md`` has the rules with their sources.

What is not a setting MM2 reads, or reads but this product does not act on, is accepted with one warning each
(``Notice.strict``: ``smm validate --strict`` refuses them). Where MM2's reading surprises people, the product does
what MM2 does and a warning says what MM2 makes of the line. A value MM2 would refuse is an error naming the key,
the value and what is allowed, and so is a setting this product cannot honour without changing what is mirrored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.mm2 import client_settings, properties, providers
from shared.mm2.client_settings import CONNECTION_KEYS, ROLES, ClientSettings
from shared.mm2.configdef import (
    InvalidValue,
    java_parse_boolean,
    non_empty_unique,
    parse_boolean,
    parse_list,
    parse_number,
    trim,
)
from shared.mm2.filters import (
    DEFAULT_GROUPS,
    DEFAULT_GROUPS_EXCLUDE,
    DEFAULT_TOPICS,
    DEFAULT_TOPICS_EXCLUDE,
    JavaRegexError,
    NameFilter,
    TopicSelector,
    java_regex,
)
from shared.mm2.policy import POLICY_CLASSES, ReplicationPolicy

FLOW_ARROW = "->"
EXACTLY_ONCE_KEY = "exactly.once.source.support"
EXACTLY_ONCE_SUPPORT = ("disabled", "preparing", "enabled")
_ALIAS = re.compile(r"[A-Za-z0-9_\-]+")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")
_ALL_CLIENT_PREFIXES = ("producer.", "consumer.", "admin.")


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists each one on its own."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class Notice:
    """A warning about one key. ``strict``: a key accepted and left unused, which ``--strict`` refuses."""

    key: str
    message: str
    strict: bool = False

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class _Invalid(ValueError):
    """A value that does not fit a key; carries what is allowed."""


def _bool(value: str) -> bool:
    try:
        return parse_boolean(value)
    except InvalidValue:
        raise _Invalid("allowed: true or false") from None


def _number(low: int, high: int | None = None, kind: str = "INT") -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = parse_number(value, kind)
        except InvalidValue:
            raise _Invalid(f"allowed: a whole number >= {low}") from None
        if number < low or (high is not None and number > high):
            raise _Invalid(f"allowed: a whole number from {low}" + (f" to {high}" if high else " up"))
        return number

    return convert


def _interval(value: str) -> int:
    """A ``*.interval.seconds``: MM2 disables the task for a negative value; 0 makes its scheduler fail."""
    try:
        number = parse_number(value, "LONG")
    except InvalidValue:
        raise _Invalid("allowed: a whole number of seconds >= 1 (or negative: off)") from None
    if number == 0:
        raise _Invalid("allowed: a whole number of seconds >= 1 (or negative: off); MM2 cannot schedule 0")
    return number


def _replication_factor(value: str) -> int:
    number = _number(-1, kind="SHORT")(value)
    if number == 0:
        raise _Invalid("allowed: -1 (the broker's default) or a whole number >= 1")
    return number


def _regex_list(value: str) -> tuple[str, ...]:
    """A ``ConfigDef`` LIST of Java regexes (``DefaultTopicFilter``): each item must compile on its own."""
    items = parse_list(value)
    if any(not item for item in items):
        raise _Invalid("an item is empty (a stray comma?); allowed: comma-separated regular expressions")
    if len(set(items)) != len(items):
        duplicated = sorted({i for i in items if items.count(i) > 1})
        raise _Invalid(f"{', '.join(duplicated)} listed twice (MM2's validation refuses duplicated values)")
    for pattern in items:
        try:
            java_regex(pattern)
        except JavaRegexError as exc:
            hint = " (MM2 splits the list at every comma, so a regex cannot contain one)" if "{" in pattern else ""
            raise _Invalid(f"pattern {pattern!r} is not a valid regular expression ({exc}){hint}") from None
    return tuple(items)


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        v = trim(value)
        if v not in allowed:
            raise _Invalid(f"allowed: {', '.join(allowed)}")
        return v

    return convert


def _policy_class(value: str) -> str:
    v = trim(value)
    if v not in POLICY_CLASSES:
        raise _Invalid(
            f"allowed: {', '.join(POLICY_CLASSES)} (MM2 needs the full class name; "
            "a custom Java policy cannot run here)"
        )
    return v


def _separator(value: str) -> str:
    """``DefaultReplicationPolicy`` takes the raw string: not trimmed."""
    if not value:
        raise _Invalid(
            "allowed: a non-empty string such as . or _ (an empty separator, with an empty source.cluster.alias, "
            "was the old way to keep topic names; use IdentityReplicationPolicy)"
        )
    return value


def _text(value: str) -> str:
    return trim(value)


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._\-]{1,249}")


def _topic_name(value: str) -> str:
    """A name Kafka accepts for a topic (``Topic.validate``)."""
    v = trim(value)
    if not _TOPIC_NAME.fullmatch(v) or v in (".", ".."):
        raise _Invalid("allowed: a topic name of 1 to 249 letters, digits, '.', '_' and '-' (not '.' or '..')")
    return v


def _setting(key: str, convert: Callable[[str], Any], default: Any) -> Any:
    return field(default=default, metadata={"key": key, "convert": convert})


@dataclass(frozen=True)
class FlowSettings:
    """The connector settings of one flow, MM2's defaults unless the file overrides them."""

    topics: tuple[str, ...] = _setting("topics", _regex_list, DEFAULT_TOPICS)
    topics_exclude: tuple[str, ...] = _setting("topics.exclude", _regex_list, DEFAULT_TOPICS_EXCLUDE)
    groups: tuple[str, ...] = _setting("groups", _regex_list, DEFAULT_GROUPS)
    groups_exclude: tuple[str, ...] = _setting("groups.exclude", _regex_list, DEFAULT_GROUPS_EXCLUDE)
    config_properties_exclude: tuple[str, ...] = _setting(
        "config.properties.exclude",
        _regex_list,
        (
            r"follower\.replication\.throttled\.replicas",
            r"leader\.replication\.throttled\.replicas",
            r"message\.timestamp\.difference\.max\.ms",
            r"log\.message\.timestamp\.before\.max\.ms",
            r"log\.message\.timestamp\.after\.max\.ms",
            r"message\.timestamp\.type",
            r"unclean\.leader\.election\.enable",
            r"min\.insync\.replicas",
        ),
    )
    replication_policy_class: str = _setting(
        "replication.policy.class", _policy_class, "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
    )
    replication_policy_separator: str = _setting("replication.policy.separator", _separator, ".")
    # Read with Boolean.parseBoolean by the policy, and only when a separator is set (``_flow_settings``).
    internal_topic_separator_enabled: bool = _setting(
        "replication.policy.internal.topic.separator.enabled", java_parse_boolean, True
    )
    replication_factor: int = _setting("replication.factor", _replication_factor, 2)
    heartbeats_topic_replication_factor: int = _setting("heartbeats.topic.replication.factor", _replication_factor, 3)
    checkpoints_topic_replication_factor: int = _setting("checkpoints.topic.replication.factor", _replication_factor, 3)
    offset_syncs_topic_replication_factor: int = _setting(
        "offset-syncs.topic.replication.factor", _replication_factor, 3
    )
    offset_syncs_topic_location: str = _setting("offset-syncs.topic.location", _choice("source", "target"), "source")
    offset_lag_max: int = _setting("offset.lag.max", _number(0, kind="LONG"), 100)
    emit_offset_syncs_enabled: bool = _setting("emit.offset-syncs.enabled", _bool, True)
    emit_heartbeats_enabled: bool = _setting("emit.heartbeats.enabled", _bool, True)
    emit_heartbeats_interval_seconds: int = _setting("emit.heartbeats.interval.seconds", _interval, 1)
    heartbeats_replication_enabled: bool = _setting("heartbeats.replication.enabled", _bool, True)
    emit_checkpoints_enabled: bool = _setting("emit.checkpoints.enabled", _bool, True)
    emit_checkpoints_interval_seconds: int = _setting("emit.checkpoints.interval.seconds", _interval, 60)
    sync_group_offsets_enabled: bool = _setting("sync.group.offsets.enabled", _bool, False)
    sync_group_offsets_interval_seconds: int = _setting("sync.group.offsets.interval.seconds", _interval, 60)
    refresh_topics_enabled: bool = _setting("refresh.topics.enabled", _bool, True)
    refresh_topics_interval_seconds: int = _setting("refresh.topics.interval.seconds", _interval, 600)
    refresh_groups_enabled: bool = _setting("refresh.groups.enabled", _bool, True)
    refresh_groups_interval_seconds: int = _setting("refresh.groups.interval.seconds", _interval, 600)
    sync_topic_configs_enabled: bool = _setting("sync.topic.configs.enabled", _bool, True)
    sync_topic_configs_interval_seconds: int = _setting("sync.topic.configs.interval.seconds", _interval, 600)
    sync_topic_acls_enabled: bool = _setting("sync.topic.acls.enabled", _bool, True)
    sync_topic_acls_interval_seconds: int = _setting("sync.topic.acls.interval.seconds", _interval, 600)
    # Read by DefaultConfigPropertyFilter from the connector config, which only a flow key reaches.
    use_defaults_from: str = _setting("use.defaults.from", _choice("source", "target"), "target")
    # Serverless MirrorMaker's own keys (``smm.*``): what MM2 leaves to Connect or does not have.
    batch_size: int = _setting("smm.batch.size", _number(1, 10000), 100)
    batching_window_ms: int = _setting("smm.batching.window.ms", _number(0, 300000), 500)
    starting_position: str = _setting("smm.starting.position", _choice("TRIM_HORIZON", "LATEST"), "TRIM_HORIZON")
    oversized_record_action: str = _setting("smm.oversized.record.action", _choice("fail", "dead-letter"), "fail")
    dead_letter_topic: str = _setting("smm.dead.letter.topic", _topic_name, "smm-dead-letter.internal")
    producer_backend: str = _setting(
        "smm.producer.backend", _choice("kafka-python", "confluent-kafka"), "confluent-kafka"
    )


FLOW_KEYS: dict[str, dataclasses.Field[Any]] = {f.metadata["key"]: f for f in dataclasses.fields(FlowSettings)}
SMM_KEYS = frozenset(k for k in FLOW_KEYS if k.startswith("smm."))
# Keys of FLOW_KEYS that MirrorMakerConfig.connectorBaseConfig drops at the top level (not in allConfigNames).
FLOW_ONLY_KEYS = frozenset({"use.defaults.from"})

# MirrorSourceConfig/MirrorCheckpointConfig/MirrorHeartbeatConfig settings of MM2 4.3.1 that this product does not
# act on, with what is done instead (``allConfigNames`` minus FLOW_KEYS and the connection keys).
UNUSED_CONNECTOR_KEYS: dict[str, str] = {
    "tasks.max": "parallelism here is one Lambda poller per partition",
    "tasks.max.enforce": "parallelism here is one Lambda poller per partition",
    "name": "names MM2's Connect connectors (and their client ids); there are none here",
    "connector.class": "names MM2's Connect connectors; there are none here",
    "connector.plugin.version": "names MM2's Connect connectors; there are none here",
    "admin.timeout.ms": "the clients' request.timeout.ms applies",
    "consumer.poll.timeout.ms": "the event-source mapping's batching window applies (smm.batching.window.ms)",
    "errors.tolerance": "a record that cannot be mirrored fails its batch (smm.oversized.record.action)",
    "errors.log.enable": "failures are logged by the functions",
    "errors.log.include.messages": "failures are logged by the functions, without record contents",
    "errors.retry.timeout": "a failed batch is retried by the event-source mapping",
    "errors.retry.delay.max.ms": "a failed batch is retried by the event-source mapping",
    "metric.reporters": "metrics go to CloudWatch (EMF) or smm run's progress lines",
    "metric.names.formats": "metrics go to CloudWatch (EMF) or smm run's progress lines",
    "config.action.reload": "a configuration change takes effect at the next invocation",
    "predicates": "transforms are not supported",
    "key.converter.plugin.version": "records are copied as bytes",
    "value.converter.plugin.version": "records are copied as bytes",
    "header.converter.plugin.version": "records are copied as bytes",
}
# Connector keys MM2 takes from the flow itself; a file may repeat the flow's own value, nothing else.
ALIAS_KEYS = ("source.cluster.alias", "target.cluster.alias")
# Connector keys whose non-default values change what is mirrored; only MM2's defaults can be honoured here.
DEFAULT_ONLY_CONNECTOR_KEYS: dict[str, tuple[str, ...]] = {
    "topic.filter.class": ("org.apache.kafka.connect.mirror.DefaultTopicFilter",),
    "group.filter.class": ("org.apache.kafka.connect.mirror.DefaultGroupFilter",),
    "config.property.filter.class": ("org.apache.kafka.connect.mirror.DefaultConfigPropertyFilter",),
    "forwarding.admin.class": ("org.apache.kafka.clients.admin.ForwardingAdmin",),
    "key.converter": ("org.apache.kafka.connect.converters.ByteArrayConverter",),
    "value.converter": ("org.apache.kafka.connect.converters.ByteArrayConverter",),
    "header.converter": ("org.apache.kafka.connect.converters.ByteArrayConverter",),
    "transforms": ("",),
}
# Connect worker keys (workerConfig's prefixes and DistributedConfig's own): accepted and unused.
_WORKER_PREFIXES = (
    "offset.storage",
    "config.storage",
    "status.storage",
    "key.converter",
    "value.converter",
    "header.converter",
    "task",
    "worker",
)
# The worker's offsets topic, where exactly-once mode keeps MM2's source offsets: used, not ignored.
OFFSET_STORAGE_KEYS = ("offset.storage.topic", "offset.storage.partitions", "offset.storage.replication.factor")
_WORKER_KEYS = frozenset(
    {
        "dedicated.mode.enable.internal.rest",
        "listeners",
        "rest.advertised.host.name",
        "rest.advertised.listener",
        "rest.advertised.port",
        "plugin.path",
        "plugin.discovery",
        "group.id",
        "scheduled.rebalance.max.delay.ms",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "offset.flush.interval.ms",
        "offset.flush.timeout.ms",
        "connector.client.config.override.policy",
        "replication.policy.internal.topic.separator.enabled.default",
        "internal.key.converter",
        "internal.value.converter",
    }
)
# Connector keys a flow may set that decide per-flow client settings; this product keeps one client per cluster.
_FLOW_CLIENT_PREFIXES = (
    "producer.",
    "consumer.",
    "admin.",
    "source.",
    "target.",
)
_EXACTLY_ONCE_CONNECTOR_KEYS = ("exactly.once.support", "transaction.boundary", "transaction.boundary.interval.ms")


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster of ``clusters``: where it is and what its clients get (Java names, validated).

    ``client`` holds the connection settings every client of the cluster inherits (``A.<key>`` over the
    top-level ``<key>``); ``roles`` the keys of one role (``A.producer.linger.ms``), which win over them.
    """

    alias: str
    bootstrap_servers: tuple[str, ...]
    client: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    exactly_once_source_support: str = "disabled"

    @property
    def exactly_once(self) -> bool:
        """Flows into this cluster write transactions (MM2's ``<alias>.exactly.once.source.support``)."""
        return self.exactly_once_source_support == "enabled"

    def role_settings(self, role: str) -> dict[str, str]:
        """The Java settings MM2 gives a ``role`` client of this cluster (``clusterProps``'s ``<role>.*``)."""
        return {**self.client, **self.roles.get(role, {})}

    def settings(self, role: str) -> ClientSettings:
        return client_settings.read(self.role_settings(role), role)

    def is_loopback(self) -> bool:
        return all(_host(s) in ("localhost", "127.0.0.1", "[::1]") for s in self.bootstrap_servers)


def _host(server: str) -> str:
    return server.rsplit(":", 1)[0]


@dataclass(frozen=True)
class SourceOffsetsTopic:
    """MM2's worker offsets topic of a flow (``offset.storage.*``; Connect's defaults: 25 partitions, factor 3)."""

    name: str
    partitions: int = 25
    replication_factor: int = 3


@dataclass(frozen=True)
class FlowConfig:
    """One replication flow ``source->target`` with its effective settings.

    ``enabled``: MM2 would replicate it (its pair has a herder and its source connector is enabled).
    ``in_cluster_pairs``: MM2 runs connectors for the pair at all (``clusterPairs``), heartbeats included.
    """

    source: str
    target: str
    enabled: bool
    settings: FlowSettings
    exactly_once: bool = False
    in_cluster_pairs: bool = True
    source_offsets: SourceOffsetsTopic | None = None  # None: MM2's defaults for this flow

    @property
    def name(self) -> str:
        return f"{self.source}{FLOW_ARROW}{self.target}"

    @property
    def emits_heartbeats(self) -> bool:
        """MM2's heartbeat connector of this pair runs: it writes ``Heartbeat(source, target)`` into the target."""
        return self.in_cluster_pairs and self.settings.emit_heartbeats_enabled

    def policy(self) -> ReplicationPolicy:
        s = self.settings
        return POLICY_CLASSES[s.replication_policy_class](
            s.replication_policy_separator, s.internal_topic_separator_enabled
        )

    def topic_selector(self) -> TopicSelector:
        s = self.settings
        return TopicSelector(
            NameFilter.of(s.topics, s.topics_exclude), self.policy(), self.target, s.heartbeats_replication_enabled
        )

    def group_filter(self) -> NameFilter:
        return NameFilter.of(self.settings.groups, self.settings.groups_exclude)

    def config_property_filter(self) -> NameFilter:
        return NameFilter.of((".*",), self.settings.config_properties_exclude)

    def uses_identity_names(self) -> bool:
        return self.policy().format_remote_topic(self.source, "t") == "t"

    def offset_syncs_topic(self) -> str:
        """``MirrorSourceConfig.offsetSyncsTopic``: on the source it is named after the target; on the target,
        after the source, so flows from two sources into one target never share sync history."""
        other = self.target if self.settings.offset_syncs_topic_location == "source" else self.source
        return self.policy().offset_syncs_topic(other)

    def offset_syncs_cluster(self) -> str:
        return self.source if self.settings.offset_syncs_topic_location == "source" else self.target

    def source_offsets_topic(self) -> str:
        """Where exactly-once mode keeps the last mirrored offset of each source partition: on the target, the
        topic MM2's dedicated mode keeps this flow's Connect source offsets in (so either can take over)."""
        return self.offsets_topic().name

    def offsets_topic(self) -> SourceOffsetsTopic:
        return self.source_offsets or SourceOffsetsTopic(f"mm2-offsets.{self.source}.internal")

    def transactional_id(self, topic: str, partition: int) -> str:
        """The mirror's transactional id for one source partition: a newer writer of it fences older ones."""
        return _bounded(f"{self._prefix()}{topic}:{partition}")

    def transactional_id_pattern(self) -> str:
        """Every ``transactional_id`` of this flow, as an IAM resource pattern."""
        return f"{self._prefix()}*"

    def checkpoints_transactional_id(self) -> str:
        """The checkpoint function's transactional id: one per flow, so a second concurrent run is fenced."""
        return f"smm:checkpoints:{self.source}:{self.target}"

    def _prefix(self) -> str:
        return f"smm:{self.source}:{self.target}:"

    def consumer_group_id(self, topic: str) -> str:
        """The event-source mapping's consumer group on the source: deterministic, per flow and topic.

        ``:`` appears in neither aliases nor topic names, so ids of different flows or topics never collide;
        ids over Lambda's 200 characters keep a prefix and a digest of the whole.
        """
        return _bounded(f"{self._prefix()}{topic}")


def _bounded(name: str) -> str:
    """``name`` if it fits Lambda's 200-character group ids, else a prefix and a digest of the whole."""
    if len(name) <= 200:
        return name
    return f"{name[:183]}+{hashlib.sha256(name.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class MirrorConfig:
    """A whole ``mm2.properties``: clusters and every flow between them."""

    clusters: Mapping[str, ClusterConfig]
    flows: tuple[FlowConfig, ...]
    warnings: tuple[Notice, ...] = ()
    deferred_keys: frozenset[str] = frozenset()  # values that reference a provider resolved only at run time

    def enabled_flows(self) -> list[FlowConfig]:
        return [f for f in self.flows if f.enabled]

    def flow(self, source: str, target: str) -> FlowConfig:
        for f in self.flows:
            if f.source == source and f.target == target:
                return f
        known = ", ".join(f.name for f in self.flows) or "none"
        raise ConfigError([f"no flow {source}{FLOW_ARROW}{target} (flows: {known})"])

    def cluster(self, alias: str) -> ClusterConfig:
        try:
            return self.clusters[alias]
        except KeyError:
            raise ConfigError([f"unknown cluster alias {alias!r} (clusters: {', '.join(self.clusters)})"]) from None

    def strict_problems(self) -> list[str]:
        """The warnings ``--strict`` turns into errors: keys accepted and left unused."""
        return [str(w) for w in self.warnings if w.strict]


# --- reading a file ----------------------------------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """The key/value map ``java.util.Properties.load`` makes of ``text``."""
    try:
        return properties.load(text)
    except properties.PropertiesError as exc:
        raise ConfigError([str(exc)]) from None


def parse_text(
    text: str, factories: Mapping[str, providers.ProviderFactory] = providers.KAFKA_PROVIDERS
) -> MirrorConfig:
    """Parse ``mm2.properties`` text; warnings include what MM2 makes of surprising lines."""
    config = parse(parse_properties(text), factories)
    notes = [Notice(s.key, f"line {s.line}: {s.message}") for s in properties.surprises(text)]
    return dataclasses.replace(config, warnings=(*notes, *config.warnings))


def load(
    path: str | Path, factories: Mapping[str, providers.ProviderFactory] = providers.KAFKA_PROVIDERS
) -> MirrorConfig:
    """Read and validate an ``mm2.properties`` file, decoded as MM2 decodes it (ISO-8859-1)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"]) from None
    return parse_text(properties.decode(data), factories)


# --- MirrorMakerConfig ---------------------------------------------------------------------------------------


@dataclass
class _Reading:
    """The state of one parse: resolved values, problems and warnings, collected for one report."""

    raw: Mapping[str, str]
    resolution: providers.Resolution
    aliases: list[str]
    problems: list[str] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)

    @property
    def values(self) -> dict[str, str]:
        return self.resolution.values

    def warn(self, key: str, message: str, strict: bool = False) -> None:
        notice = Notice(key, message, strict)
        if notice not in self.warnings:
            self.warnings.append(notice)

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def shown(self, key: str) -> str:
        """The value of ``key`` as a message may show it: hidden for secrets, the reference if resolved."""
        if client_settings.hidden(key):
            return "<hidden>"
        return self.resolution.shown(key, self.values.get(key, ""))


def parse(
    props: Mapping[str, str], factories: Mapping[str, providers.ProviderFactory] = providers.KAFKA_PROVIDERS
) -> MirrorConfig:
    """Validate a property map (as ``Properties.load`` made it) and build the clusters and flows it describes."""
    resolution = providers.resolve(props, factories)
    reading = _Reading(props, resolution, [])
    reading.problems.extend(resolution.problems)
    for key, message in resolution.warnings:
        reading.warn(key, message)
    reading.aliases = _aliases(reading)
    for key in props:
        _classify(reading, key)
    clusters = {alias: _cluster(reading, alias) for alias in reading.aliases}
    pairs = _cluster_pairs(reading)
    flows = [
        _flow(reading, source, target, clusters, (source, target) in pairs)
        for source in reading.aliases
        for target in reading.aliases
        if source != target
    ]
    if reading.problems:
        raise ConfigError(reading.problems)
    return MirrorConfig(clusters, tuple(flows), tuple(reading.warnings), frozenset(resolution.deferred))


def _aliases(reading: _Reading) -> list[str]:
    raw = reading.values.get("clusters")
    if raw is None:
        reading.problem("clusters: missing; list the cluster aliases, e.g. clusters = A, B")
        return []
    items = parse_list(raw)
    try:
        aliases = non_empty_unique(items, "clusters")
    except InvalidValue as exc:
        reading.problem(f"clusters = {raw!r}: {exc}; allowed: a comma-separated list of aliases, e.g. A, B")
        return [a for a in dict.fromkeys(items) if a]
    if not aliases:
        reading.problem(f"clusters = {raw!r}: allowed: a comma-separated list of aliases, e.g. A, B")
    for alias in aliases:
        if items.count(alias) > 1:
            reading.warn("clusters", f"alias {alias!r} is listed twice; MM2 drops the duplicate")
        if not _ALIAS.fullmatch(alias):
            hint = ""
            if "#" in alias or " " in alias or "\t" in alias:
                hint = " (a properties file has no inline comments: MM2 reads the rest of the line as the value)"
            reading.problem(
                f"clusters: alias {alias!r} is not allowed here: use letters, digits, '_' and '-' (aliases become "
                f"part of topic names){hint}"
            )
    return [a for a in aliases if _ALIAS.fullmatch(a)]


def _flow_of(key: str, aliases: list[str]) -> tuple[str, str, str] | None:
    """``(source, target, setting)`` of a key ``A->B.setting`` whose aliases are clusters, else None."""
    for source in aliases:
        for target in aliases:
            prefix = f"{source}{FLOW_ARROW}{target}."
            if source != target and key.startswith(prefix) and len(key) > len(prefix):
                return source, target, key[len(prefix) :]
    return None


def _cluster_of(key: str, aliases: list[str]) -> tuple[str, str] | None:
    for alias in aliases:
        prefix = f"{alias}."
        if key.startswith(prefix) and len(key) > len(prefix):
            return alias, key[len(prefix) :]
    return None


def _classify(reading: _Reading, key: str) -> None:
    """Say what becomes of ``key``: used, or a warning (with what is done instead), or a problem."""
    if key in ("clusters", providers.PROVIDERS_KEY) or key.startswith(f"{providers.PROVIDERS_KEY}."):
        return
    if FLOW_ARROW in key:
        flow = _flow_of(key, reading.aliases)
        if flow is None:
            _unknown_flow_key(reading, key)
        else:
            _flow_key(reading, key, *flow)
        return
    cluster = _cluster_of(key, reading.aliases)
    if cluster is not None:
        _cluster_key(reading, key, *cluster)
        return
    _top_level_key(reading, key)


def _top_level_key(reading: _Reading, key: str) -> None:
    if key in FLOW_ONLY_KEYS:
        reading.warn(
            key,
            f"MM2 drops {key} at the top level (only a flow key reaches the connector): set A->B.{key}; ignored",
            strict=True,
        )
    elif key in FLOW_KEYS or key == "enabled":
        return  # validated per flow
    elif key in CONNECTION_KEYS:
        _client_key(reading, key, key, None)
    elif key == EXACTLY_ONCE_KEY:
        reading.warn(
            key,
            "MM2 reads exactly-once support per target cluster only (B.exactly.once.source.support); ignored",
            strict=True,
        )
    elif key.startswith("replication.policy."):
        reading.warn(key, "a parameter of a custom replication policy; the policies here take none; ignored", True)
    elif key in OFFSET_STORAGE_KEYS:
        return  # read with each flow
    else:
        _connector_or_worker_key(reading, key, key, None)


def _connector_or_worker_key(reading: _Reading, key: str, setting: str, flow: tuple[str, str] | None) -> None:
    value = reading.values[key]
    if setting in DEFAULT_ONLY_CONNECTOR_KEYS:
        allowed = DEFAULT_ONLY_CONNECTOR_KEYS[setting]
        if trim(value) not in allowed:
            what = "re-encode records" if "converter" in setting else "run custom Java code"
            reading.problem(
                f"{key} = {reading.shown(key)}: MM2 would {what} here, which Serverless MirrorMaker cannot do; "
                f"allowed: {', '.join(a or '(empty)' for a in allowed)}"
            )
        else:
            reading.warn(key, "MM2's default, which is what this product does anyway; not used", strict=True)
        return
    if setting in ALIAS_KEYS:
        return  # checked with each flow: it must name the flow's own cluster
    if setting in UNUSED_CONNECTOR_KEYS:
        reading.warn(key, f"a MirrorMaker 2 setting not used here: {UNUSED_CONNECTOR_KEYS[setting]}", strict=True)
    elif flow is None and (setting.startswith(_WORKER_PREFIXES) or setting in _WORKER_KEYS):
        reading.warn(key, "a Connect worker setting; there is no Connect worker here; ignored", strict=True)
    elif flow is None and setting.startswith((*_ALL_CLIENT_PREFIXES, "producer.override.")):
        reading.warn(
            key,
            "MM2 passes top-level client settings to no client (only bootstrap.servers, security.protocol, ssl.* "
            f"and sasl.* apply to every cluster): write <alias>.{setting}; ignored",
            strict=True,
        )
    else:
        reading.warn(key, "not a setting MirrorMaker 2 reads, and not one of this product's; ignored", strict=True)


def _unknown_flow_key(reading: _Reading, key: str) -> None:
    pair = key.split(".", 1)[0]
    source, _, target = pair.partition(FLOW_ARROW)
    clusters = ", ".join(reading.aliases) or "none"
    if source == target and source in reading.aliases:
        reading.warn(key, "a flow needs two different clusters; MM2 ignores this key", strict=True)
    else:
        reading.warn(
            key,
            f"{pair!r} is not a flow between the clusters ({clusters}); MM2 ignores this key (aliases are "
            "case-sensitive)",
            strict=True,
        )


def _flow_key(reading: _Reading, key: str, source: str, target: str, setting: str) -> None:
    if setting in FLOW_KEYS or setting == "enabled":
        return  # validated with the flow
    if setting in CONNECTION_KEYS or setting.startswith(_FLOW_CLIENT_PREFIXES):
        reading.warn(
            key,
            "per-flow client settings are not applied: this product keeps one client per cluster and role; "
            f"set {source}.consumer.*, {target}.producer.* or {source}.admin.* instead; ignored",
            strict=True,
        )
    elif setting in _EXACTLY_ONCE_CONNECTOR_KEYS:
        reading.warn(
            key,
            f"exactly-once here follows {target}.{EXACTLY_ONCE_KEY} (per-partition transactions); ignored",
            strict=True,
        )
    else:
        _connector_or_worker_key(reading, key, setting, (source, target))


def _cluster_key(reading: _Reading, key: str, alias: str, setting: str) -> None:
    if setting == "bootstrap.servers":
        return
    if setting == EXACTLY_ONCE_KEY:
        _convert(reading, key, _exactly_once, "disabled")
        return
    if setting in CONNECTION_KEYS:
        _client_key(reading, key, setting, None)
        return
    role, _, role_setting = setting.partition(".")
    if role in ROLES and role_setting:
        if role_setting == "bootstrap.servers":
            reading.warn(key, f"every client of {alias} uses {alias}.bootstrap.servers here; ignored", strict=True)
            return
        _client_key(reading, key, role_setting, role)
        return
    if setting in FLOW_KEYS or setting in UNUSED_CONNECTOR_KEYS or setting in DEFAULT_ONLY_CONNECTOR_KEYS:
        reading.warn(
            key,
            f"MM2 has no per-cluster connector settings: it ignores {key}; set {setting} (every flow) or "
            f"{alias}->B.{setting} (one flow)",
            strict=True,
        )
        return
    if setting in OFFSET_STORAGE_KEYS:
        return  # read with each flow into this cluster
    if setting.startswith(_WORKER_PREFIXES) or setting in _WORKER_KEYS or setting == "alias":
        reading.warn(key, "a Connect worker setting; there is no Connect worker here; ignored", strict=True)
        return
    if (
        role in ROLES
        or setting in client_settings.ROLE_KEYS["producer"]
        or setting in client_settings.ROLE_KEYS["consumer"]
    ):
        reading.warn(
            key,
            f"MM2 gives {alias}.{setting} to no client (only bootstrap.servers, security.protocol, ssl.* and "
            f"sasl.* apply to all of a cluster's clients): write {alias}.producer.{setting}, "
            f"{alias}.consumer.{setting} or {alias}.admin.{setting}; ignored",
            strict=True,
        )
        return
    reading.warn(key, "not a setting MirrorMaker 2 reads for a cluster; ignored", strict=True)


def _client_key(reading: _Reading, key: str, setting: str, role: str | None) -> None:
    if key in reading.resolution.deferred:
        return
    verdict = client_settings.check(setting, reading.values[key], role)
    if verdict.error:
        reading.problem(f"{key} = {reading.shown(key)}: {verdict.error}")
    elif verdict.warning:
        reading.warn(key, verdict.warning, strict=True)


def _cluster(reading: _Reading, alias: str) -> ClusterConfig:
    """``clusterProps``: the cluster's connection keys (``A.<key>`` over the top level) and its role keys."""
    values = reading.values
    client: dict[str, str] = {}
    for key in CONNECTION_KEYS:
        if f"{alias}.{key}" in values:
            client[key] = values[f"{alias}.{key}"]
        elif key in values:
            client[key] = values[key]
    roles: dict[str, dict[str, str]] = {role: {} for role in ROLES}
    for key, value in values.items():
        cluster = _cluster_of(key, [alias])
        if cluster is None:
            continue
        role, _, setting = cluster[1].partition(".")
        if role in ROLES and setting and setting != "bootstrap.servers":
            roles[role][setting] = value
    servers = _bootstrap_servers(reading, alias, client.pop("bootstrap.servers", None))
    support = values.get(f"{alias}.{EXACTLY_ONCE_KEY}")
    exactly_once = (
        "disabled" if support is None else _convert(reading, f"{alias}.{EXACTLY_ONCE_KEY}", _exactly_once, "disabled")
    )
    if exactly_once == "preparing":
        reading.warn(
            f"{alias}.{EXACTLY_ONCE_KEY}",
            "preparing: no preparation step is needed here (each partition has its own transactional id); "
            "flows into it stay at-least-once until it is enabled",
        )
    return ClusterConfig(alias, servers, client, roles, exactly_once)


def _bootstrap_servers(reading: _Reading, alias: str, raw: str | None) -> tuple[str, ...]:
    key = f"{alias}.bootstrap.servers"
    if raw is None:
        reading.problem(f"{key}: missing; every cluster needs host:port[,host:port...] (MM2 stops without it)")
        return ()
    if key in reading.resolution.deferred:
        return ()
    servers = tuple(s for s in parse_list(raw) if s)
    bad = [s for s in servers if not _HOST_PORT.match(s) or not 0 < int(s.rsplit(":", 1)[1]) < 65536]
    if not servers or bad:
        reading.problem(
            f"{key} = {reading.shown(key)}: allowed: host:port[,host:port...] (bad: {', '.join(bad) or 'empty'})"
        )
    return servers


def _cluster_pairs(reading: _Reading) -> set[tuple[str, str]]:
    """``MirrorMakerConfig.clusterPairs``: a pair gets connectors when its flow or its heartbeats are on.

    Both switches are read with ``Boolean.parseBoolean``: untrimmed, so ``true `` is false here.
    """
    values = reading.values
    heartbeats = java_parse_boolean(values["emit.heartbeats.enabled"]) if "emit.heartbeats.enabled" in values else True
    pairs: set[tuple[str, str]] = set()
    for source in reading.aliases:
        for target in reading.aliases:
            if source == target:
                continue
            prefix = f"{source}{FLOW_ARROW}{target}."
            enabled = java_parse_boolean(values.get(f"{prefix}enabled"))
            pair_heartbeats = heartbeats
            if f"{prefix}emit.heartbeats.enabled" in values:
                pair_heartbeats = java_parse_boolean(values[f"{prefix}emit.heartbeats.enabled"])
            if enabled or pair_heartbeats:
                pairs.add((source, target))
    return pairs


def _connector_value(reading: _Reading, source: str, target: str, setting: str) -> tuple[str, str] | None:
    """(key as written, value) of a connector setting for a flow: ``A->B.<setting>`` over the top level."""
    flow_key = f"{source}{FLOW_ARROW}{target}.{setting}"
    if flow_key in reading.values:
        return flow_key, reading.values[flow_key]
    if setting in reading.values and setting not in FLOW_ONLY_KEYS:
        return setting, reading.values[setting]
    return None


def _flow(
    reading: _Reading, source: str, target: str, clusters: Mapping[str, ClusterConfig], in_pairs: bool
) -> FlowConfig:
    name = f"{source}{FLOW_ARROW}{target}"
    enabled_entry = _connector_value(reading, source, target, "enabled")
    enabled = False
    if enabled_entry is not None:
        key, raw = enabled_entry
        try:
            enabled = parse_boolean(raw)
        except InvalidValue:
            hint = " (a properties file has no inline comments)" if "#" in raw else ""
            reading.warn(
                key,
                f"{reading.shown(key)} is not true or false{hint}: MM2 refuses the flow's connectors and does not "
                f"replicate {name}; neither does Serverless MirrorMaker",
            )
        if enabled and not in_pairs:
            reading.warn(
                key,
                f"{raw!r}: MM2 reads this with Boolean.parseBoolean when it picks cluster pairs (no trimming), so "
                f"with heartbeats off for {name} it never starts the flow; neither does Serverless MirrorMaker",
            )
    active = enabled and in_pairs
    settings = _flow_settings(reading, source, target, report=active)
    if active:
        _check_flow(reading, name, source, target, settings, clusters)
    offsets = _source_offsets_topic(reading, source, target, report=active)
    return FlowConfig(source, target, active, settings, clusters[target].exactly_once, in_pairs, offsets)


def _source_offsets_topic(reading: _Reading, source: str, target: str, report: bool) -> SourceOffsetsTopic:
    """``workerConfig``'s ``offset.storage.*`` for the pair: the top-level key wins over the target cluster's."""
    values: dict[str, Any] = {}
    for setting, convert, name in (
        ("offset.storage.topic", _text, "name"),
        ("offset.storage.partitions", _number(1), "partitions"),
        ("offset.storage.replication.factor", _replication_factor, "replication_factor"),
    ):
        key = setting if setting in reading.values else f"{target}.{setting}"
        if key in reading.values:
            values[name] = _convert(reading, key, convert, None, report)
    values = {k: v for k, v in values.items() if v is not None}
    return SourceOffsetsTopic(**{"name": f"mm2-offsets.{source}.internal", **values})


def _flow_settings(reading: _Reading, source: str, target: str, report: bool) -> FlowSettings:
    values: dict[str, Any] = {}
    for setting, f in FLOW_KEYS.items():
        entry = _connector_value(reading, source, target, setting)
        if entry is None:
            continue
        key = entry[0]
        if key in reading.resolution.deferred:
            continue
        if (
            f.name == "internal_topic_separator_enabled"
            and _connector_value(reading, source, target, "replication.policy.separator") is None
        ):
            continue  # DefaultReplicationPolicy.configure reads it only together with a separator
        values[f.name] = _convert(reading, key, f.metadata["convert"], f.default, report)
    separator = values.get("replication_policy_separator")
    if report and separator is not None and separator != trim(separator):
        written = _connector_value(reading, source, target, "replication.policy.separator")
        reading.warn(
            written[0] if written else "replication.policy.separator",
            f"the separator is {separator!r}, whitespace included: MM2's policy uses the value untrimmed",
        )
    for f in dataclasses.fields(FlowSettings):  # a negative interval turns its task off, as in MM2
        if f.name.endswith("_interval_seconds") and values.get(f.name, 1) < 0:
            values[f.name.replace("_interval_seconds", "_enabled")] = False
            values[f.name] = f.default
    return FlowSettings(**values)


def _check_flow(
    reading: _Reading,
    name: str,
    source: str,
    target: str,
    settings: FlowSettings,
    clusters: Mapping[str, ClusterConfig],
) -> None:
    """MM2's connector validation rules (``MirrorSourceConnector`` and ``MirrorCheckpointConfig.validate``)."""
    offset_syncs_off = _connector_value(reading, source, target, "emit.offset-syncs.enabled")
    if offset_syncs_off is not None and offset_syncs_off[1] == "false":  # MM2 compares the raw text
        for setting in FLOW_KEYS:
            if setting.startswith("offset-syncs.topic.") and _connector_value(reading, source, target, setting):
                reading.problem(
                    f"{offset_syncs_off[0]} = false with {setting} set: MM2 refuses flow {name} "
                    "(MirrorSourceConnector can't setup offset-syncs feature while emit.offset-syncs.enabled set "
                    "to false); remove one"
                )
                break
        if settings.emit_checkpoints_enabled:
            reading.problem(
                f"{offset_syncs_off[0]} = false while emit.checkpoints.enabled is true: checkpoints are translated "
                f"through offset syncs, so MM2 refuses the checkpoints of {name} (MirrorCheckpointConnector can't "
                "run without offset syncs); set emit.checkpoints.enabled = false too"
            )
    for setting, own in zip(ALIAS_KEYS, (source, target), strict=True):
        written, alias = _connector_alias(reading, source, target, setting)
        if written is not None and alias != own:
            reading.problem(
                f"{written} = {reading.shown(written)}: MM2 would name {name}'s remote and internal topics after "
                f"{alias!r} instead of the cluster alias {own!r}; Serverless MirrorMaker names them after the cluster "
                "alias: rename the cluster in `clusters` (or, to keep topic names, use IdentityReplicationPolicy)"
            )
    target_cluster = clusters[target]
    if target_cluster.exactly_once:
        source_cluster = clusters[source]
        level = source_cluster.role_settings("consumer").get("isolation.level")
        if level is not None and trim(level) == "read_uncommitted":
            reading.problem(
                f"{source}.consumer.isolation.level = read_uncommitted: flow {name} is exactly-once "
                f"({target}.{EXACTLY_ONCE_KEY} = enabled) and would copy aborted source transactions; "
                "allowed: read_committed (the default in exactly-once mode)"
            )


def _connector_alias(reading: _Reading, source: str, target: str, setting: str) -> tuple[str | None, str]:
    """Where a connector's ``source/target.cluster.alias`` comes from, and its value (``connectorBaseConfig``).

    ``A->B.<setting>`` wins; then ``<alias>.alias`` of that cluster (it becomes ``source.cluster.alias`` through
    the cluster's properties); then the top-level key; else MM2 uses the cluster's own alias.
    """
    own = source if setting == "source.cluster.alias" else target
    for key in (f"{source}{FLOW_ARROW}{target}.{setting}", f"{own}.alias", setting):
        if key in reading.values:
            return key, trim(reading.values[key])
    return None, own


def _convert(reading: _Reading, key: str, convert: Callable[[str], Any], default: Any, report: bool = True) -> Any:
    raw = reading.values[key]
    try:
        return convert(raw)
    except (_Invalid, InvalidValue) as exc:
        message = f"{reading.shown(key)}: {exc}"
        if report:
            reading.problem(f"{key} = {message}")
        else:  # a flow that does not run: MM2 refuses its connectors, which changes nothing
            reading.warn(key, f"{message} (in a flow that is not enabled)")
        return default


def _exactly_once(value: str) -> str:
    support = trim(value).lower()
    if support not in EXACTLY_ONCE_SUPPORT:
        raise _Invalid(f"allowed: {', '.join(EXACTLY_ONCE_SUPPORT)}")
    return support
