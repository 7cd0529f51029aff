"""Event-source mappings kept in step with the flow's topics: one ESM per mirrored source topic.

A Lambda Kafka ESM takes exactly one topic and no pattern, so config sync creates one when a topic starts to
match, disables it when the topic stops matching (its consumer group keeps its offsets, so re-enabling
resumes where it stopped) and deletes it when the topic is gone from the source. Each ESM's consumer group is
``flow.consumer_group_id(topic)``; in a deployment each mapping is also tagged with the deployment and the flow,
and config sync changes only mappings that carry both tags: it is their single owner (the stack declares none).

``LambdaEsmReconciler`` does this through the Lambda API; the local runtime provides its own reconciler that
starts and stops in-process pollers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import clients as aws_clients
from shared.aws import config_source
from shared.aws.config_source import DEPLOYMENT_TAG, FLOW_TAG, EventSourceTemplate
from shared.mm2.config import ClusterConfig, FlowConfig, MirrorConfig

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

logger = Logger(service="smm-config-sync")

KAFKA_DESTINATION = "kafka://"
ENABLED = "enabled"
DISABLED = "disabled"
DELETED = "deleted"
# How long one run waits for a mapping it deleted (to create it again with a create-only setting changed) to go.
REPLACE_WAIT_SECONDS = 90.0


class EsmError(RuntimeError):
    """An ESM could not be listed, created or changed; the message names the function, the topic and the reason."""


@dataclass(frozen=True)
class EsmMapping:
    """One ESM of this flow: its topic, whether it polls, and (in AWS) its UUID, Lambda state and settings."""

    topic: str
    enabled: bool
    uuid: str = ""
    busy: bool = False  # in a transition (Creating, Updating, Deleting, ...): left alone until it settles
    state: str = ""
    problem: str = ""  # why it does not poll: StateTransitionReason, or a LastProcessingResult "PROBLEM: ..."
    settings: Mapping[str, Any] = field(default_factory=dict)  # as ListEventSourceMappings describes it

    def describe(self) -> str:
        return f"the event-source mapping {self.uuid} of topic {self.topic!r}"


@dataclass(frozen=True)
class Drift:
    """How a mapping differs from what the flow wants: settings Lambda changes in place, and create-only ones."""

    update: Mapping[str, Any] = field(default_factory=dict)  # UpdateEventSourceMapping arguments
    create_only: tuple[str, ...] = ()  # create-only parameters that differ: the mapping is deleted and re-created

    def __bool__(self) -> bool:
        return bool(self.update or self.create_only)


@dataclass
class EsmChanges:
    """What one reconciliation did, and the resulting ESM state of every topic it considered."""

    created: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    outcome: dict[str, str] = field(default_factory=dict)  # topic -> enabled, disabled, deleted, pending:<state>
    not_polling: dict[str, str] = field(default_factory=dict)  # wanted topic -> its mapping's state and problem

    def __bool__(self) -> bool:
        return bool(self.created or self.enabled or self.updated or self.replaced or self.disabled or self.deleted)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "outcome" and v}


class EsmReconciler(ABC):
    """Keeps one flow's ESMs equal to its mirrored topics; subclasses say how ESMs are listed and changed."""

    #: The Kafka topic (on the source cluster) the mappings send batches they give up on, if any: config sync
    #: creates it, because Lambda requires it to exist.
    failure_topic: str | None = None

    @abstractmethod
    def mappings(self) -> dict[str, EsmMapping]:
        """This flow's ESMs by source topic."""

    @abstractmethod
    def create(self, topic: str) -> None:
        """Start consuming ``topic`` with the flow's consumer group; a mapping that exists already is fine."""

    @abstractmethod
    def set_enabled(self, mapping: EsmMapping, enabled: bool) -> None:
        """Pause or resume a mapping, keeping its consumer group's offsets."""

    @abstractmethod
    def delete(self, mapping: EsmMapping) -> None:
        """Remove a mapping whose topic no longer exists."""

    def drift(self, mapping: EsmMapping) -> Drift:
        """How ``mapping`` differs from the flow's wanted settings (none where mappings have no settings)."""
        return Drift()

    def update(self, mapping: EsmMapping, drift: Drift) -> None:
        """Apply ``drift.update`` in place."""
        raise NotImplementedError(f"{type(self).__name__} has no mapping settings to update")

    def replace(self, mapping: EsmMapping) -> bool:
        """Delete ``mapping`` and create it again with the same consumer group (so its offsets carry over);
        False when the old one is still being deleted, so that the next run creates the new one."""
        raise NotImplementedError(f"{type(self).__name__} has no create-only mapping settings")

    def reconcile(self, wanted: Collection[str], existing: Collection[str]) -> EsmChanges:
        """Make the ESMs match ``wanted`` topics; ``existing`` are all source topics (to tell unmatched from gone)."""
        changes = EsmChanges()
        current = self.mappings()
        for topic in sorted(set(wanted) | set(current)):
            mapping = current.get(topic)
            if mapping is not None and mapping.busy:
                changes.outcome[topic] = f"pending:{mapping.state}"
                if topic in wanted and mapping.problem:
                    changes.not_polling[topic] = f"{mapping.state}: {mapping.problem}"
            elif topic in wanted:
                changes.outcome[topic] = self._keep(topic, mapping, changes)
            elif mapping is not None and topic not in existing:
                self.delete(mapping)
                changes.deleted.append(topic)
                changes.outcome[topic] = DELETED
            elif mapping is not None:
                if mapping.enabled:
                    self.set_enabled(mapping, False)
                    changes.disabled.append(topic)
                changes.outcome[topic] = DISABLED
        return changes

    def _keep(self, topic: str, mapping: EsmMapping | None, changes: EsmChanges) -> str:
        """Make a wanted topic's mapping exist, poll, and have the flow's settings."""
        if mapping is None:
            self.create(topic)
            changes.created.append(topic)
            return ENABLED
        drift = self.drift(mapping)
        if drift.create_only:
            if not self.replace(mapping):
                return "pending:Deleting"
            changes.replaced.append(topic)
            return ENABLED
        if drift.update:
            self.update(mapping, drift)
            changes.updated.append(topic)
        if not mapping.enabled:
            self.set_enabled(mapping, True)
            changes.enabled.append(topic)
        elif mapping.problem:
            changes.not_polling[topic] = f"{mapping.state}: {mapping.problem}"
        return ENABLED


