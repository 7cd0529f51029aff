"""Config sync run by CloudFormation: ``cdk deploy`` returns with every event-source mapping in place.

The stack declares no event-source mapping. Config sync owns them all: Lambda treats a mapping's source and
starting position as create-only and refuses a second mapping of one function, source and topic, so a
mapping CloudFormation had to replace would fail the update. This custom resource calls the config-sync function
directly (its ARN is the service token, and the handler answers CloudFormation itself) on create, on every update
that changes the configuration or the mapping settings, and on delete, which removes the deployment's mappings
before the functions go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from aws_cdk import CustomResource, Duration
from constructs import Construct, IConstruct

from infra.constructs.config_sync import ConfigSync
from infra.constructs.mirror import MirrorFunction
from infra.settings import Deployment

RESOURCE_TYPE = "Custom::SmmConfigSync"
# How much longer than the function's timeout CloudFormation waits for its answer before failing the operation.
ANSWER_MARGIN_SECONDS = 60


class DeployHook(Construct):
    """One config-sync run per create, update and delete of the stack, ordered around what that run needs.

    ``needs`` are created before the run and deleted after it (the config-sync function, its role and policy,
    and the mirror functions come on their own); the config-sync schedule is created after the run and deleted
    before it, so no scheduled run can recreate a mapping the delete has removed.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        config_sync: ConfigSync,
        mirrors: Sequence[MirrorFunction],
        event_sources: str,
        needs: Sequence[IConstruct],
    ) -> None:
        super().__init__(scope, construct_id)
        timeout = deployment.settings.functions["config_sync"].timeout_seconds
        self.resource = CustomResource(
            self,
            "Run",
            resource_type=RESOURCE_TYPE,
            service_token=config_sync.function.function_arn,
            service_timeout=Duration.seconds(timeout + ANSWER_MARGIN_SECONDS),
            properties={
                "Deployment": deployment.settings.name,
                "MirrorFunctions": [m.function.function_name for m in mirrors],
                # Each changes with what config sync would do differently, so a change triggers an update (a run).
                "ConfigDigest": hashlib.sha256(deployment.config_text.encode()).hexdigest(),
                "EventSources": event_sources,
            },
        )
        for construct in (config_sync.scheduled.smm, *mirrors, *needs):
            self.resource.node.add_dependency(construct)
        config_sync.scheduled.schedule.node.add_dependency(self.resource)
