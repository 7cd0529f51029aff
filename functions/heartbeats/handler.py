"""Lambda entry point of the heartbeats function: emit heartbeats for ~55 s per (once-a-minute) invocation,
then measure each enabled flow's health once (``functions.heartbeats.monitor``).

Serves the pair named by ``SMM_FLOW`` when it is set, otherwise every pair with ``emit.heartbeats.enabled``;
the configuration comes from ``shared.aws.config_source``. The measures are published per flow (dimension
``Flow``): ``HeartbeatAge`` (ms since the newest heartbeat that crossed the flow) and ``SourceLag`` (records
on the source its mappings have not consumed); the alarms built on them catch a flow that stalls without an
error anywhere (a mapping that cannot connect produces no invocation, hence no failure).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.heartbeats import heartbeats, monitor
from functions.scheduled import SAFETY_MARGIN_MS, ScheduledTask, TaskCache, budget_seconds, run_tasks
from shared.aws import config_source
from shared.kafka.clients import KafkaClients
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-heartbeats")
metrics = Metrics(namespace="ServerlessMirrorMaker", service="smm-heartbeats")

HEALTH_LABEL = "health"
# Time the health measures need after the heartbeat loop: each is a few requests, but a cluster that does not
# answer holds one for its request timeout. With less left (a timeout set close to the schedule period) they
# are skipped, and said so, rather than let Lambda end the invocation as failed.
HEALTH_TIME_MS = 30_000


def build(mirror_config: MirrorConfig, clients: KafkaClients) -> Mapping[str, ScheduledTask]:
    """Heartbeat tasks by pair name and health tasks by ``"<flow> health"``, sharing the clients."""
    flows = heartbeats.emitting_flows(mirror_config)
    monitors = monitor.tasks_for(mirror_config, clients)
    if os.environ.get(config_source.FLOW_ENV):
        wanted = config_source.flow_from_environment(mirror_config).name
        flows = [f for f in flows if f.name == wanted]
        monitors = {name: task for name, task in monitors.items() if name == wanted}
    tasks: dict[str, ScheduledTask] = {f.name: heartbeats.task_for(f, clients) for f in flows}
    tasks.update({f"{name} {HEALTH_LABEL}": task for name, task in monitors.items()})
    return tasks


_cache = TaskCache(build, client_id="smm-heartbeats")


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    tasks = _cache.tasks()
    health = {label: t for label, t in tasks.items() if t.name == monitor.FlowHealthTask.name}
    reports = run_tasks({label: t for label, t in tasks.items() if label not in health}, budget_seconds(context))
    _measure_health(health, context)
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


def _measure_health(monitors: Mapping[str, ScheduledTask], context: Any) -> None:
    """One measurement per flow, published with its ``Flow`` dimension; failures are logged, never raised."""
    if not monitors:
        return
    if context.get_remaining_time_in_millis() < HEALTH_TIME_MS + SAFETY_MARGIN_MS:
        logger.warning(
            "no time left to measure the flows' health; raise functions.heartbeats.timeout_seconds",
            extra={"remainingMs": context.get_remaining_time_in_millis()},
        )
        return
    reports = run_tasks(monitors, 0)
    for report in reports.values():
        last = report.last
        measured = [
            (name, unit, last[key])
            for name, unit, key in (
                ("SourceLag", MetricUnit.Count, "sourceLag"),
                ("HeartbeatAge", MetricUnit.Milliseconds, "heartbeatAgeMs"),
            )
            if last.get(key) is not None
        ]
        if not measured:
            continue
        metrics.add_dimension(name="Flow", value=last["flow"])
        for name, unit, value in measured:
            metrics.add_metric(name=name, unit=unit, value=value)
        metrics.flush_metrics()  # one EMF blob per flow, each with its own Flow dimension
    logger.info("flow health measured", extra={"flows": {label: r.last for label, r in reports.items()}})