# Lambda's ESM states (ListEventSourceMappings ``State``); anything else is a transition.
_LAMBDA_ENABLED = "Enabled"
_LAMBDA_DISABLED = "Disabled"
# Parameters Lambda cannot change on an existing mapping (UpdateEventSourceMapping does not take them).
CREATE_ONLY = ("Topics", "StartingPosition", "EventSourceArn", "SelfManagedEventSource")
# Parameters config sync keeps equal to the template, each with what Lambda reports when it was never set.
_UNSET: Mapping[str, Any] = {
    "BatchSize": 100,
    "MaximumRetryAttempts": -1,
    "MaximumRecordAgeInSeconds": -1,
    "BisectBatchOnFunctionError": False,
    "SourceAccessConfigurations": [],
    "DestinationConfig": None,
    "MetricsConfig": {"Metrics": []},
    "ProvisionedPollerConfig": None,
}
# What UpdateEventSourceMapping takes to remove a destination: the model's destination pattern allows the empty
# string, while an empty OnFailure object is refused ("The Destination field is required").
_NO_DESTINATION = {"OnFailure": {"Destination": ""}}


class LambdaEsmReconciler(EsmReconciler):
    """ESMs of the deployed mirror function, through boto3 (self-managed Kafka, or MSK with a cluster ARN).

    Config sync is the only owner of the deployment's mappings: it creates every one (topics listed by name and
    regex matches alike) from the flow's ``EventSourceTemplate``, tagged with the deployment and the flow, and
    changes or deletes only mappings that carry both tags. Settings are reconciled on every run: mutable ones in
    place, create-only ones by deleting the mapping and creating it again with the same consumer group, whose
    committed offsets Lambda resumes from (``StartingPosition`` applies only to a group without offsets), so
    nothing is read twice or skipped. A template without a deployment (no tags) owns mappings by group id alone.
    """

    def __init__(
        self,
        flow: FlowConfig,
        client: LambdaClient,
        bootstrap_servers: Sequence[str],
        template: EventSourceTemplate,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        reload: Callable[[], EventSourceTemplate | None] | None = None,
    ) -> None:
        self.flow = flow
        self.client = client
        self.source = ClusterConfig(flow.source, tuple(bootstrap_servers))
        self._use(template)
        self._reload = reload
        self._sleep = sleep
        self._clock = clock
        self._owned: dict[str, bool] = {}  # mapping ARN -> tagged as this flow's (a mapping's tags do not change)

    @classmethod
    def from_environment(
        cls, flow: FlowConfig, config: MirrorConfig, client: LambdaClient | None = None
    ) -> LambdaEsmReconciler | None:
        """The reconciler of ``flow``'s mirror function from the deployment's event-source templates
        (``config_source.event_sources``); None when the deployment has no mirror function for the flow."""
        template = config_source.event_sources().get(flow.name)
        if template is None:
            return None
        servers = config.cluster(flow.source).bootstrap_servers
        # A deployment may change the template (a retry limit, pollers) while this container's tasks live on.
        reload = lambda: config_source.event_sources().get(flow.name)  # noqa: E731
        return cls(flow, client or aws_clients.lambda_client(), servers, template, reload=reload)

    def _use(self, template: EventSourceTemplate) -> None:
        self.template = template
        self.function_name = template.function_name
        destination = template.on_failure or ""
        kafka = destination.startswith(KAFKA_DESTINATION)
        self.failure_topic = destination.removeprefix(KAFKA_DESTINATION) if kafka else None

    def mappings(self) -> dict[str, EsmMapping]:
        latest = self._reload() if self._reload is not None else None
        if latest is not None and latest != self.template:
            self._use(latest)
        found: dict[str, EsmMapping] = {}
        try:
            for raw in _list(self.client, self.function_name):
                mapping = self._ours(raw)
                if mapping is not None:
                    found[mapping.topic] = mapping
        except (BotoCoreError, ClientError) as exc:
            raise self._error("listing the event-source mappings", exc) from None
        return found

    def create(self, topic: str) -> None:
        try:
            self.client.create_event_source_mapping(**self.create_parameters(topic))
        except self.client.exceptions.ResourceConflictException:
            logger.info("event-source mapping exists already", extra={"topic": topic})
            return
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"creating the event-source mapping of topic {topic!r}", exc) from None
        logger.info("created event-source mapping", extra={"topic": topic, "group": self.flow.consumer_group_id(topic)})

    def set_enabled(self, mapping: EsmMapping, enabled: bool) -> None:
        self._update(mapping, "enabling" if enabled else "disabling", {"Enabled": enabled})

    def update(self, mapping: EsmMapping, drift: Drift) -> None:
        self._update(mapping, f"updating {', '.join(sorted(drift.update))} of", drift.update)

    def delete(self, mapping: EsmMapping) -> None:
        _delete(self.client, mapping.uuid, f"topic {mapping.topic!r}", self._error)
        logger.info("deleted event-source mapping", extra={"topic": mapping.topic, "uuid": mapping.uuid})

    def replace(self, mapping: EsmMapping) -> bool:
        changed = list(self.drift(mapping).create_only)
        logger.info(
            "re-creating event-source mapping: create-only settings changed",
            extra={"topic": mapping.topic, "uuid": mapping.uuid, "settings": changed},
        )
        self.delete(mapping)
        deadline = self._clock() + REPLACE_WAIT_SECONDS
        delay = 1.0
        while self._exists(mapping):  # Lambda refuses a second mapping of the same function, source and topic
            if self._clock() >= deadline:
                logger.warning("the old mapping is still being deleted", extra={"topic": mapping.topic})
                return False
            self._sleep(delay)
            delay = min(delay * 2, 10.0)
        try:
            self.client.create_event_source_mapping(**self.create_parameters(mapping.topic))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"re-creating the event-source mapping of topic {mapping.topic!r}", exc) from None
        return True

    def drift(self, mapping: EsmMapping) -> Drift:
        wanted = self.create_parameters(mapping.topic)
        differs = [
            k for k in (*CREATE_ONLY, *_UNSET) if _normal(k, wanted.get(k)) != _normal(k, mapping.settings.get(k))
        ]
        # Provisioned mode cannot be switched off in place (at least one poller): that is a re-creation too.
        create_only = tuple(
            k for k in differs if k in CREATE_ONLY or (k == "ProvisionedPollerConfig" and k not in wanted)
        )
        update = {k: wanted.get(k, _UNSET[k]) for k in differs if k not in create_only}
        if "DestinationConfig" in update and update["DestinationConfig"] is None:
            update["DestinationConfig"] = _NO_DESTINATION
        window = "MaximumBatchingWindowInSeconds"
        # Lambda cannot go back to its 500 ms default once a window was set: a template without one leaves it.
        if window in wanted and wanted[window] != mapping.settings.get(window):
            update[window] = wanted[window]
        return Drift(update, create_only)

    def create_parameters(self, topic: str) -> dict[str, Any]:
        """CreateEventSourceMapping arguments for ``topic`` (aws.md §1.2)."""
        return self.template.create_parameters(self.flow, topic, self.source)

    def _update(self, mapping: EsmMapping, what: str, changes: Mapping[str, Any]) -> None:
        try:
            self.client.update_event_source_mapping(UUID=mapping.uuid, **changes)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"{what} {mapping.describe()}", exc) from None
        logger.info(f"{what} event-source mapping", extra={"topic": mapping.topic, "uuid": mapping.uuid})

    def _exists(self, mapping: EsmMapping) -> bool:
        try:
            self.client.get_event_source_mapping(UUID=mapping.uuid)
        except self.client.exceptions.ResourceNotFoundException:
            return False
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"reading {mapping.describe()}", exc) from None
        return True

    def _error(self, what: str, exc: Exception) -> EsmError:
        return EsmError(f"{what} of Lambda function {self.function_name!r} failed: {type(exc).__name__}: {exc}")

    def _ours(self, raw: dict[str, Any]) -> EsmMapping | None:
        topics = raw.get("Topics") or []
        config = raw.get("SelfManagedKafkaEventSourceConfig") or raw.get("AmazonManagedKafkaEventSourceConfig") or {}
        if len(topics) != 1 or config.get("ConsumerGroupId") != self.flow.consumer_group_id(topics[0]):
            return None
        if self.template.deployment and not self._tagged(str(raw.get("EventSourceMappingArn", ""))):
            return None
        state = str(raw.get("State", ""))
        result = str(raw.get("LastProcessingResult", ""))
        problem = str(raw.get("StateTransitionReason", "")) if state != _LAMBDA_ENABLED else ""
        if state == _LAMBDA_ENABLED and result.startswith("PROBLEM"):
            problem = result
        return EsmMapping(
            topic=topics[0],
            enabled=state == _LAMBDA_ENABLED,
            uuid=str(raw.get("UUID", "")),
            busy=state not in (_LAMBDA_ENABLED, _LAMBDA_DISABLED),
            state=state,
            problem=problem,
            settings=raw,
        )

    def _tagged(self, arn: str) -> bool:
        """Whether the mapping carries this deployment's and this flow's tags, so that config sync may change it."""
        if arn not in self._owned:
            tags = _tags(self.client, arn, self._error)
            ours = tags.get(DEPLOYMENT_TAG) == self.template.deployment and tags.get(FLOW_TAG) == self.flow.name
            self._owned[arn] = ours
        return self._owned[arn]


