"""Config sync as the deployment's custom resource: every mapping exists when ``cdk deploy`` returns, and none
is left behind by ``cdk destroy``.

The stack declares no event-source mapping (config sync is their single owner); instead it invokes this function
through a custom resource whose properties change with the configuration and the mapping settings:

- **Create / Update**: one config-sync pass for every flow, retried with a short capped backoff while a cluster is
  briefly unreachable. A cluster that stays unreachable does not fail the deployment: the answer says what failed
  and the schedule catches up. An invalid configuration does fail it, so the stack rolls back. On Update, the
  mappings of mirror functions the deployment no longer has are deleted.
- **Delete**: every mapping tagged as this deployment's is deleted (Lambda would leave them, with their network
  interfaces, pointing at a deleted function).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from functions.scheduled import ScheduledTask, run_tasks
from shared.aws import clients as aws_clients
from shared.aws import custom_resource
from shared.aws.esm import delete_deployment_mappings
from shared.mm2.config import ConfigError

logger = Logger(service="smm-config-sync")

# Of the function's remaining time, what is kept for answering CloudFormation; and the most a deploy waits for
# clusters to become reachable before it answers and leaves the rest to the schedule.
ANSWER_MARGIN_SECONDS = 30.0
MAX_RETRY_SECONDS = 240.0

TaskSource = Callable[[], Mapping[str, ScheduledTask]]


def on_request(
    event: Mapping[str, Any],
    context: Any,
    tasks: TaskSource,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Handle one CloudFormation request and answer it, whatever happens."""
    request = custom_resource.Request.of(event)
    deployment = str(request.properties.get("Deployment", ""))
    physical_id = f"{deployment}-config-sync"
    status, reason = custom_resource.FAILED, "config sync did not finish"
    try:
        if request.kind == "Delete":
            reason = _remove(request.properties.get("MirrorFunctions") or [], deployment)
        else:
            budget = min(MAX_RETRY_SECONDS, context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS)
            reason = _sync(tasks, max(0.0, budget), clock, sleep)
            if request.kind == "Update":
                gone = set(request.old_properties.get("MirrorFunctions") or []) - set(
                    request.properties.get("MirrorFunctions") or []
                )
                if gone:
                    reason += "; " + _remove(gone, deployment)
        status = custom_resource.SUCCESS
    except ConfigError as exc:  # the deployed configuration cannot work: roll back
        reason = f"the configuration is invalid: {exc}"
    except Exception as exc:
        logger.exception("deployment step failed", extra={"request": request.kind})
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        custom_resource.answer(event, status, reason, physical_id)
    return {"Status": status, "Reason": reason}


def _sync(tasks: TaskSource, budget: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> str:
    """One pass of every flow's config sync; failed flows retried with a capped backoff within ``budget``."""
    reports = run_tasks(tasks(), 0, clock, sleep, retry_seconds=budget)
    mappings = sum(len(r.last.get("esm", {}).get("created", [])) for r in reports.values())
    done = f"config sync ran for {len(reports)} flow(s); {mappings} event-source mapping(s) created"
    failing = sorted(label for label, report in reports.items() if report.errors)
    if not failing:
        return done
    errors = "; ".join(f"{label}: {reports[label].errors[-1]}" for label in failing)
    return f"{done}; not finished, retried by the schedule: {errors}"


def _remove(function_names: Collection[str], deployment: str) -> str:
    if not deployment:
        raise ConfigError(["the custom resource has no Deployment property: no mapping can be told to be ours"])
    deleted = delete_deployment_mappings(aws_clients.lambda_client(), function_names, deployment)
    return f"deleted {len(deleted)} event-source mapping(s) of deployment {deployment}"
