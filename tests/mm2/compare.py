"""The comparison behind the differential test: MM2's reading of a corpus file against ``shared.mm2.config``'s.

``outcome`` decides, for one file, whether both refuse it, this product refuses it for a reason MM2 also stops
on (or a listed deliberate one), or both accept it with the same effective configuration; ``report`` runs the
whole corpus and writes the table ``docs/mm2-corpus.md`` shows (``make mm2-report``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.mm2 import config as mm2_config
from shared.mm2 import properties
from shared.mm2.config import ConfigError, FlowConfig, MirrorConfig
from tests.mm2 import harness

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
# The variables tests/mm2/corpus/README.md says the provider files need; SMM_CORPUS_UNSET stays unset.
ENV = {
    "SMM_CORPUS_BOOTSTRAP_EAST": "east-kafka-1:9092,east-kafka-2:9092",
    "SMM_CORPUS_BOOTSTRAP_WEST": "west-kafka-1:9092",
    "SMM_CORPUS_WEST_API_KEY": "corpus-api-key",
    "SMM_CORPUS_WEST_API_SECRET": "corpus-api-secret",
    "SMM_CORPUS_TOPICS": "orders.*,payments.*",
    "SMM_CORPUS_SCRAM_BOOTSTRAP": "scram-kafka-1:9092",
    "SMM_CORPUS_SCRAM_USERNAME": "scram-user",
    "SMM_CORPUS_SCRAM_PASSWORD": "scram-password",
    "SMM_CORPUS_SCRAM_MM2_PASSWORD": "mm2-password",
}
# Files MM2 runs (perhaps without some connectors) that this product refuses on purpose, with the reason.
DELIBERATE: dict[str, str] = {
    "confluent-cloud-plain-tuning-overrides.properties": "placeholders for host names; an empty separator with "
    "an empty source.cluster.alias (names remote topics after nothing: use IdentityReplicationPolicy)",
    "double-backslash-exclude-and-tuning.properties": "an empty separator with an empty source.cluster.alias",
    "kafka-docs-multi-cluster-xdcr.properties": "'...' as bootstrap servers (a documentation placeholder)",
    "oci-streaming-sasl-plain-templated.properties": "${VAR} shell placeholders in host names",
    "whitespace-separator-scissors-line.properties": "JsonConverter would re-encode every record; an empty separator",
    "written-config-providers.properties": "an unset ${env:...} variable is an error here (MM2 sends the literal text)",
    "written-worker-and-client-keys.properties": "converters that re-encode records",
    "crlf-legacy-alias-colon-separator.properties": "source.cluster.alias names remote topics after another alias",
}

GROUPS = ["app", "console-consumer-1", "connect-x", "__x", "orders-consumer", "payments-app", "App"]
TOPIC_CONFIGS = [
    "retention.ms",
    "cleanup.policy",
    "min.insync.replicas",
    "message.timestamp.type",
    "segment.bytes",
    "unclean.leader.election.enable",
]
# Keys MM2 sets on its own clients whatever the file says (compared only when this product has them too).
MM2_CLIENT_DEFAULTS = frozenset(
    {
        "client.id",
        "enable.auto.commit",
        "auto.offset.reset",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
        "max.block.ms",
        "enable.idempotence",
        "acks",
        "max.in.flight.requests.per.connection",
        "delivery.timeout.ms",
        "transactional.id",
    }
)
INTERVALS = {
    "refresh.topics.interval.seconds": ("refresh_topics_enabled", "refresh_topics_interval_seconds"),
    "refresh.groups.interval.seconds": ("refresh_groups_enabled", "refresh_groups_interval_seconds"),
    "sync.topic.configs.interval.seconds": ("sync_topic_configs_enabled", "sync_topic_configs_interval_seconds"),
    "sync.topic.acls.interval.seconds": ("sync_topic_acls_enabled", "sync_topic_acls_interval_seconds"),
    "emit.checkpoints.interval.seconds": ("emit_checkpoints_enabled", "emit_checkpoints_interval_seconds"),
    "emit.heartbeats.interval.seconds": ("emit_heartbeats_enabled", "emit_heartbeats_interval_seconds"),
    "sync.group.offsets.interval.seconds": ("sync_group_offsets_enabled", "sync_group_offsets_interval_seconds"),
}
SETTINGS = {
    "offset.lag.max": "offset_lag_max",
    "replication.factor": "replication_factor",
    "heartbeats.topic.replication.factor": "heartbeats_topic_replication_factor",
    "checkpoints.topic.replication.factor": "checkpoints_topic_replication_factor",
    "offset-syncs.topic.replication.factor": "offset_syncs_topic_replication_factor",
    "heartbeats.replication.enabled": "heartbeats_replication_enabled",
    "emit.offset-syncs.enabled": "emit_offset_syncs_enabled",
    "offset-syncs.topic.location": "offset_syncs_topic_location",
    "sync.group.offsets.enabled": "sync_group_offsets_enabled",
}


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.properties"))


def _aliases(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        try:
            props = properties.load(properties.decode(path.read_bytes()))
        except properties.PropertiesError:
            continue
        found.update(a for a in re.split(r"\s*,\s*", props.get("clusters", "").strip()) if re.fullmatch(r"[\w.-]+", a))
    return found


def topic_names(aliases: set[str]) -> list[str]:
    names = [
        "orders",
        "orders.a",
        "ordersXa",
        "payments",
        "payments.eu",
        "heartbeats",
        "__consumer_offsets",
        ".hidden",
        "x.replica",
        "billing.invoices",
        "mm2-configs.x.internal",
        "foo-internal",
        "foo.internal",
        "topic_with_underscore",
        "connect-offsets",
        "Orders",
    ]
    for alias in sorted(aliases):
        names += [f"{alias}.orders", f"{alias}_orders", f"{alias}.heartbeats", f"{alias}.{alias}.orders"]
        names += [
            f"mm2-offset-syncs.{alias}.internal",
            f"{alias}.checkpoints.internal",
            f"{alias}_checkpoints_internal",
        ]
    return names


def _refusals(theirs: Mapping[str, Any]) -> list[str]:
    """Why MM2 would not run (all or part of) a file: its own errors and the connectors it drops."""
    found = []
    if theirs.get("mirrormaker_error"):
        found.append(f"MirrorMaker: {theirs['mirrormaker_error']}")
    for name, flow in theirs.get("flows", {}).items():
        if not flow.get("in_cluster_pairs"):
            continue
        found += [f"{name}: {v}" for v in flow.get("validate_errors", [])]
        if flow.get("error"):
            found.append(f"{name}: {flow['error']}")
    return found


def mm2_replicates(flow: Mapping[str, Any]) -> bool:
    """MM2 runs this flow's source connector: its pair has a herder, it is enabled and its config is accepted."""
    source_refused = any(v.startswith("MirrorSourceConnector") for v in flow.get("validate_errors", []))
    return bool(flow.get("in_cluster_pairs") and flow.get("enabled") and not source_refused and not flow.get("error"))


