"""Lambda entry point of the checkpoint function: every enabled flow's checkpoint task, on a schedule.

Serves the flow named by ``SMM_FLOW`` when it is set, otherwise every enabled flow. Tasks live as long as the
container (warm runs read only what is new in the internal topics); a cold start rebuilds them from Kafka,
which is all they need. A flow whose ``emit.checkpoints.interval.seconds`` is under a minute runs again inside
the invocation (``functions.scheduled``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.checkpoints.checkpoints import CheckpointTask, task_for
from functions.scheduled import ScheduledTask, TaskCache, budget_seconds, run_tasks
from shared.aws import config_source
from shared.kafka.clients import KafkaClients
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-checkpoints")
metrics = Metrics(namespace="ServerlessMirrorMaker", service="smm-checkpoints")


class CheckpointError(RuntimeError):
    """Every flow's run failed in this invocation."""


class PublishedTask:
    """A flow's task whose every run publishes its metric set (the flow is a dimension: one flush per run)."""

    def __init__(self, task: CheckpointTask) -> None:
        self.task = task
        self.name = task.name

    def interval_seconds(self) -> float:
        return self.task.interval_seconds()

    def run_once(self) -> dict[str, Any]:
        summary = self.task.run_once()
        publish(summary)
        return summary

    def close(self) -> None:
        self.task.close()


def publish(summary: Mapping[str, Any]) -> None:
    metrics.add_dimension(name="Flow", value=str(summary["flow"]))
    metrics.add_metric(name="Checkpoints", unit=MetricUnit.Count, value=summary["checkpoints"])
    metrics.add_metric(name="TranslatedPartitions", unit=MetricUnit.Count, value=summary["translated"])
    metrics.add_metric(name="UntranslatablePartitions", unit=MetricUnit.Count, value=summary["untranslatable"])
    metrics.add_metric(name="OffsetSyncsRead", unit=MetricUnit.Count, value=summary["offsetSyncsRead"])
    metrics.add_metric(name="GroupsSynced", unit=MetricUnit.Count, value=len(summary["groupsSynced"]))
    metrics.add_metric(name="FencedRuns", unit=MetricUnit.Count, value=int(summary["fenced"]))
    metrics.flush_metrics()
    metrics.clear_metrics()  # flush keeps them when metrics are disabled (local runs)


def build(mirror_config: MirrorConfig, clients: KafkaClients) -> Mapping[str, ScheduledTask]:
    flows = mirror_config.enabled_flows()
    if os.environ.get(config_source.FLOW_ENV):
        wanted = config_source.flow_from_environment(mirror_config)
        flows = [f for f in flows if f.name == wanted.name]
    return {f.name: PublishedTask(task_for(f, clients)) for f in flows}


_cache = TaskCache(build, client_id="smm-checkpoints")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    reports = run_tasks(_cache.tasks(), budget_seconds(context))
    summary = {flow: {"runs": r.runs, "failed": r.failures, "last": r.last} for flow, r in reports.items()}
    logger.info("checkpoint runs", extra={"flows": summary})
    if reports and all(r.failures == r.runs for r in reports.values()):
        errors = sorted({e for r in reports.values() for e in r.errors})
        raise CheckpointError("no checkpoint run succeeded: " + "; ".join(errors))
    return summary