def delete_deployment_mappings(client: LambdaClient, function_names: Collection[str], deployment: str) -> list[str]:
    """Delete every mapping of ``function_names`` tagged as ``deployment``'s; returns their UUIDs.

    What ``cdk destroy`` (and a flow dropped from the deployment) runs; mappings the deployment did not create
    are left alone, whatever function they invoke.
    """

    def error(what: str, exc: Exception) -> EsmError:
        return EsmError(f"{what} failed: {type(exc).__name__}: {exc}")

    deleted: list[str] = []
    for function_name in sorted(function_names):
        try:
            listed = list(_list(client, function_name))
        except client.exceptions.ResourceNotFoundException:
            continue  # no such function, hence none of its mappings
        except (BotoCoreError, ClientError) as exc:
            raise error(f"listing the event-source mappings of Lambda function {function_name!r}", exc) from None
        for raw in listed:
            arn, uuid = str(raw.get("EventSourceMappingArn", "")), str(raw.get("UUID", ""))
            if _tags(client, arn, error).get(DEPLOYMENT_TAG) != deployment:
                continue
            _delete(client, uuid, f"Lambda function {function_name!r}", error)
            deleted.append(uuid)
            logger.info("deleted event-source mapping", extra={"uuid": uuid, "function": function_name})
    return deleted


