"""``smm translate-offsets | failover | status | topology``: the failover tooling MM2 only offers as a Java API.

Everything is read from the internal topics (checkpoints, offset syncs, heartbeats) and the consumer groups, so
the commands work against clusters MM2 itself replicates, too. ``failover`` writes nothing unless every group
it would move passes every check; its exit code is 1 when it refuses, so scripts can gate a cut-over on it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from functions.checkpoints.checkpoints import CheckpointTask
from shared.cli.config_file import load
from shared.kafka.clients import ClusterError, KafkaClients
from shared.kafka.groups import (
    GroupInfo,
    alter_offsets,
    committed_offsets,
    group_offsets,
    list_groups,
    read_range,
    read_tail,
    read_topic,
)
from shared.kafka.mirror_client import CheckpointRecord, MirrorClient
from shared.mm2.config import FlowConfig, MirrorConfig
from shared.mm2.formats import Checkpoint, Heartbeat
from shared.mm2.gaps import GapEvent, GapSummary, gaps_topic
from shared.mm2.offset_sync_store import Lookup

HEARTBEAT_TAIL = 200  # offsets per partition read back to find a flow's newest heartbeat
CHECKPOINT_TAIL = 50  # the checkpoints topic is transactional: its last offsets are commit markers


def add_commands(subparsers: Any) -> None:
    """Register the commands on ``smm``'s subparsers."""
    t = subparsers.add_parser("translate-offsets", help="where consumer groups of one cluster resume on another")
    _flow_arguments(t)
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=cmd_translate_offsets)

    f = subparsers.add_parser("failover", help="move idle consumer groups to their translated offsets on --to")
    _flow_arguments(f)
    f.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")
    f.add_argument(
        "--exact",
        action="store_true",
        help="planned migration: refuse unless the flow has drained and every translation is exact",
    )
    f.add_argument("--json", action="store_true", help="print JSON instead of text")
    f.set_defaults(func=cmd_failover)

    s = subparsers.add_parser("status", help="per flow: topics, record lag, heartbeat and checkpoint age")
    s.add_argument("config")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_status)

    g = subparsers.add_parser("topology", help="print the flows as a Mermaid graph")
    g.add_argument("config")
    g.set_defaults(func=cmd_topology)


def _flow_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config")
    p.add_argument("--from", dest="source", required=True, help="cluster the groups consumed on")
    p.add_argument("--to", dest="target", required=True, help="cluster they move to")
    p.add_argument("--group", default=".*", type=_regex, help="only groups matching this regex (whole name)")


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"--group {value!r} is not a valid regular expression ({exc})") from None