def _ours_interval(flow: FlowConfig, enabled_field: str, interval_field: str) -> int:
    s = flow.settings
    return int(getattr(s, interval_field)) if getattr(s, enabled_field) else -1


def _flow_client_keys(raw: Mapping[str, str], flow: FlowConfig) -> set[str]:
    """Client keys a flow sets for itself (``A->B.consumer.x``, ...): reported here, not applied."""
    prefix = f"{flow.source}->{flow.target}."
    keys: set[str] = set()
    for key in raw:
        setting = (
            key[len(prefix) :]
            if key.startswith(prefix)
            else key
            if key in ("consumer.poll.timeout.ms", "admin.timeout.ms")
            else None
        )
        if setting is None:
            continue
        for head in (
            "producer.override.",
            "source.consumer.",
            "target.consumer.",
            "source.admin.",
            "target.admin.",
            "source.producer.",
            "target.producer.",
            "consumer.",
            "producer.",
            "admin.",
            "source.cluster.",
            "target.cluster.",
        ):
            if setting.startswith(head):
                keys.add(setting[len(head) :])
                if head == "producer.override.":  # MM2's own producers see it as a junk key override.x
                    keys.add(setting[len("producer.") :])
                break
    return keys


def client_differences(ours: Mapping[str, str], theirs: Mapping[str, str], skip: set[str]) -> list[str]:
    differences = []
    for key, value in theirs.items():
        if key in skip or key == "bootstrap.servers" or key.startswith("metrics.context."):
            continue
        if key == "client.id" and key in ours:  # MM2 appends |<flow>|<connector>|<role> to a user's client.id
            if not value.startswith(ours[key]):
                differences.append(f"client.id: MM2 {value!r}, here {ours[key]!r}")
            continue
        if key in MM2_CLIENT_DEFAULTS and key not in ours:
            continue
        if ours.get(key) != value:
            differences.append(f"{key}: MM2 {value!r}, here {ours.get(key)!r}")
    differences += [f"{key}: here {value!r}, MM2 has none" for key, value in ours.items() if key not in theirs]
    return differences