def _list(client: LambdaClient, function_name: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_event_source_mappings").paginate(FunctionName=function_name):
        for raw in page.get("EventSourceMappings", []):
            yield dict(raw)


def _tags(client: LambdaClient, arn: str, error: Callable[[str, Exception], EsmError]) -> dict[str, str]:
    try:
        return dict(client.list_tags(Resource=arn).get("Tags", {}))
    except client.exceptions.ResourceNotFoundException:
        return {}
    except (BotoCoreError, ClientError) as exc:
        raise error(f"reading the tags of event-source mapping {arn}", exc) from None


def _delete(client: LambdaClient, uuid: str, what: str, error: Callable[[str, Exception], EsmError]) -> None:
    try:
        client.delete_event_source_mapping(UUID=uuid)
    except client.exceptions.ResourceNotFoundException:
        return  # deleted concurrently
    except (BotoCoreError, ClientError) as exc:
        raise error(f"deleting the event-source mapping {uuid} of {what}", exc) from None


def _normal(key: str, value: Any) -> Any:
    """A parameter's value in a form that compares equal whether it was set to its default or never set."""
    if value is None:
        value = _UNSET.get(key)
    if key == "SourceAccessConfigurations":
        return sorted((a.get("Type"), a.get("URI")) for a in value or [])
    if key == "DestinationConfig":
        return ((value or {}).get("OnFailure") or {}).get("Destination") or None
    if key == "MetricsConfig":
        return sorted((value or {}).get("Metrics") or [])
    if key == "ProvisionedPollerConfig":
        return (
            (value.get("MinimumPollers"), value.get("MaximumPollers"), value.get("PollerGroupName")) if value else None
        )
    if key == "SelfManagedEventSource":
        return sorted(((value or {}).get("Endpoints") or {}).get("KAFKA_BOOTSTRAP_SERVERS") or [])
    return value
