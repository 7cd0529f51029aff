"""Lambda entry point of the heartbeats function: emit heartbeats for ~55 s per (once-a-minute) invocation.

Serves the pair named by ``SMM_FLOW`` when it is set, otherwise every pair with ``emit.heartbeats.enabled``;
the configuration comes from ``shared.aws.config_source``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.heartbeats import heartbeats
from functions.scheduled import ScheduledTask, TaskCache, budget_seconds, run_tasks
from shared.aws import config_source
from shared.kafka.clients import KafkaClients
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-heartbeats")
metrics = Metrics(namespace="ServerlessMirrorMaker", service="smm-heartbeats")


def build(mirror_config: MirrorConfig, clients: KafkaClients) -> Mapping[str, ScheduledTask]:
    flows = heartbeats.emitting_flows(mirror_config)
    if os.environ.get(config_source.FLOW_ENV):
        wanted = config_source.flow_from_environment(mirror_config)
        flows = [f for f in flows if f.name == wanted.name]
    return {f.name: heartbeats.task_for(f, clients) for f in flows}


_cache = TaskCache(build, client_id="smm-heartbeats")


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    tasks = _cache.tasks()
    reports = run_tasks(tasks, budget_seconds(context))
    emitted = sum(r.runs - r.failures for r in reports.values())
    failed = sum(r.failures for r in reports.values())
    metrics.add_metric(name="HeartbeatsEmitted", unit=MetricUnit.Count, value=emitted)
    metrics.add_metric(name="HeartbeatFailures", unit=MetricUnit.Count, value=failed)
    summary = {label: {"emitted": r.runs - r.failures, "failed": r.failures} for label, r in reports.items()}
    logger.info("heartbeats emitted", extra={"pairs": summary})
    if failed and not emitted:
        errors = sorted({e for r in reports.values() for e in r.errors})
        raise heartbeats.HeartbeatError("no heartbeat could be written: " + "; ".join(errors))
    return summary
