"""A function that EventBridge Scheduler invokes at a fixed rate, for every deployed flow at once.

Schedules fire at most once a minute. The period is the shortest interval any deployed flow asks for, rounded
up to whole minutes; a function whose interval is shorter (MM2's heartbeats: 1 s) loops inside one invocation
for the whole period, which it reads from ``SMM_SCHEDULE_PERIOD_SECONDS`` (and the event's ``periodSeconds``).
Intervals longer than the period are kept by the function itself (it skips work that is not due).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from infra.constructs.function import FunctionContext, SmmFunction
from infra.permissions import acknowledge, nag_resource
from infra.settings import SettingsError
from shared.mm2.config import FlowConfig

SCHEDULE_PERIOD_ENV = "SMM_SCHEDULE_PERIOD_SECONDS"
MINIMUM_PERIOD_SECONDS = 60


def schedule_period(intervals: Iterable[int], default: int) -> int:
    """Seconds between invocations: the shortest interval, at least a minute, in whole minutes."""
    shortest = min(intervals, default=default)
    return max(MINIMUM_PERIOD_SECONDS, math.ceil(shortest / 60) * 60)


class ScheduledFunction(Construct):
    """A function of ``kind`` serving ``flows``, plus the schedule that invokes it every ``period_seconds``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ctx: FunctionContext,
        kind: str,
        handler: str,
        description: str,
        period_seconds: int,
        flows: Sequence[FlowConfig],
        loops: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        deployment = ctx.deployment
        self.period_seconds = period_seconds
        self.aliases = {a for f in flows for a in (f.source, f.target)}
        timeout = deployment.settings.functions[kind.replace("-", "_")].timeout_seconds
        if loops and timeout <= period_seconds:
            raise SettingsError(
                [
                    f"functions.{kind.replace('-', '_')}.timeout_seconds = {timeout}: it loops for the whole "
                    f"{period_seconds} s schedule period; allowed: more than {period_seconds}"
                ]
            )
        self.smm = SmmFunction(
            self,
            "Function",
            ctx=ctx,
            kind=kind,
            handler=handler,
            description=description,
            aliases=self.aliases,
            environment={SCHEDULE_PERIOD_ENV: str(period_seconds)},
            async_max_age=Duration.seconds(period_seconds),
        )
        self.function = self.smm.function
        # Only schedules of this account may assume it (confused-deputy guard).
        account = {"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
        invoker = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions=account),
            description=f"EventBridge Scheduler: invoke {kind}",
        )
        # LambdaInvoke grants lambda:InvokeFunction on the function and on "<arn>:*" (its versions and aliases).
        acknowledge(
            invoker,
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, self.function.function_arn)}:*]",
            "the scheduler target's grant covers the function's versions; this function has none besides $LATEST",
        )
        minutes = period_seconds // 60
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            description=f"Serverless MirrorMaker {deployment.settings.name}: {kind} every {minutes} min",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(minutes)),
            target=targets.LambdaInvoke(
                self.function,
                role=invoker,
                retry_attempts=0,  # the next run redoes the work
                max_event_age=Duration.seconds(period_seconds),
                input=scheduler.ScheduleTargetInput.from_object({"schedule": kind, "periodSeconds": period_seconds}),
            ),
        )