def _age(now_ms: int, timestamp_ms: int | None) -> float | None:
    return None if timestamp_ms is None else round(max(0, now_ms - timestamp_ms) / 1000, 1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# --- translate-offsets -----------------------------------------------------------------------------------


def translations(
    mirror_config: MirrorConfig, clients: KafkaClients, source: str, target: str, groups: re.Pattern[str]
) -> dict[str, dict[TopicPartition, CheckpointRecord]]:
    """Newest checkpoints of matching groups: where each resumes on ``target`` after consuming on ``source``."""
    flow = mirror_config.flow(source, target)
    return MirrorClient(clients, target, flow.policy()).checkpoints(source, lambda g: groups.fullmatch(g) is not None)


def cmd_translate_offsets(args: argparse.Namespace) -> int:
    mirror_config = load(args.config)
    clients = KafkaClients(mirror_config, client_id="smm-cli")
    try:
        found = translations(mirror_config, clients, args.source, args.target, args.group)
    finally:
        clients.close()
    now = _now_ms()
    rows = [
        {
            "group": group,
            "topic": tp.topic,
            "partition": tp.partition,
            "upstreamOffset": entry.checkpoint.upstream_offset,
            "offset": entry.checkpoint.downstream_offset,
            "metadata": entry.checkpoint.metadata,
            "checkpointAgeSeconds": _age(now, entry.timestamp),
        }
        for group, partitions in sorted(found.items())
        for tp, entry in sorted(partitions.items())
    ]
    if args.json:
        _print_json({"from": args.source, "to": args.target, "offsets": rows})
        return 0
    if not rows:
        print(f"no checkpoints for groups matching {args.group.pattern!r} from {args.source} on {args.target}")
        return 0
    _table(
        ["group", "topic", "partition", f"offset on {args.source}", f"offset on {args.target}", "checkpoint age"],
        [
            [r["group"], r["topic"], r["partition"], r["upstreamOffset"], r["offset"], f"{r['checkpointAgeSeconds']}s"]
            for r in rows
        ],
    )
    return 0


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --- failover --------------------------------------------------------------------------------------------


@dataclass
class Move:
    """One partition of a group: its checkpoint and what the group has on the target now."""

    topic: str
    partition: int
    upstream_offset: int
    offset: int
    current: int | None
    metadata: str = ""  # the checkpoint's: written with the offset, as MM2 does

    @property
    def action(self) -> str:
        return "write" if self.current is None or self.offset > self.current else "keep"


@dataclass
class GroupPlan:
    group: str
    state: str
    checkpoint_age_seconds: float | None
    moves: list[Move] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def writes(self) -> dict[TopicPartition, tuple[int, str]]:
        return {TopicPartition(m.topic, m.partition): (m.offset, m.metadata) for m in self.moves if m.action == "write"}


@dataclass
class FailoverPlan:
    source: str
    target: str
    exact: bool
    groups: list[GroupPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(g.problems for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        groups = []
        for g in self.groups:
            entry = asdict(g)
            entry["moves"] = [{**asdict(m), "action": m.action} for m in g.moves]
            groups.append(entry)
        return {
            "from": self.source,
            "to": self.target,
            "exact": self.exact,
            "ok": self.ok,
            "groups": groups,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def plan_failover(
    mirror_config: MirrorConfig,
    clients: KafkaClients,
    source: str,
    target: str,
    groups: re.Pattern[str] = re.compile(".*"),
    exact: bool = False,
) -> FailoverPlan:
    """What failover would write, and every reason to refuse: active groups, stale checkpoints, inexactness."""
    flow = mirror_config.flow(source, target)
    plan = FailoverPlan(source, target, exact)

    def matches(group: str) -> bool:
        return groups.fullmatch(group) is not None

    checkpoints = MirrorClient(clients, target, flow.policy()).checkpoints(source, matches)
    target_groups = list_groups(clients, target)
    task = CheckpointTask(flow, clients)
    live: _LiveCheck | None
    try:
        live = _live_check(task, clients, matches, exact)
    except (ClusterError, KafkaError) as exc:
        live = None
        if exact:
            plan.problems.append(f"--exact needs cluster {source!r} to check the drain, and it failed: {exc}")
        else:
            plan.warnings.append(
                f"cannot check on {source!r} that the checkpoints are current ({exc}); using them as they are"
            )
    finally:
        task.close()
    names = sorted(set(checkpoints) | (set(live.problems) if live is not None else set()))
    if not names:
        plan.problems.append(
            f"no checkpoints for groups matching {groups.pattern!r} in "
            f"{flow.policy().checkpoints_topic(source)!r} on {target!r}"
        )
    now = _now_ms()
    for group in names:
        found = checkpoints.get(group, {})
        newest = max((e.timestamp for e in found.values()), default=None)
        info = target_groups.get(group, GroupInfo(group))
        gp = GroupPlan(group, info.state if group in target_groups else "absent", _age(now, newest))
        if not info.idle:
            gp.problems.append(
                f"group {group!r} is active on {target!r} (state {info.state}): stop its consumers there first"
            )
        if live is not None:
            gp.problems.extend(live.problems.get(group, []))
        current = group_offsets(clients, target, group) if found else {}
        for tp, entry in sorted(found.items()):
            c = entry.checkpoint
            gp.moves.append(
                Move(tp.topic, tp.partition, c.upstream_offset, c.downstream_offset, current.get(tp), c.metadata)
            )
        plan.groups.append(gp)
    return plan


@dataclass
class _LiveCheck:
    """Per group, why its checkpoints cannot be used as they are (stale, or not exact with ``--exact``)."""

    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, group: str, problem: str) -> None:
        self.problems.setdefault(group, []).append(problem)


def _live_check(task: CheckpointTask, clients: KafkaClients, matches: Callable[[str], bool], exact: bool) -> _LiveCheck:
    """Compare the checkpoints with what the checkpoint task would emit now from the source's groups."""
    check = _LiveCheck()
    flow: FlowConfig = task.flow
    interval = flow.settings.emit_checkpoints_interval_seconds
    pending = task.pending(groups=matches)
    for c in pending:
        last = task.checkpoints.last(c.group, c.topic, c.partition)
        was = "none" if last is None else f"{last.downstream_offset} (for {last.upstream_offset})"
        check.add(
            c.group,
            f"checkpoints of group {c.group!r} are stale: {c.topic}-{c.partition} has {was}, the group's offset "
            f"{c.upstream_offset} on {flow.source!r} now translates to {c.downstream_offset}; run the checkpoint "
            f"function (emit.checkpoints.interval.seconds={interval}) and retry",
        )
    if exact:
        groups = task.source_groups(matches)
        for group, offsets in committed_offsets(clients, flow.source, groups).items():
            for tp, (upstream, _) in sorted(offsets.items()):
                problem = _exactness(task, clients, tp, upstream)
                live = task.translate(group, tp, upstream)
                if not problem and live is not None and live not in pending:
                    problem = _differs(task, live)
                if problem:
                    check.add(group, problem)
    return check


def _differs(task: CheckpointTask, live: Checkpoint) -> str | None:
    """Why the group's checkpoint is not ``live``, the exact translation of its position, or None.

    Happens when the offset syncs were reset (say, the remote topic was recreated): checkpoints never step back,
    so the old, higher checkpoint stays and no exact one can be written.
    """
    last = task.checkpoints.last(live.group, live.topic, live.partition)
    if last is not None and last.downstream_offset == live.downstream_offset:
        return None
    has = "none" if last is None else str(last.downstream_offset)
    return (
        f"{live.topic}-{live.partition}: the checkpoint says {has}, but offset {live.upstream_offset} now translates "
        f"to {live.downstream_offset} (the offset syncs were reset, and checkpoints never step back); it cannot "
        "be cut over exactly: drop --exact"
    )


def _exactness(task: CheckpointTask, clients: KafkaClients, tp: TopicPartition, position: int) -> str | None:
    """Why the translation of ``position`` on source partition ``tp`` may not be exact; None when it is.

    Exact means: the flow that copied the partition has drained it (its ESM group is at the end and the newest
    offset sync is for the last record), and the position is a synced record or lies past the newest sync.
    """
    if task.selector.should_replicate(tp.topic):
        view, copier, topic, inverse = task.syncs, task.flow, tp.topic, False
    else:
        origin = task.failback_topic(tp.topic)
        if origin is None or task.reverse is None:
            return None  # not a topic this flow translates: nothing moves for it
        view, copier, topic, inverse = task.reverse_view(), task.reverse, origin, True
    where = f"{tp.topic}-{tp.partition}"
    newest = view.store.newest(topic, tp.partition)
    if newest is None:
        return None if position == 0 else f"{where}: no offset syncs, so offset {position} cannot be translated"
    found: Lookup | None = (
        view.store.lookup_upstream(topic, tp.partition, position)
        if inverse
        else view.store.lookup_downstream(topic, tp.partition, position)
    )
    if found is None:
        return f"{where}: offset {position} is older than the oldest offset sync kept; it cannot be translated"
    drain = _drain_problem(clients, copier, TopicPartition(topic, tp.partition), newest.upstream_offset)
    if drain:
        return drain
    synced = found.sync.downstream_offset if inverse else found.sync.upstream_offset
    if synced == position or found.sync == newest:
        return None
    return (
        f"{where}: offset {position} lies after the offset sync for {synced}, so its translation may re-deliver "
        f"up to {position - synced - 1} record(s); let the group consume to the end of the topic first, or drop "
        "--exact"
    )


def _drain_problem(clients: KafkaClients, copier: FlowConfig, tp: TopicPartition, newest_synced: int) -> str | None:
    """Why ``copier`` has not provably mirrored all of ``tp`` (on its source), or None when it has."""
    end = clients.latest_offsets(copier.source, [tp])[tp]
    mirrored = group_offsets(clients, copier.source, copier.consumer_group_id(tp.topic)).get(tp)
    where = f"{tp.topic}-{tp.partition} on {copier.source!r}"
    if mirrored is None or mirrored < end:
        return (
            f"flow {copier.name} has not drained {where}: mirrored up to {mirrored if mirrored is not None else 0} "
            f"of {end}; stop the producers and wait until `smm status` shows lag 0"
        )
    if newest_synced < end - 1:
        after = read_range(clients, copier.source, {tp: newest_synced + 1}, {tp: end})
        if after:
            return (
                f"the newest offset sync of {where} is for offset {newest_synced}, but record {after[-1].offset} "
                "follows it; wait for the mirror to write its offset syncs"
            )
    return None


def apply_failover(clients: KafkaClients, plan: FailoverPlan) -> list[str]:
    """Write the plan's forward moves; returns the groups written. Refuses a plan with problems."""
    if not plan.ok:
        raise ClusterError("refusing to apply a failover plan with problems")
    written = []
    for gp in plan.groups:
        writes = gp.writes()
        if writes:
            alter_offsets(clients, plan.target, gp.group, writes)
            written.append(gp.group)
    return written


def cmd_failover(args: argparse.Namespace) -> int:
    mirror_config = load(args.config)
    clients = KafkaClients(mirror_config, client_id="smm-cli")
    try:
        plan = plan_failover(mirror_config, clients, args.source, args.target, args.group, args.exact)
        written = apply_failover(clients, plan) if plan.ok and not args.dry_run else []
    finally:
        clients.close()
    if args.json:
        _print_json({**plan.as_dict(), "dryRun": args.dry_run, "written": written})
    else:
        _print_plan(plan, args.dry_run, written)
    return 0 if plan.ok else 1


def _print_plan(plan: FailoverPlan, dry_run: bool, written: list[str]) -> None:
    mode = " (dry run)" if dry_run else ""
    kind = "exact " if plan.exact else ""
    print(f"{kind}failover {plan.source} -> {plan.target}{mode}: {len(plan.groups)} group(s)")
    for warning in plan.warnings:
        print(f"  warning: {warning}")
    for gp in plan.groups:
        age = "no checkpoints" if gp.checkpoint_age_seconds is None else f"checkpoints {gp.checkpoint_age_seconds}s old"
        print(f"  group {gp.group} (on {plan.target}: {gp.state}; {age})")
        for m in gp.moves:
            has = "nothing" if m.current is None else str(m.current)
            print(
                f"    {m.topic}-{m.partition}: {m.upstream_offset} on {plan.source} -> {m.offset} on {plan.target} "
                f"({plan.target} has {has}): {m.action}"
            )
        for problem in gp.problems:
            print(f"    REFUSED: {problem}")
    for problem in plan.problems:
        print(f"  REFUSED: {problem}")
    if not plan.ok:
        print("nothing was written: fix the problems above and run it again", file=sys.stderr)
    elif dry_run:
        print("nothing was written (dry run)")
    else:
        print(f"written: {', '.join(written) or 'nothing (every group was already at or past its checkpoints)'}")


# --- status ----------------------------------------------------------------------------------------------


def flow_status(clients: KafkaClients, flow: FlowConfig) -> dict[str, Any]:
    """Topics, record lag (the mirror's ESM groups on the source), heartbeat and checkpoint age of a flow."""
    policy = flow.policy()
    selector = flow.topic_selector()
    remote_topics = set(clients.topics(flow.target))
    topics = [t for t in clients.topics(flow.source) if selector.should_replicate(t)]
    if not flow.settings.heartbeats_replication_enabled:
        topics = [t for t in topics if not policy.is_heartbeats_topic(t)]
    rows = [_topic_lag(clients, flow, t, policy.format_remote_topic(flow.source, t) in remote_topics) for t in topics]
    now = _now_ms()
    heartbeats_topic = policy.heartbeats_topic()
    heartbeats = _newest_heartbeat(clients, flow.target, heartbeats_topic, (flow.source, flow.target))
    mirrored_topic = policy.format_remote_topic(flow.source, heartbeats_topic)
    mirrored = _newest_heartbeat(clients, flow.target, mirrored_topic, None)
    checkpoints_topic = policy.checkpoints_topic(flow.source)
    tail = read_tail(clients, flow.target, checkpoints_topic, CHECKPOINT_TAIL)
    checkpoint = max((r.timestamp for r in tail), default=None)
    return {
        "flow": flow.name,
        "target": flow.target,
        "topics": rows,
        "lag": sum(r["lag"] for r in rows),
        "heartbeatsTopic": heartbeats_topic,
        "heartbeatAgeSeconds": _age(now, heartbeats),
        "mirroredHeartbeatsTopic": mirrored_topic,
        "mirroredHeartbeatAgeSeconds": _age(now, mirrored),
        "checkpointsTopic": checkpoints_topic,
        "checkpointAgeSeconds": _age(now, checkpoint),
        "gaps": _gaps(clients, flow),
    }


def _gaps(clients: KafkaClients, flow: FlowConfig) -> dict[str, Any]:
    """Gaps the mirror recorded in ``mm2-gaps.<source>.internal`` on the target (records lost upstream)."""
    topic = gaps_topic(flow)
    batch = read_topic(clients, flow.target, topic)
    events = [GapEvent.deserialize(r.value) for r in batch.records if r.value]
    summary = GapSummary.of(events)
    newest = summary.newest
    return {
        "topic": topic,
        "events": summary.events,
        "lostRecords": summary.lost_records,
        "newest": None if newest is None else asdict(newest),
    }


def _topic_lag(clients: KafkaClients, flow: FlowConfig, topic: str, remote_exists: bool) -> dict[str, Any]:
    info = clients.topic_info(flow.source, topic)
    tps = [TopicPartition(topic, p) for p in range(info.partitions if info else 0)]
    ends = clients.latest_offsets(flow.source, tps)
    starts = clients.earliest_offsets(flow.source, tps)
    committed = group_offsets(clients, flow.source, flow.consumer_group_id(topic))
    lag = sum(max(0, ends[tp] - committed.get(tp, starts[tp])) for tp in tps)
    return {
        "topic": topic,
        "remoteTopic": flow.policy().format_remote_topic(flow.source, topic),
        "remoteExists": remote_exists,
        "partitions": len(tps),
        "lag": lag,
        "started": bool(committed),
    }


def _newest_heartbeat(clients: KafkaClients, alias: str, topic: str, pair: tuple[str, str] | None) -> int | None:
    """Timestamp of the newest heartbeat in ``topic`` (of ``pair`` = (source, target) when given)."""
    newest: int | None = None
    for record in read_tail(clients, alias, topic, HEARTBEAT_TAIL):
        beat = Heartbeat.parse(record.key, record.value)
        if beat is None:
            continue
        if pair is None or (beat.source_cluster_alias, beat.target_cluster_alias) == pair:
            newest = max(newest or beat.timestamp, beat.timestamp)
    return newest


def cmd_status(args: argparse.Namespace) -> int:
    mirror_config = load(args.config)
    clients = KafkaClients(mirror_config, client_id="smm-cli")
    statuses: list[dict[str, Any]] = []
    try:
        for flow in mirror_config.enabled_flows():
            try:
                statuses.append(flow_status(clients, flow))
            except ClusterError as exc:
                statuses.append({"flow": flow.name, "error": str(exc)})
    finally:
        clients.close()
    if args.json:
        _print_json({"flows": statuses})
    else:
        if not statuses:
            print("no flow is enabled (set A->B.enabled = true)")
        for status in statuses:
            _print_status(status)
    return 1 if any("error" in s for s in statuses) else 0


def _print_status(status: dict[str, Any]) -> None:
    print(f"flow {status['flow']}")
    if "error" in status:
        print(f"  error       {status['error']}")
        return

    def ago(key: str, topic: str) -> str:
        age, where = status[key], f"{status[topic]} on {status['target']}"
        return f"none yet ({where})" if age is None else f"{age}s ago ({where})"

    topics = status["topics"]
    described = ", ".join(
        f"{t['topic']} ({t['partitions']} partition(s), lag {t['lag']}{'' if t['started'] else ', not started'})"
        for t in topics
    )
    print(f"  topics      {len(topics)} mirrored{': ' + described if topics else ''}")
    print(f"  record lag  {status['lag']}")
    print(f"  heartbeats  emitted {ago('heartbeatAgeSeconds', 'heartbeatsTopic')}")
    print(f"              mirrored {ago('mirroredHeartbeatAgeSeconds', 'mirroredHeartbeatsTopic')}")
    print(f"  checkpoint  last {ago('checkpointAgeSeconds', 'checkpointsTopic')}")
    gaps = status["gaps"]
    newest = gaps["newest"]
    where = (
        f"; newest {newest['topic']}-{newest['partition']} offsets {newest['expected_offset']}.."
        f"{newest['first_offset'] - 1}"
        if newest
        else ""
    )
    print(f"  gaps        {gaps['events']} ({gaps['lostRecords']} records lost upstream{where})")


# --- topology --------------------------------------------------------------------------------------------


def topology(mirror_config: MirrorConfig, clients: KafkaClients | None) -> str:
    """The enabled flows as a Mermaid flowchart: clusters as subgraphs, topics and remote topics as nodes.

    With ``clients`` the nodes are the topics that exist and match; a cluster that cannot be reached (or no
    clients) shows the flow's topic patterns instead.
    """
    nodes: dict[str, dict[str, str]] = {alias: {} for alias in mirror_config.clusters}
    edges: list[tuple[str, str, str]] = []

    def node(alias: str, label: str) -> str:
        ids = nodes.setdefault(alias, {})
        if label not in ids:
            ids[label] = f"{_mermaid_id(alias)}_{len(ids)}"
        return ids[label]

    for flow in mirror_config.enabled_flows():
        for source_label, target_label in _flow_topics(flow, clients):
            edges.append((node(flow.source, source_label), node(flow.target, target_label), flow.name))
    lines = ["flowchart LR"]
    for alias, ids in nodes.items():
        lines.append(f'  subgraph {_mermaid_id(alias)}["{_mermaid_text(alias)}"]')
        lines.extend(f'    {node_id}["{_mermaid_text(label)}"]' for label, node_id in ids.items())
        lines.append("  end")
    lines.extend(f'  {a} -->|"{_mermaid_text(label)}"| {b}' for a, b, label in edges)
    return "\n".join(lines)


def _flow_topics(flow: FlowConfig, clients: KafkaClients | None) -> Iterable[tuple[str, str]]:
    policy = flow.policy()
    if clients is not None:
        try:
            selector = flow.topic_selector()
            topics = [t for t in clients.topics(flow.source) if selector.should_replicate(t)]
            return [(t, policy.format_remote_topic(flow.source, t)) for t in topics]
        except ClusterError:
            pass
    patterns = ", ".join(flow.settings.topics)
    return [(f"topics: {patterns}", policy.format_remote_topic(flow.source, f"({patterns})"))]


def _mermaid_id(text: str) -> str:
    return "c_" + re.sub(r"[^A-Za-z0-9_]", "_", text)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def cmd_topology(args: argparse.Namespace) -> int:
    mirror_config = load(args.config)
    clients = KafkaClients(mirror_config, client_id="smm-cli")
    try:
        print(topology(mirror_config, clients))
    finally:
        clients.close()
    return 0
