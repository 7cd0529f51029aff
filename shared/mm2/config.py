"""MM2's dedicated-mode ``mm2.properties``: parsing, MM2's defaults, per-flow overrides and validation.

Every error names the key, the value and what is allowed; all errors of a file are reported together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.mm2 import client_settings
from shared.mm2.client_settings import COMMON_KEYS, ROLE_KEYS, ROLES, SettingError
from shared.mm2.filters import (
    DEFAULT_GROUPS,
    DEFAULT_GROUPS_EXCLUDE,
    DEFAULT_TOPICS,
    DEFAULT_TOPICS_EXCLUDE,
    NameFilter,
    TopicSelector,
)
from shared.mm2.policy import POLICY_CLASSES, ReplicationPolicy

FLOW_ARROW = "->"
# Connect worker and MM2 keys that only matter to a Connect cluster: accepted so an existing file loads.
IGNORED_KEYS = frozenset(
    {
        "tasks.max",
        "config.storage.replication.factor",
        "offset.storage.replication.factor",
        "status.storage.replication.factor",
        "dedicated.mode.enable.internal.rest",
        "listeners",
        "key.converter",
        "value.converter",
        "header.converter",
        "replication.policy.internal.topic.separator.enabled.default",
    }
)
EXACTLY_ONCE_KEY = "exactly.once.source.support"
EXACTLY_ONCE_SUPPORT = ("disabled", "preparing", "enabled")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ALIAS = re.compile(r"[A-Za-z0-9_\-]+")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")


class ConfigError(ValueError):
    """One or more problems in a configuration; ``problems`` lists each one on its own."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class _Invalid(ValueError):
    """A value that does not fit a key; carries what is allowed."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise _Invalid("allowed: true or false")
    return v == "true"


def _number(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise _Invalid(f"allowed: a whole number >= {low}") from None
        if number < low or (high is not None and number > high):
            raise _Invalid(f"allowed: a whole number from {low}" + (f" to {high}" if high else " up"))
        return number

    return convert


def _replication_factor(value: str) -> int:
    number = _number(-1)(value)
    if number == 0:
        raise _Invalid("allowed: -1 (the broker's default) or a whole number >= 1")
    return number


def _regex_list(value: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in value.split(",") if p.strip())
    for pattern in items:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Invalid(f"pattern {pattern!r} is not a valid regular expression ({exc})") from None
    return items


def _names_list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        v = value.strip()
        if v not in allowed:
            raise _Invalid(f"allowed: {', '.join(allowed)}")
        return v

    return convert


def _policy_class(value: str) -> str:
    v = value.strip()
    if v not in POLICY_CLASSES:
        allowed = ", ".join(k for k in POLICY_CLASSES if "." in k)
        raise _Invalid(f"allowed: {allowed}")
    return v


def _separator(value: str) -> str:
    if not value:
        raise _Invalid("allowed: a non-empty string such as . or _")
    return value


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
            r"message\.timestamp\.type",
            r"unclean\.leader\.election\.enable",
            r"min\.insync\.replicas",
        ),
    )
    replication_policy_class: str = _setting(
        "replication.policy.class", _policy_class, "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
    )
    replication_policy_separator: str = _setting("replication.policy.separator", _separator, ".")
    internal_topic_separator_enabled: bool = _setting(
        "replication.policy.internal.topic.separator.enabled", _bool, True
    )
    replication_factor: int = _setting("replication.factor", _replication_factor, 2)
    heartbeats_topic_replication_factor: int = _setting("heartbeats.topic.replication.factor", _replication_factor, 3)
    checkpoints_topic_replication_factor: int = _setting("checkpoints.topic.replication.factor", _replication_factor, 3)
    offset_syncs_topic_replication_factor: int = _setting(
        "offset-syncs.topic.replication.factor", _replication_factor, 3
    )
    offset_syncs_topic_location: str = _setting("offset-syncs.topic.location", _choice("source", "target"), "source")
    offset_lag_max: int = _setting("offset.lag.max", _number(1), 100)
    emit_offset_syncs_enabled: bool = _setting("emit.offset-syncs.enabled", _bool, True)
    emit_heartbeats_enabled: bool = _setting("emit.heartbeats.enabled", _bool, True)
    emit_heartbeats_interval_seconds: int = _setting("emit.heartbeats.interval.seconds", _number(1), 1)
    heartbeats_replication_enabled: bool = _setting("heartbeats.replication.enabled", _bool, True)
    emit_checkpoints_enabled: bool = _setting("emit.checkpoints.enabled", _bool, True)
    emit_checkpoints_interval_seconds: int = _setting("emit.checkpoints.interval.seconds", _number(1), 60)
    sync_group_offsets_enabled: bool = _setting("sync.group.offsets.enabled", _bool, False)
    sync_group_offsets_interval_seconds: int = _setting("sync.group.offsets.interval.seconds", _number(1), 60)
    refresh_topics_enabled: bool = _setting("refresh.topics.enabled", _bool, True)
    refresh_topics_interval_seconds: int = _setting("refresh.topics.interval.seconds", _number(1), 600)
    refresh_groups_enabled: bool = _setting("refresh.groups.enabled", _bool, True)
    refresh_groups_interval_seconds: int = _setting("refresh.groups.interval.seconds", _number(1), 600)
    sync_topic_configs_enabled: bool = _setting("sync.topic.configs.enabled", _bool, True)
    sync_topic_configs_interval_seconds: int = _setting("sync.topic.configs.interval.seconds", _number(1), 600)
    sync_topic_acls_enabled: bool = _setting("sync.topic.acls.enabled", _bool, True)
    sync_topic_acls_interval_seconds: int = _setting("sync.topic.acls.interval.seconds", _number(1), 600)
    use_defaults_from: str = _setting("use.defaults.from", _choice("source", "target"), "target")
    # Serverless MirrorMaker's own keys (``smm.*``): what MM2 leaves to Connect or does not have.
    batch_size: int = _setting("smm.batch.size", _number(1, 10000), 100)
    batching_window_ms: int = _setting("smm.batching.window.ms", _number(0, 300000), 500)
    starting_position: str = _setting("smm.starting.position", _choice("TRIM_HORIZON", "LATEST"), "TRIM_HORIZON")
    oversized_record_action: str = _setting("smm.oversized.record.action", _choice("fail", "dead-letter"), "fail")
    dead_letter_topic: str = _setting("smm.dead.letter.topic", str.strip, "smm-dead-letter.internal")
    producer_backend: str = _setting("smm.producer.backend", _choice("kafka-python", "confluent-kafka"), "kafka-python")


FLOW_KEYS: dict[str, dataclasses.Field[Any]] = {f.metadata["key"]: f for f in dataclasses.fields(FlowSettings)}


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster of ``clusters``: where it is and the client settings for it (Java names, validated)."""

    alias: str
    bootstrap_servers: tuple[str, ...]
    client: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    exactly_once_source_support: str = "disabled"

    @property
    def exactly_once(self) -> bool:
        """Flows into this cluster write transactions (MM2's ``<alias>.exactly.once.source.support``)."""
        return self.exactly_once_source_support == "enabled"

    def kafka_python_settings(self, role: str) -> dict[str, Any]:
        """kafka-python keyword arguments for a client of ``role`` (producer, consumer, admin)."""
        settings = client_settings.to_kafka_python(self.client, COMMON_KEYS)
        role_table = {**COMMON_KEYS, **ROLE_KEYS[role]}
        settings.update(client_settings.to_kafka_python(self.roles.get(role, {}), role_table))
        settings["bootstrap_servers"] = list(self.bootstrap_servers)
        return settings

    def is_loopback(self) -> bool:
        return all(_host(s) in ("localhost", "127.0.0.1", "[::1]") for s in self.bootstrap_servers)


