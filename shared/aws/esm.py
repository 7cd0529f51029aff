"""Event-source mappings kept in step with the flow's topics: one ESM per mirrored source topic.

A Lambda Kafka ESM takes exactly one topic and no pattern, so config sync creates one when a topic starts to
match, disables it when the topic stops matching (its consumer group keeps its offsets, so re-enabling
resumes where it stopped) and deletes it when the topic is gone from the source. Each ESM's consumer group is
``flow.consumer_group_id(topic)``, which is also how a mapping is recognised as this flow's: mappings of the
mirror function with any other group id are left alone.

``LambdaEsmReconciler`` does this through the Lambda API; the local runtime provides its own reconciler that
starts and stops in-process pollers.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import config_source
from shared.aws.config_source import EventSourceTemplate
from shared.mm2.config import ClusterConfig, ConfigError, FlowConfig, MirrorConfig

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

logger = Logger(service="smm-config-sync")

MIRROR_FUNCTION_ENV = "SMM_MIRROR_FUNCTION"
SOURCE_CLUSTER_ARN_ENV = "SMM_SOURCE_CLUSTER_ARN"
SOURCE_ACCESS_ENV = "SMM_SOURCE_ACCESS_CONFIGURATIONS"

ENABLED = "enabled"
DISABLED = "disabled"
DELETED = "deleted"


class EsmError(RuntimeError):
    """An ESM could not be listed, created or changed; the message names the function, the topic and the reason."""


@dataclass(frozen=True)
class EsmMapping:
    """One ESM of this flow: its topic, whether it polls, and (in AWS) its UUID and Lambda state."""

    topic: str
    enabled: bool
    uuid: str = ""
    busy: bool = False  # in a transition (Creating, Updating, Deleting, ...): left alone until it settles
    state: str = ""

    def describe(self) -> str:
        return f"the event-source mapping {self.uuid} of topic {self.topic!r}"


@dataclass
class EsmChanges:
    """What one reconciliation did, and the resulting ESM state of every topic it considered."""

    created: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    outcome: dict[str, str] = field(default_factory=dict)  # topic -> enabled, disabled, deleted, pending:<state>

    def __bool__(self) -> bool:
        return bool(self.created or self.enabled or self.disabled or self.deleted)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: v for k, v in vars(self).items() if k != "outcome" and v}


class EsmReconciler(ABC):
    """Keeps one flow's ESMs equal to its mirrored topics; subclasses say how ESMs are listed and changed."""

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

    def reconcile(self, wanted: Collection[str], existing: Collection[str]) -> EsmChanges:
        """Make the ESMs match ``wanted`` topics; ``existing`` are all source topics (to tell unmatched from gone)."""
        changes = EsmChanges()
        current = self.mappings()
        for topic in sorted(set(wanted) | set(current)):
            mapping = current.get(topic)
            if mapping is not None and mapping.busy:
                changes.outcome[topic] = f"pending:{mapping.state}"
            elif topic in wanted:
                if mapping is None:
                    self.create(topic)
                    changes.created.append(topic)
                elif not mapping.enabled:
                    self.set_enabled(mapping, True)
                    changes.enabled.append(topic)
                changes.outcome[topic] = ENABLED
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


# Lambda's ESM states (ListEventSourceMappings ``State``); anything else is a transition.
_LAMBDA_ENABLED = "Enabled"
_LAMBDA_DISABLED = "Disabled"


