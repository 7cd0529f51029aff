"""Config sync for one flow: MM2's ``MirrorSourceConnector`` housekeeping without Connect.

Each run does the jobs that are due, each at its own MM2 interval:

- **topics** (``refresh.topics.interval.seconds``): find the source topics the flow mirrors, create missing
  remote topics with the source's partition count, ``replication.factor`` and synced configs, grow remote
  topics whose source grew (never shrink), and keep one event-source mapping per mirrored topic;
- **configs** (``sync.topic.configs.interval.seconds``): bring the remote topics' configs to the source's,
  compared with the target's current configs each time (so drift made by hand on the target is undone);
- **ACLs** (``sync.topic.acls.interval.seconds``): copy topic ACLs by MM2's rules, again against the target's
  current ACLs.

It also creates MM2's internal topics. What it applied is recorded per topic in the flow's state topic
(``rules.state_topic``), so a run after a cold start compares against that and writes nothing that is
already in place; two runs at once only repeat idempotent writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from kafka import TopicPartition

from functions.config_sync import rules
from functions.config_sync.state import ESM_NONE, StateStore, TopicState
from shared.aws.esm import EsmChanges, EsmError, EsmReconciler
from shared.kafka import admin_sync as admin
from shared.kafka import source_offsets
from shared.kafka.clients import ClusterError, KafkaClients
from shared.kafka.groups import alter_offsets, committed_offsets
from shared.mm2.config import FlowConfig

logger = Logger(service="smm-config-sync")

TOPICS, CONFIGS, ACLS = "topics", "configs", "acls"
# A job is due this close to its interval, so a scheduler firing at exactly that interval never skips a turn.
DUE_TOLERANCE = 0.1

T = TypeVar("T")


class ConfigSyncError(ClusterError):
    """One or more jobs of a run failed; the others ran. The message lists each failure."""


class ConfigSyncTask:
    """The scheduled config-sync role of one flow (``functions.scheduled.ScheduledTask``)."""

    name = "config-sync"

    def __init__(
        self,
        flow: FlowConfig,
        clients: KafkaClients,
        reconciler: EsmReconciler | None = None,
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flow = flow
        self.clients = clients
        self.reconciler = reconciler
        self.policy = flow.policy()
        self.state = StateStore(clients, rules.state_topic(flow))
        self._clock = clock
        s = flow.settings
        refresh = refresh_seconds if refresh_seconds is not None else float(s.refresh_topics_interval_seconds)
        # job -> interval, only for the enabled jobs; topics are always discovered on a task's first run.
        self.intervals: dict[str, float] = {}
        if s.refresh_topics_enabled:
            self.intervals[TOPICS] = refresh
        if s.sync_topic_configs_enabled:
            self.intervals[CONFIGS] = float(s.sync_topic_configs_interval_seconds)
        if s.sync_topic_acls_enabled:
            self.intervals[ACLS] = float(s.sync_topic_acls_interval_seconds)
        self._fallback_interval = refresh
        self._last_run: dict[str, float] = {}
        self._mirrored: dict[str, int] | None = None  # source topic -> partitions, from the last discovery
        self._no_authorizer_logged = False

    # --- ScheduledTask ------------------------------------------------------------------------------------

    def interval_seconds(self) -> float:
        return min(self.intervals.values(), default=self._fallback_interval)

    def run_once(self) -> dict[str, Any]:
        started = self._clock()
        summary: dict[str, Any] = {"flow": self.flow.name}
        failures: list[str] = []
        self._ensure_internal_topics()
        self.state.load()
        for job, run in ((TOPICS, self._sync_topics), (CONFIGS, self._sync_configs), (ACLS, self._sync_acls)):
            if not self._due(job, started):
                continue
            try:
                summary.update(run())
            except (ClusterError, EsmError, OSError) as exc:
                failures.append(f"{job}: {exc}")
                logger.error("config sync job failed", extra={"flow": self.flow.name, "job": job, "error": str(exc)})
                continue
            self._last_run[job] = started
        summary["stateWrites"] = self.state.flush()
        summary["topics"] = len(self._mirrored or {})
        summary["changed"] = any(summary.get(k) for k in ("created", "grown", "configsAltered", "aclsCreated", "esm"))
        if failures:
            raise ConfigSyncError(f"config sync of flow {self.flow.name} failed:\n  " + "\n  ".join(failures))
        if summary["changed"]:
            logger.info("config sync applied changes", extra={"summary": summary})
        return summary

    def close(self) -> None:
        self.state.close()

    # --- jobs --------------------------------------------------------------------------------------------

    def _due(self, job: str, now: float) -> bool:
        if job == TOPICS and self._mirrored is None:
            return True
        if job not in self.intervals:
            return False
        last = self._last_run.get(job)
        interval = self.intervals[job]
        return last is None or now - last >= interval * (1 - DUE_TOLERANCE)

    def _sync_topics(self) -> dict[str, Any]:
        """Discover, create, grow, and keep the ESMs in step (MM2's ``refreshTopicPartitions``)."""
        states = self.state.current()
        source, target = self.flow.source, self.flow.target
        all_source = admin.partition_counts(self.clients, source)
        mirrored = {t: all_source[t] for t in rules.mirrored_topics(self.flow, all_source)}
        remote_names = {t: self._remote(t) for t in mirrored}
        remote_counts = admin.partition_counts(self.clients, target, remote_names.values())
        missing = [t for t in mirrored if remote_names[t] not in remote_counts]
        grow = {remote_names[t]: n for t, n in mirrored.items() if remote_names[t] in remote_counts}
        grow = {r: n for r, n in grow.items() if remote_counts[r] < n}
        # Configs go with creation (as MM2 does); a remote topic that exists with no record of its configs
        # (made by the mirror before this ran) gets them now rather than one config interval later.
        unsynced = [t for t in mirrored if t not in missing and (t not in states or states[t].configs is None)]
        needs_plan = missing + (unsynced if self.flow.settings.sync_topic_configs_enabled else [])
        plans = self._plans(needs_plan)
        missing = [t for t in missing if t in plans]  # a topic deleted since it was listed is left for later
        new_topics = {
            remote_names[t]: admin.NewTopic(mirrored[t], self.flow.settings.replication_factor, plans[t].set)
            for t in missing
        }
        # One failing step must not hold up the others (nor the ESMs of topics that are fine): collect, go on,
        # and fail the job at the end so the scheduler reports it and the next run retries.
        problems: list[str] = []
        created: list[str] = _attempt(problems, [], admin.create_topics, self.clients, target, new_topics)
        grown = _attempt(problems, False, _succeeds, admin.grow_partitions, self.clients, target, grow)
        unsynced_plans = {t: plans[t] for t in unsynced if t in plans}
        altered = _attempt(problems, None, self._apply_configs, unsynced_plans)
        self._mirrored = mirrored
        new = [t for t in mirrored if t not in states]
        if new:
            _attempt(problems, None, self._continue_from_mm2, new)
        esm: EsmChanges | None = None
        if self.reconciler is not None:
            esm = _attempt(problems, None, self.reconciler.reconcile, list(mirrored), list(all_source))
        # Only what did happen is recorded: a failed step is retried (and recorded) on the next run.
        applied = _Applied(
            partitions={t: n for t, n in mirrored.items() if grown or remote_names[t] not in grow},
            plans={t: plans[t] for t in missing} | (unsynced_plans if altered is not None else {}),
            in_place={t for t in mirrored if remote_names[t] in remote_counts or remote_names[t] in created},
        )
        self._record_topics(mirrored, all_source, remote_names, remote_counts, applied, esm)
        if problems:
            raise ConfigSyncError("\n".join(problems))
        result: dict[str, Any] = {"created": created, "grown": grow if grown else {}, "configsAltered": altered or {}}
        if esm:
            result["esm"] = esm.as_dict()
        if esm is not None:
            result["mappingsNotPolling"] = esm.not_polling
            for topic, why in esm.not_polling.items():
                logger.warning(
                    "event-source mapping does not poll", extra={"flow": self.flow.name, "topic": topic, "state": why}
                )
        return result

    def _sync_configs(self) -> dict[str, Any]:
        """Bring every remote topic's configs to its source's (MM2's ``syncTopicConfigs``).

        As MM2 re-sends them every interval, the target's current configs are compared each time, so a change
        made by hand on the target is undone, not only a change on the source followed.
        """
        states = self.state.current()
        plans = {t: p for t, p in self._plans(list(self._mirrored or {})).items() if t in states}
        altered = self._apply_configs(plans)
        for topic, plan in plans.items():
            if states[topic].configs != plan.digest():
                self.state.put(replace(states[topic], configs=plan.digest()))
        return {"configsAltered": altered} if altered else {}

    def _sync_acls(self) -> dict[str, Any]:
        """Copy the mirrored topics' ACLs to their remote topics (MM2's ``syncTopicAcls``)."""
        states = self.state.current()
        source_acls = admin.describe_topic_acls(self.clients, self.flow.source)
        if source_acls is None:
            if not self._no_authorizer_logged:
                logger.info(
                    "the source cluster has no authorizer, so there are no topic ACLs to sync; "
                    "set sync.topic.acls.enabled = false to skip this check",
                    extra={"flow": self.flow.name, "cluster": self.flow.source},
                )
                self._no_authorizer_logged = True
            return {}
        mirrored = [t for t in self._mirrored or {} if t in states]
        wanted = rules.remote_acls(source_acls, {t: self._remote(t) for t in mirrored})
        # As MM2 (which re-creates them every interval), compare with what the target has now: an ACL deleted
        # there by hand comes back.
        present = set(admin.describe_topic_acls(self.clients, self.flow.target) or [])
        to_create = sorted({acl for acls in wanted.values() for acl in acls} - present)
        admin.create_topic_acls(self.clients, self.flow.target, to_create)
        for topic, acls in wanted.items():
            if states[topic].acls != rules.acl_digest(acls):
                self.state.put(replace(states[topic], acls=rules.acl_digest(acls)))
        return {"aclsCreated": len(to_create)} if to_create else {}

    # --- steps -------------------------------------------------------------------------------------------

    def _continue_from_mm2(self, topics: list[str]) -> None:
        """Take over from MirrorMaker 2: a topic's mapping group with no offsets starts where MM2 stopped.

        MM2 (dedicated mode) keeps its source position per partition in ``mm2-offsets.<source>.internal`` on the
        target. Before a topic's event-source mapping first polls, its consumer group is given the next offset
        after each of those, so nothing MM2 mirrored is mirrored again (and, in exactly-once mode, the same
        offsets also tell the mirror what was already written).
        """
        positions = source_offsets.read(self.clients, self.flow.target, self.flow.source_offsets_topic())
        wanted = {
            t: {TopicPartition(t, p): o.offset + 1 for (topic, p), o in positions.items() if topic == t}
            for t in topics
            if (self.flow.source, t) in {(o.cluster, o.topic) for o in positions.values()}
        }
        for topic, offsets in wanted.items():
            group = self.flow.consumer_group_id(topic)
            if committed_offsets(self.clients, self.flow.source, [group]).get(group):
                continue  # the mapping has its own position already
            alter_offsets(self.clients, self.flow.source, group, {tp: (o, "") for tp, o in offsets.items()})
            logger.info(
                "continuing from MirrorMaker 2's position",
                extra={"topic": topic, "group": group, "offsets": {tp.partition: o for tp, o in offsets.items()}},
            )

    def _ensure_internal_topics(self) -> None:
        for topic in rules.internal_topics(self.flow):
            self.clients.ensure_topic(topic.cluster, topic.name, 1, topic.replication_factor, rules.COMPACT)
        failures = self.reconciler.failure_topic if self.reconciler is not None else None
        if failures:  # Lambda sends what a mapping gives up on there, and requires it to exist (on the source)
            self.clients.ensure_topic(self.flow.source, failures, 1, self.flow.settings.replication_factor)

    def _remote(self, topic: str) -> str:
        return self.policy.format_remote_topic(self.flow.source, topic)

    def _plans(self, topics: list[str]) -> dict[str, rules.ConfigPlan]:
        described = admin.describe_topic_configs(self.clients, self.flow.source, topics)
        return {t: rules.config_plan(described[t], self.flow.settings) for t in topics if t in described}

    def _apply_configs(self, plans: Mapping[str, rules.ConfigPlan]) -> dict[str, dict[str, str | None]]:
        """Alter each remote topic to its plan; returns remote topic -> what changed (None: reset to default)."""
        if not plans:
            return {}
        remote_names = {t: self._remote(t) for t in plans}
        current = admin.describe_topic_configs(self.clients, self.flow.target, remote_names.values())
        changes = {
            remote_names[t]: rules.config_changes(plan, current.get(remote_names[t], {})) for t, plan in plans.items()
        }
        changes = {r: c for r, c in changes.items() if c}
        admin.alter_topic_configs(self.clients, self.flow.target, changes)
        return changes

    def _record_topics(
        self,
        mirrored: Mapping[str, int],
        all_source: Mapping[str, int],
        remote_names: Mapping[str, str],
        remote_counts: Mapping[str, int],
        applied: _Applied,
        esm: EsmChanges | None,
    ) -> None:
        """One state write per topic whose record changed; topics gone from the source are forgotten."""
        states = self.state.current()
        outcome = esm.outcome if esm else {}
        for topic in sorted(applied.in_place):
            old = states.get(topic)
            plan = applied.plans.get(topic)
            self.state.put(
                TopicState(
                    topic=topic,
                    remote=remote_names[topic],
                    partitions=applied.partitions.get(topic, remote_counts.get(remote_names[topic], 0)),
                    configs=plan.digest() if plan else (old.configs if old else None),
                    acls=old.acls if old else None,
                    esm=outcome.get(topic, old.esm if old else ESM_NONE),
                )
            )
        for topic, old in states.items():
            if topic not in all_source:
                self.state.remove(topic)  # its ESM, if any, was deleted by the reconciler
            elif topic not in mirrored and topic in outcome:
                self.state.put(replace(old, esm=outcome[topic]))  # no longer matches: ESM disabled


@dataclass(frozen=True)
class _Applied:
    """What one topics job did get done, per source topic."""

    partitions: Mapping[str, int]  # partition count the remote topic now has at least
    plans: Mapping[str, rules.ConfigPlan]  # configs applied
    in_place: set[str]  # topics whose remote topic exists


def _succeeds(step: Callable[..., object], *args: Any) -> bool:
    step(*args)
    return True


def _attempt(problems: list[str], fallback: T, step: Callable[..., T], *args: Any) -> T:
    try:
        return step(*args)
    except (ClusterError, EsmError) as exc:
        problems.append(str(exc))
        return fallback


class PausedFlowTask:
    """A deployed flow switched off in the configuration: its ESMs are disabled (their groups keep offsets).

    Nothing else is touched, so switching the flow back on resumes where it stopped.
    """

    name = "config-sync"

    def __init__(self, flow: FlowConfig, reconciler: EsmReconciler) -> None:
        self.flow = flow
        self.reconciler = reconciler

    def interval_seconds(self) -> float:
        return float(self.flow.settings.refresh_topics_interval_seconds)

    def run_once(self) -> dict[str, Any]:
        mapped = list(self.reconciler.mappings())
        changes = self.reconciler.reconcile(wanted=[], existing=mapped)
        return {"flow": self.flow.name, "paused": True, "esm": changes.as_dict(), "changed": bool(changes)}


def task_for(
    flow: FlowConfig,
    clients: KafkaClients,
    *,
    reconciler: EsmReconciler | None = None,
    refresh_seconds: float | None = None,
) -> ConfigSyncTask:
    """The config-sync task of ``flow``; ``reconciler`` manages its ESMs (none: ESMs are managed elsewhere)."""
    return ConfigSyncTask(flow, clients, reconciler, refresh_seconds)
