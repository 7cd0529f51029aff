"""Lambda entry point of the config-sync function: one pass per scheduled invocation for every flow.

Enabled flows get topics, configs and ACLs synced and their mirror function's ESMs kept in step with their
topics (``shared.aws.esm``), from the deployment's event-source templates. A deployed flow switched
off in the configuration has its ESMs disabled. ``SMM_FLOW`` narrows the function to one flow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from functions.config_sync import config_sync, deployment
from functions.scheduled import RETRY_BUDGET_SECONDS, ScheduledTask, TaskCache, budget_seconds, run_tasks
from shared.aws import config_source, custom_resource
from shared.aws.esm import LambdaEsmReconciler
from shared.kafka.clients import KafkaClients
from shared.mm2.config import MirrorConfig

logger = Logger(service="smm-config-sync")
metrics = Metrics(namespace="ServerlessMirrorMaker", service="smm-config-sync")


def build(mirror_config: MirrorConfig, clients: KafkaClients) -> Mapping[str, ScheduledTask]:
    if os.environ.get(config_source.FLOW_ENV):
        flows = [config_source.flow_from_environment(mirror_config)]
    else:
        deployed = set(config_source.event_sources())
        flows = [f for f in mirror_config.flows if f.enabled or f.name in deployed]
    tasks: dict[str, ScheduledTask] = {}
    for flow in flows:
        reconciler = LambdaEsmReconciler.from_environment(flow, mirror_config)
        if flow.enabled:
            if reconciler is None:
                logger.warning("no mirror function is deployed for this flow", extra={"flow": flow.name})
            tasks[flow.name] = config_sync.task_for(flow, clients, reconciler=reconciler)
        elif reconciler is not None:
            tasks[flow.name] = config_sync.PausedFlowTask(flow, reconciler)
    return tasks


_cache = TaskCache(build, client_id="smm-config-sync")


def fresh_tasks() -> Mapping[str, ScheduledTask]:
    """Tasks built from the configuration and event-source parameters as they are now (a deployment just wrote
    them), not from this container's cached copy."""
    config_source.forget_cached()
    _cache.close()
    return _cache.tasks()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if custom_resource.is_request(event):  # cdk deploy / cdk destroy (functions/config_sync/deployment.py)
        return deployment.on_request(event, context, fresh_tasks)
    reports = run_tasks(_cache.tasks(), 0, retry_seconds=budget_seconds(context, RETRY_BUDGET_SECONDS))
    for flow_name, report in reports.items():
        last = report.last
        esm = last.get("esm", {})
        metrics.add_dimension(name="Flow", value=flow_name)
        for name, value in (
            ("MirroredTopics", last.get("topics", 0)),
            ("TopicsCreated", len(last.get("created", []))),
            ("TopicsGrown", len(last.get("grown", {}))),
            ("TopicConfigsAltered", len(last.get("configsAltered", {}))),
            ("AclsCreated", last.get("aclsCreated", 0)),
            ("EsmsCreated", len(esm.get("created", []))),
            ("EsmsUpdated", len(esm.get("updated", [])) + len(esm.get("replaced", []))),
            ("EsmsDisabled", len(esm.get("disabled", []))),
            ("EsmsDeleted", len(esm.get("deleted", []))),
            ("ConfigSyncFailures", report.failures),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        if "mappingsNotPolling" in last:  # only a run that listed the mappings knows
            metrics.add_metric(name="MappingsNotEnabled", unit=MetricUnit.Count, value=len(last["mappingsNotPolling"]))
        metrics.flush_metrics()  # one EMF blob per flow, each with its own Flow dimension
    summary = {flow: report.last for flow, report in reports.items()}
    logger.info("config sync done", extra={"flows": summary})
    errors = [e for report in reports.values() for e in report.errors]
    if errors:
        raise config_sync.ConfigSyncError("; ".join(errors))  # the invocation fails: alarms see it
    return summary