class LambdaEsmReconciler(EsmReconciler):
    """ESMs of the deployed mirror function, through boto3 (self-managed Kafka, or MSK with a cluster ARN).

    New mappings get the same parameters as the ones the stack creates for topics listed by name: the flow's
    ``EventSourceTemplate`` (provisioned pollers, failure destination, retries, ...) plus, per topic, the topic,
    its consumer group and the flow's batching settings.
    """

    def __init__(
        self,
        flow: FlowConfig,
        function_name: str,
        client: LambdaClient,
        bootstrap_servers: Sequence[str],
        source_cluster_arn: str | None = None,
        access_configurations: Sequence[Mapping[str, str]] = (),
        template: EventSourceTemplate | None = None,
    ) -> None:
        self.flow = flow
        self.client = client
        self.template = template or EventSourceTemplate(
            function_name, source_cluster_arn, tuple((a["Type"], a["URI"]) for a in access_configurations)
        )
        self.function_name = self.template.function_name
        self.source = ClusterConfig(flow.source, tuple(bootstrap_servers))

    @classmethod
    def from_environment(
        cls, flow: FlowConfig, config: MirrorConfig, client: LambdaClient | None = None
    ) -> LambdaEsmReconciler | None:
        """The reconciler the deployment describes; None when it names no mirror function for ``flow``.

        The deployment's event-source templates (``config_source.event_sources``) come first; otherwise
        ``SMM_MIRROR_FUNCTION``, ``SMM_SOURCE_CLUSTER_ARN`` and ``SMM_SOURCE_ACCESS_CONFIGURATIONS``.
        """
        template = config_source.event_sources().get(flow.name)
        if template is None:
            function_name = os.environ.get(MIRROR_FUNCTION_ENV, "").strip()
            if not function_name:
                return None
            access = parse_access_configurations(os.environ.get(SOURCE_ACCESS_ENV, ""))
            arn = os.environ.get(SOURCE_CLUSTER_ARN_ENV, "").strip() or None
            template = EventSourceTemplate(function_name, arn, tuple((a["Type"], a["URI"]) for a in access))
        if client is None:
            from shared.aws import clients as aws_clients

            client = aws_clients.lambda_client()
        servers = config.cluster(flow.source).bootstrap_servers
        return cls(flow, template.function_name, client, servers, template=template)

    def mappings(self) -> dict[str, EsmMapping]:
        found: dict[str, EsmMapping] = {}
        paginator = self.client.get_paginator("list_event_source_mappings")
        try:
            for page in paginator.paginate(FunctionName=self.function_name):
                for raw in page.get("EventSourceMappings", []):
                    mapping = self._ours(dict(raw))
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
        what = "enabling" if enabled else "disabling"
        try:
            self.client.update_event_source_mapping(UUID=mapping.uuid, Enabled=enabled)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(
                f"{what} the event-source mapping {mapping.uuid} of topic {mapping.topic!r}", exc
            ) from None
        logger.info(f"{what} event-source mapping", extra={"topic": mapping.topic, "uuid": mapping.uuid})

    def delete(self, mapping: EsmMapping) -> None:
        try:
            self.client.delete_event_source_mapping(UUID=mapping.uuid)
        except self.client.exceptions.ResourceNotFoundException:
            return  # deleted concurrently
        except (BotoCoreError, ClientError) as exc:
            raise self._error(
                f"deleting the event-source mapping {mapping.uuid} of topic {mapping.topic!r}", exc
            ) from None
        logger.info("deleted event-source mapping", extra={"topic": mapping.topic, "uuid": mapping.uuid})

    def _error(self, what: str, exc: Exception) -> EsmError:
        return EsmError(f"{what} of Lambda function {self.function_name!r} failed: {type(exc).__name__}: {exc}")

    def create_parameters(self, topic: str) -> dict[str, Any]:
        """CreateEventSourceMapping arguments for ``topic`` (aws.md §1.2)."""
        return self.template.create_parameters(self.flow, topic, self.source)

    def _ours(self, raw: dict[str, Any]) -> EsmMapping | None:
        topics = raw.get("Topics") or []
        config = raw.get("SelfManagedKafkaEventSourceConfig") or raw.get("AmazonManagedKafkaEventSourceConfig") or {}
        if len(topics) != 1 or config.get("ConsumerGroupId") != self.flow.consumer_group_id(topics[0]):
            return None
        state = str(raw.get("State", ""))
        return EsmMapping(
            topic=topics[0],
            enabled=state == _LAMBDA_ENABLED,
            uuid=str(raw.get("UUID", "")),
            busy=state not in (_LAMBDA_ENABLED, _LAMBDA_DISABLED),
            state=state,
        )


def parse_access_configurations(text: str) -> list[dict[str, str]]:
    """``SMM_SOURCE_ACCESS_CONFIGURATIONS``: a JSON list of ``{"Type": ..., "URI": ...}`` (empty: none)."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{SOURCE_ACCESS_ENV}: not JSON ({exc})"]) from None
    if not isinstance(value, list) or not all(
        isinstance(v, dict) and isinstance(v.get("Type"), str) and isinstance(v.get("URI"), str) for v in value
    ):
        example = '[{"Type": "SASL_SCRAM_512_AUTH", "URI": "<secret ARN>"}]'
        raise ConfigError([f"{SOURCE_ACCESS_ENV}: allowed: a JSON list like {example}"])
    return [{"Type": v["Type"], "URI": v["URI"]} for v in value]