def compare_flow(
    flow: FlowConfig, theirs: Mapping[str, Any], mirror: MirrorConfig, raw: Mapping[str, str], topics: list[str]
) -> list[str]:
    """Differences between this product's flow and MM2's, for a flow both run."""
    out: list[str] = []

    def check(what: str, ours: Any, mm2: Any) -> None:
        if isinstance(ours, list) and isinstance(mm2, list) and ours != mm2:
            only_mm2, only_here = sorted(set(mm2) - set(ours)), sorted(set(ours) - set(mm2))
            out.append(f"{flow.name} {what}: only MM2 {only_mm2}, only here {only_here}")
        elif ours != mm2:
            out.append(f"{flow.name} {what}: MM2 {mm2!r}, here {ours!r}")

    policy = flow.policy()
    check("policy", flow.settings.replication_policy_class, theirs["replication_policy_class"])
    if theirs.get("replication_policy_separator") is not None:
        check("separator", flow.settings.replication_policy_separator, theirs["replication_policy_separator"])
    check("offset-syncs topic", flow.offset_syncs_topic(), theirs["offset_syncs_topic"])
    check("checkpoints topic", policy.checkpoints_topic(flow.source), theirs["checkpoints_topic"])
    check("heartbeats topic", policy.heartbeats_topic(), theirs["heartbeats_topic"])
    selector = flow.topic_selector()
    check("topics replicated", [t for t in topics if selector.should_replicate(t)], theirs["topics_replicated"])
    check(
        "remote names",
        sorted(f"{t} -> {policy.format_remote_topic(flow.source, t)}" for t in theirs["topics_replicated"]),
        sorted(f"{t} -> {remote}" for t, remote in theirs["topics_remote_names"].items()),
    )
    groups = flow.group_filter()
    check("groups replicated", [g for g in GROUPS if groups.matches(g)], theirs["groups_replicated"])
    props = flow.config_property_filter()
    check(
        "topic configs replicated",
        [p for p in TOPIC_CONFIGS if props.matches(p)],
        theirs["config_properties_replicated"],
    )
    check(
        "emits heartbeats",
        flow.emits_heartbeats,
        bool(theirs["in_cluster_pairs"] and theirs["emit_heartbeats_enabled"]),
    )
    check("emits checkpoints", flow.settings.emit_checkpoints_enabled, theirs["emit_checkpoints_enabled"])
    settings = theirs["settings"]
    for key, field_name in SETTINGS.items():
        if key in settings:
            check(key, getattr(flow.settings, field_name), settings[key])
    for key, (enabled_field, interval_field) in INTERVALS.items():
        if key in settings:
            check(key, _ours_interval(flow, enabled_field, interval_field), max(-1, settings[key]))  # < 0: off
    if "use.defaults.from" in settings:
        check("use.defaults.from", flow.settings.use_defaults_from, settings["use.defaults.from"])
    skip = _flow_client_keys(raw, flow)
    clients = theirs["clients"]
    source, target = mirror.cluster(flow.source), mirror.cluster(flow.target)
    roles = {
        "source_consumer": source.role_settings("consumer"),
        "source_admin": source.role_settings("admin"),
        "target_admin": target.role_settings("admin"),
        "offset_syncs_producer": mirror.cluster(flow.offset_syncs_cluster()).role_settings("producer"),
    }
    for role, ours in roles.items():
        if role in clients:
            out += [f"{flow.name} {role} {d}" for d in client_differences(ours, clients[role], skip)]
    out += [
        f"{flow.name} data producer {d}"
        for d in client_differences(target.role_settings("producer"), theirs["worker_task_producer"], skip)
    ]
    for role, ours_servers in (
        ("source_consumer", source.bootstrap_servers),
        ("target_admin", target.bootstrap_servers),
    ):
        if role in clients:
            check(
                f"{role} bootstrap.servers",
                list(ours_servers),
                re.split(r"\s*,\s*", clients[role]["bootstrap.servers"].strip()),
            )
    return out