def _host(server: str) -> str:
    return server.rsplit(":", 1)[0]


@dataclass(frozen=True)
class FlowConfig:
    """One replication flow ``source->target`` with its effective settings."""

    source: str
    target: str
    enabled: bool
    settings: FlowSettings
    exactly_once: bool = False

    @property
    def name(self) -> str:
        return f"{self.source}{FLOW_ARROW}{self.target}"

    def policy(self) -> ReplicationPolicy:
        s = self.settings
        return POLICY_CLASSES[s.replication_policy_class](
            s.replication_policy_separator, s.internal_topic_separator_enabled
        )

    def topic_selector(self) -> TopicSelector:
        s = self.settings
        return TopicSelector(NameFilter.of(s.topics, s.topics_exclude), self.policy(), self.target)

    def group_filter(self) -> NameFilter:
        return NameFilter.of(self.settings.groups, self.settings.groups_exclude)

    def uses_identity_names(self) -> bool:
        return self.policy().format_remote_topic(self.source, "t") == "t"

    def offset_syncs_topic(self) -> str:
        return self.policy().offset_syncs_topic(self.target)

    def offset_syncs_cluster(self) -> str:
        return self.source if self.settings.offset_syncs_topic_location == "source" else self.target

    def source_offsets_topic(self) -> str:
        """Where exactly-once mode keeps the last mirrored offset of each source partition: on the target, named
        as MM2's dedicated mode names the Connect offsets topic of this source."""
        return f"mm2-offsets.{self.source}.internal"

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
    warnings: tuple[str, ...] = ()

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


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties`` syntax: ``=``/``:``/space separators, comments, continuation lines, escapes."""
    props: dict[str, str] = {}
    logical: list[str] = []
    for raw in _LINE_BREAK.split(text):
        line = raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if _ends_with_continuation(line):
            logical.append(line[:-1])
            continue
        logical.append(line)
        key, value = _split_entry("".join(logical))
        logical = []
        props[key] = value
    if logical:
        key, value = _split_entry("".join(logical))
        props[key] = value
    return props


def _ends_with_continuation(line: str) -> bool:
    backslashes = len(line) - len(line.rstrip("\\"))
    return backslashes % 2 == 1


def _split_entry(entry: str) -> tuple[str, str]:
    i = 0
    while i < len(entry):
        ch = entry[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t":
            break
        i += 1
    key = entry[:i]
    rest = entry[i:].lstrip(" \t")
    if rest[:1] in ("=", ":") and (i == len(entry) or entry[i] in " \t=:"):
        rest = rest[1:].lstrip(" \t")
    return _unescape(key), _unescape(rest)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise ConfigError(["malformed \\uXXXX escape in a .properties entry (needs 4 hex digits)"])
                out.append(chr(int(digits, 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def load(path: str | Path) -> MirrorConfig:
    """Read and validate an ``mm2.properties`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"]) from None
    return parse(parse_properties(text))


def parse(props: Mapping[str, str]) -> MirrorConfig:
    """Validate a property map and build the clusters and flows it describes."""
    problems: list[str] = []
    warnings: list[str] = []
    aliases = _aliases(props, problems)
    flow_keys: dict[tuple[str, str], dict[str, str]] = {}
    top_level: dict[str, str] = {}
    cluster_client: dict[str, dict[str, str]] = {a: {} for a in aliases}
    cluster_roles: dict[str, dict[str, dict[str, str]]] = {a: {r: {} for r in ROLES} for a in aliases}
    bootstrap: dict[str, str] = {}
    exactly_once: dict[str, str] = {}  # per cluster; the top-level key covers the clusters not named
    everywhere = "disabled"

    for key, value in props.items():
        if key == "clusters":
            continue
        if FLOW_ARROW in key:
            _flow_key(key, value, aliases, flow_keys, problems, warnings)
        elif key in FLOW_KEYS:
            top_level[key] = value
        elif key == EXACTLY_ONCE_KEY:
            everywhere = _convert(key, value, _exactly_once, problems, "disabled")
        elif key in IGNORED_KEYS:
            warnings.append(f"{key}: used by a Connect cluster, not by Serverless MirrorMaker; ignored")
        else:
            _cluster_key(
                key, value, aliases, bootstrap, cluster_client, cluster_roles, exactly_once, problems, warnings
            )

    clusters: dict[str, ClusterConfig] = {}
    for alias in aliases:
        servers = _bootstrap_servers(alias, bootstrap.get(alias), problems)
        support = exactly_once.get(alias, everywhere)
        clusters[alias] = ClusterConfig(alias, servers, cluster_client[alias], cluster_roles[alias], support)
        if support == "preparing":
            warnings.append(
                f"{alias}.{EXACTLY_ONCE_KEY} = preparing: no preparation step is needed here (each partition has "
                "its own transactional id); flows into it stay at-least-once until it is enabled"
            )

    flows: list[FlowConfig] = []
    for source in aliases:
        for target in aliases:
            if source == target:
                continue
            overrides = flow_keys.get((source, target), {})
            enabled_raw = overrides.pop("enabled", "false")
            enabled = _convert(f"{source}{FLOW_ARROW}{target}.enabled", enabled_raw, _bool, problems, False)
            settings = _flow_settings(source, target, top_level, overrides, problems)
            flow = FlowConfig(source, target, bool(enabled), settings, clusters[target].exactly_once)
            if flow.enabled and flow.exactly_once:
                _check_exactly_once_source(clusters[source], flow, problems)
            flows.append(flow)

    if problems:
        raise ConfigError(problems)
    return MirrorConfig(clusters, tuple(flows), tuple(warnings))


def _exactly_once(value: str) -> str:
    support = value.strip()
    if support not in EXACTLY_ONCE_SUPPORT:
        raise _Invalid(f"allowed: {', '.join(EXACTLY_ONCE_SUPPORT)}")
    return support


def _check_exactly_once_source(source: ClusterConfig, flow: FlowConfig, problems: list[str]) -> None:
    """Exactly-once copies committed source records only: aborted source transactions must stay behind."""
    level = source.roles.get("consumer", {}).get("isolation.level", source.client.get("isolation.level"))
    if level == "read_uncommitted":
        problems.append(
            f"{source.alias}.consumer.isolation.level = read_uncommitted: flow {flow.name} is exactly-once "
            f"({flow.target}.{EXACTLY_ONCE_KEY} = enabled) and would copy aborted source transactions; "
            "allowed: read_committed (the default in exactly-once mode)"
        )


def _aliases(props: Mapping[str, str], problems: list[str]) -> list[str]:
    raw = props.get("clusters")
    if raw is None:
        problems.append("clusters: missing; list the cluster aliases, e.g. clusters = A, B")
        return []
    aliases = [a.strip() for a in raw.split(",") if a.strip()]
    if not aliases:
        problems.append(f"clusters = {raw!r}: allowed: a comma-separated list of aliases, e.g. A, B")
    seen: set[str] = set()
    for alias in aliases:
        if not _ALIAS.fullmatch(alias):
            problems.append(f"clusters: alias {alias!r} is not allowed: use letters, digits, '_' and '-'")
        if alias in seen:
            problems.append(f"clusters: alias {alias!r} is listed twice")
        seen.add(alias)
    return list(dict.fromkeys(aliases))


def _flow_key(
    key: str,
    value: str,
    aliases: list[str],
    flow_keys: dict[tuple[str, str], dict[str, str]],
    problems: list[str],
    warnings: list[str],
) -> None:
    pair, dot, setting = key.partition(".")
    source, _, target = pair.partition(FLOW_ARROW)
    if not dot or not source or not target:
        problems.append(f"{key}: a flow key looks like SOURCE->TARGET.setting, e.g. A->B.enabled")
        return
    for alias in (source, target):
        if alias not in aliases:
            problems.append(f"{key}: unknown cluster alias {alias!r} (clusters: {', '.join(aliases) or 'none'})")
            return
    if source == target:
        problems.append(f"{key}: a flow needs two different clusters")
        return
    if setting in IGNORED_KEYS:
        warnings.append(f"{key}: used by a Connect cluster, not by Serverless MirrorMaker; ignored")
        return
    if setting != "enabled" and setting not in FLOW_KEYS:
        problems.append(f"{key}: unknown flow setting {setting!r} ({_allowed_flow_keys()})")
        return
    flow_keys.setdefault((source, target), {})[setting] = value


def _cluster_key(
    key: str,
    value: str,
    aliases: list[str],
    bootstrap: dict[str, str],
    cluster_client: dict[str, dict[str, str]],
    cluster_roles: dict[str, dict[str, dict[str, str]]],
    exactly_once: dict[str, str],
    problems: list[str],
    warnings: list[str],
) -> None:
    alias, dot, setting = key.partition(".")
    if not dot or alias not in aliases:
        problems.append(
            f"{key}: unknown key: not a MirrorMaker setting, and {alias!r} is not a cluster alias"
            f" (clusters: {', '.join(aliases) or 'none'}; {_allowed_flow_keys()})"
        )
        return
    if setting == "bootstrap.servers":
        bootstrap[alias] = value
        return
    if setting == EXACTLY_ONCE_KEY:
        exactly_once[alias] = _convert(key, value, _exactly_once, problems, "disabled")
        return
    role, _, role_setting = setting.partition(".")
    if role in ROLES and role_setting:
        table, target_map, shown = ROLE_KEYS[role], cluster_roles[alias][role], f"{alias}.{role}."
        setting = role_setting
        if setting in COMMON_KEYS:
            table = COMMON_KEYS
    else:
        table, target_map, shown = COMMON_KEYS, cluster_client[alias], f"{alias}."
    if setting not in table:
        allowed = ", ".join(sorted(table))
        problems.append(f"{key}: unknown client setting {setting!r} for {shown}* (allowed: {allowed})")
        return
    try:
        table[setting].convert(value)
    except SettingError as exc:
        shown_value = "<hidden>" if "jaas" in setting or "password" in setting else repr(value)
        problems.append(f"{key} = {shown_value}: {exc}")
        return
    target_map[setting] = value
    if role in ROLES and setting in COMMON_KEYS:
        warnings.append(f"{key}: applies to the {role} only")


def _bootstrap_servers(alias: str, raw: str | None, problems: list[str]) -> tuple[str, ...]:
    key = f"{alias}.bootstrap.servers"
    if raw is None:
        problems.append(f"{key}: missing; every cluster needs host:port[,host:port...]")
        return ()
    servers = tuple(s.strip() for s in raw.split(",") if s.strip())
    bad = [s for s in servers if not _HOST_PORT.match(s) or not 0 < int(s.rsplit(":", 1)[1]) < 65536]
    if not servers or bad:
        problems.append(f"{key} = {raw!r}: allowed: host:port[,host:port...] (bad: {', '.join(bad) or 'empty'})")
    return servers


def _flow_settings(
    source: str,
    target: str,
    top_level: Mapping[str, str],
    overrides: Mapping[str, str],
    problems: list[str],
) -> FlowSettings:
    values: dict[str, Any] = {}
    for key, f in FLOW_KEYS.items():
        if key in overrides:
            shown, raw = f"{source}{FLOW_ARROW}{target}.{key}", overrides[key]
        elif key in top_level:
            shown, raw = key, top_level[key]
        else:
            continue
        converted = _convert(shown, raw, f.metadata["convert"], problems, f.default)
        values[f.name] = converted
    return FlowSettings(**values)


def _convert(key: str, raw: str, convert: Callable[[str], Any], problems: list[str], default: Any) -> Any:
    try:
        return convert(raw)
    except _Invalid as exc:
        message = f"{key} = {raw!r}: {exc}"
        if message not in problems:
            problems.append(message)
        return default


def _allowed_flow_keys() -> str:
    return "MirrorMaker settings: clusters, <alias>.bootstrap.servers, <alias>.<client setting>, " + (
        "A->B.enabled, " + ", ".join(sorted(FLOW_KEYS))
    )