@dataclass(frozen=True)
class Outcome:
    """What became of one file: ``same`` (both run it alike), ``refused-by-both``, ``refused-here``, or
    ``different`` (a failure); ``detail`` says why, ``flows`` how many enabled flows were compared in full."""

    status: str
    detail: str
    flows: int = 0


def environment() -> dict[str, str]:
    """The process environment with the corpus's provider variables set to ``ENV`` (and no other SMM_CORPUS_*)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SMM_CORPUS_")}, **ENV}


def mm2_reading(files: list[Path]) -> dict[str, Any]:
    topics = topic_names(_aliases(files))
    results = harness.dump([f.relative_to(ROOT) for f in files], topics, GROUPS, TOPIC_CONFIGS, env=environment())
    return {"topics": topics, "files": results}


def outcome(path: Path, theirs: Mapping[str, Any], topics: list[str]) -> Outcome:
    """Compare one file (the caller has the repository root as working directory and ``ENV`` set)."""
    try:
        ours: MirrorConfig | None = mm2_config.load(path)
        problems: list[str] = []
    except ConfigError as exc:
        ours, problems = None, exc.problems
    if "error" in theirs:
        if ours is None:
            return Outcome("refused-by-both", f"MM2: {theirs['error']}")
        return Outcome("different", f"MM2 refuses it ({theirs['error']}); this product accepts it")
    if ours is None:
        refusals = _refusals(theirs)
        reason = DELIBERATE.get(path.name)
        if reason:
            return Outcome("refused-here", f"deliberately: {reason}")
        if refusals:
            return Outcome("refused-here", f"MM2 would not run it either: {refusals[0]}")
        return Outcome("different", f"MM2 runs it fully; this product refuses it: {problems}")
    raw = properties.load(properties.decode(path.read_bytes()))
    differences: list[str] = []
    if set(ours.clusters) != set(theirs["clusters"]):
        differences.append(f"clusters: MM2 {theirs['clusters']}, here {list(ours.clusters)}")
    pairs = {f.name for f in ours.flows if f.in_cluster_pairs}
    if pairs != set(theirs["pairs"]):
        differences.append(f"cluster pairs: MM2 {sorted(theirs['pairs'])}, here {sorted(pairs)}")
    compared = 0
    for flow in ours.flows:
        mm2_flow = theirs["flows"][flow.name]
        if flow.enabled != mm2_replicates(mm2_flow):
            differences.append(f"{flow.name} enabled: MM2 {mm2_replicates(mm2_flow)}, here {flow.enabled}")
        elif flow.enabled:
            differences += compare_flow(flow, mm2_flow, ours, raw, topics)
            compared += 1
    if differences:
        return Outcome("different", "\n  ".join(differences), compared)
    return Outcome("same", f"{len(ours.flows)} flows, {compared} enabled and compared in full", compared)


def report(out: Path = ROOT / "docs" / "mm2-corpus.md") -> None:
    """Run the corpus through both readers and write the table, with the counts, to ``out``."""
    files = corpus()
    reading = mm2_reading(files)
    previous = os.getcwd()
    saved = dict(os.environ)
    os.chdir(ROOT)
    os.environ.clear()
    os.environ.update(environment())
    try:
        outcomes = {f: outcome(f, reading["files"][str(f.relative_to(ROOT))], reading["topics"]) for f in files}
    finally:
        os.chdir(previous)
        os.environ.clear()
        os.environ.update(saved)
    counts = {s: sum(o.status == s for o in outcomes.values()) for s in ("same", "refused-by-both", "refused-here")}
    lines = [
        "# The mm2.properties corpus, read by MirrorMaker 2 and by Serverless MirrorMaker",
        "",
        f"Written by `make mm2-report` (`python -m tests.mm2.compare`) from the {len(files)} files of",
        "`tests/mm2/corpus/` (origins in its README); `tests/mm2/test_differential.py` asserts the same outcomes.",
        "",
        f"- accepted, with the same effective configuration as MM2's: {counts['same']}"
        f" ({sum(o.flows for o in outcomes.values())} enabled flows compared in full)",
        f"- refused by both: {counts['refused-by-both']}",
        f"- refused here, where MM2 stops or drops the flow too, or deliberately: {counts['refused-here']}",
        f"- different: {sum(o.status == 'different' for o in outcomes.values())}",
        "",
        "| file | outcome | detail |",
        "|---|---|---|",
    ]
    for path, result in outcomes.items():
        detail = result.detail.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| `{path.name}` | {result.status} | {detail} |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {counts}")


if __name__ == "__main__":
    report()
