"""Where a function finds its configuration: a file (local runtime, on-prem) or an SSM parameter (AWS).

In AWS the ``mm2.properties`` text lives in an SSM parameter that can be edited in the console; it is read
through Powertools Parameters with a short cache, so an edit takes effect without a redeploy. Cluster
credentials come from Secrets Manager (``shared.aws.secrets``) and are merged into the parsed configuration here,
so every function gets them the same way. The deployment also describes, per flow, what the event-source
mappings of its mirror function share (``EventSourceTemplate``): config sync, their single owner, creates and
reconciles every mapping from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.aws import providers, secrets
from shared.mm2 import config
from shared.mm2.config import ClusterConfig, ConfigError, FlowConfig, MirrorConfig

CONFIG_FILE_ENV = "SMM_CONFIG_FILE"
CONFIG_PARAMETER_ENV = "SMM_CONFIG_PARAMETER"
CONFIG_MAX_AGE_ENV = "SMM_CONFIG_MAX_AGE_SECONDS"
FLOW_ENV = "SMM_FLOW"
EVENT_SOURCES_ENV = "SMM_EVENT_SOURCES"
EVENT_SOURCES_PARAMETER_ENV = "SMM_EVENT_SOURCES_PARAMETER"
# "true" when the flow's event-source mappings may move past a batch (a retry limit, a record age or a failure
# destination): the mirror then copies from the source itself whatever range a mapping skipped.
RECOVER_SKIPPED_ENV = "SMM_RECOVER_SKIPPED"
# Tags of every mapping config sync creates: a mapping is the deployment's (and config sync's to change) only
# when it carries both, with this deployment's name and the mapping's flow.
DEPLOYMENT_TAG = "smm:deployment"
FLOW_TAG = "smm:flow"
DEFAULT_MAX_AGE_SECONDS = 60
LAMBDA_DEFAULT_BATCHING_WINDOW_MS = 500  # what a Kafka ESM uses when MaximumBatchingWindowInSeconds is left out


def config_text() -> str:
    """The current ``mm2.properties`` text, from the file or the (cached) SSM parameter."""
    path = os.environ.get(CONFIG_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise ConfigError([f"{CONFIG_FILE_ENV}={path}: cannot read it: {exc.strerror}"]) from None
    name = os.environ.get(CONFIG_PARAMETER_ENV)
    if name:
        return _parameter(name)
    raise ConfigError([f"set {CONFIG_FILE_ENV} (a path) or {CONFIG_PARAMETER_ENV} (an SSM parameter name)"])


def parse_text(text: str) -> MirrorConfig:
    """The configuration of ``text`` (config provider references resolved), with the cluster secrets the
    environment names applied."""
    return secrets.apply_from_environment(config.parse_text(text, providers.factories()))


def flow_from_environment(mirror_config: MirrorConfig) -> FlowConfig:
    """The flow this deployed function serves, named ``SOURCE->TARGET`` in ``SMM_FLOW``."""
    name = os.environ.get(FLOW_ENV, "")
    source, arrow, target = name.partition(config.FLOW_ARROW)
    if not arrow:
        raise ConfigError([f"{FLOW_ENV}={name!r}: allowed: SOURCE->TARGET, e.g. onprem->cloud"])
    return mirror_config.flow(source.strip(), target.strip())


def recover_skipped() -> bool:
    """Whether this mirror function's mappings may move past a batch (``RECOVER_SKIPPED_ENV``, set by the stack)."""
    return os.environ.get(RECOVER_SKIPPED_ENV, "").strip().lower() == "true"


def forget_cached() -> None:
    """Read the parameters afresh next time (a deployment just wrote them)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]


def _parameter(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    max_age = int(os.environ.get(CONFIG_MAX_AGE_ENV, str(DEFAULT_MAX_AGE_SECONDS)))
    return str(parameters.get_parameter(name, max_age=max_age))


# --- event-source mappings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionedPollers:
    """Provisioned mode of a Kafka ESM (needed for retries, bisect, metrics and Kafka failure destinations)."""

    minimum: int
    maximum: int
    group: str | None = None


@dataclass(frozen=True)
class EventSourceTemplate:
    """What every event-source mapping of one flow's mirror function shares; fixed at deploy time.

    Per topic, ``create_parameters`` adds the topic, its consumer group and the flow's batching settings,
    which come from the (console-editable) configuration.
    """

    function_name: str
    msk_cluster_arn: str | None = None
    access_configurations: tuple[tuple[str, str], ...] = ()
    pollers: ProvisionedPollers | None = None
    on_failure: str | None = None
    max_retry_attempts: int | None = None
    max_record_age_seconds: int | None = None
    bisect_batch_on_error: bool = False
    metrics: tuple[str, ...] = ()
    deployment: str = ""  # the stack's name: tags every mapping (DEPLOYMENT_TAG), which makes it config sync's

    @property
    def may_skip(self) -> bool:
        """Whether Lambda may move past a batch it could not deliver (a retry limit, a maximum record age, or a
        failure destination, with which Lambda caps retries at 10) instead of retrying it until it succeeds."""
        limited = [v for v in (self.max_retry_attempts, self.max_record_age_seconds) if v is not None and v != -1]
        return bool(limited or self.on_failure)

    def common_parameters(self) -> dict[str, Any]:
        """The CreateEventSourceMapping arguments shared by all topics (boto3 names); also the JSON form."""
        params: dict[str, Any] = {"FunctionName": self.function_name}
        if self.msk_cluster_arn:
            params["EventSourceArn"] = self.msk_cluster_arn
        if self.access_configurations:
            params["SourceAccessConfigurations"] = [{"Type": t, "URI": u} for t, u in self.access_configurations]
        if self.pollers:
            pollers: dict[str, Any] = {"MinimumPollers": self.pollers.minimum, "MaximumPollers": self.pollers.maximum}
            if self.pollers.group:
                pollers["PollerGroupName"] = self.pollers.group
            params["ProvisionedPollerConfig"] = pollers
        if self.on_failure:
            params["DestinationConfig"] = {"OnFailure": {"Destination": self.on_failure}}
        if self.max_retry_attempts is not None:
            params["MaximumRetryAttempts"] = self.max_retry_attempts
        if self.max_record_age_seconds is not None:
            params["MaximumRecordAgeInSeconds"] = self.max_record_age_seconds
        if self.bisect_batch_on_error:
            params["BisectBatchOnFunctionError"] = True
        if self.metrics:
            params["MetricsConfig"] = {"Metrics": list(self.metrics)}
        if self.deployment:
            params["Tags"] = {DEPLOYMENT_TAG: self.deployment}
        return params

    def create_parameters(
        self, flow: FlowConfig, topic: str, source: ClusterConfig, enabled: bool = True
    ) -> dict[str, Any]:
        """CreateEventSourceMapping arguments for ``topic`` of ``flow`` read from cluster ``source``."""
        s = flow.settings
        group = {"ConsumerGroupId": flow.consumer_group_id(topic)}
        params = self.common_parameters()
        params.update(Topics=[topic], StartingPosition=s.starting_position, BatchSize=s.batch_size, Enabled=enabled)
        if self.deployment:
            params["Tags"] = {DEPLOYMENT_TAG: self.deployment, FLOW_TAG: flow.name}
        window = batching_window_seconds(s.batching_window_ms)
        if window is not None:
            params["MaximumBatchingWindowInSeconds"] = window
        if self.msk_cluster_arn:
            params["AmazonManagedKafkaEventSourceConfig"] = group
        else:
            params["SelfManagedEventSource"] = {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": list(source.bootstrap_servers)}
            }
            params["SelfManagedKafkaEventSourceConfig"] = group
        return params

    @classmethod
    def from_json(cls, flow: str, value: Any) -> EventSourceTemplate:
        """Read the ``common_parameters`` form back; problems name the flow and the key."""
        where = f"event sources of {flow}"
        if not isinstance(value, Mapping) or not isinstance(value.get("FunctionName"), str):
            raise ConfigError([f"{where}: allowed: an object with FunctionName and CreateEventSourceMapping keys"])
        unknown = set(value) - set(_TEMPLATE_KEYS)
        if unknown:
            raise ConfigError(
                [f"{where}: unknown keys {', '.join(sorted(unknown))} (allowed: {', '.join(_TEMPLATE_KEYS)})"]
            )
        pollers = value.get("ProvisionedPollerConfig")
        try:
            return cls(
                function_name=value["FunctionName"],
                msk_cluster_arn=value.get("EventSourceArn"),
                access_configurations=tuple(
                    (str(a["Type"]), str(a["URI"])) for a in value.get("SourceAccessConfigurations", [])
                ),
                pollers=ProvisionedPollers(
                    int(pollers["MinimumPollers"]), int(pollers["MaximumPollers"]), pollers.get("PollerGroupName")
                )
                if pollers
                else None,
                on_failure=value.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
                max_retry_attempts=value.get("MaximumRetryAttempts"),
                max_record_age_seconds=value.get("MaximumRecordAgeInSeconds"),
                bisect_batch_on_error=bool(value.get("BisectBatchOnFunctionError", False)),
                metrics=tuple(value.get("MetricsConfig", {}).get("Metrics", ())),
                deployment=str(value.get("Tags", {}).get(DEPLOYMENT_TAG, "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError([f"{where}: malformed ({type(exc).__name__}: {exc})"]) from None


_TEMPLATE_KEYS = (
    "FunctionName",
    "EventSourceArn",
    "SourceAccessConfigurations",
    "ProvisionedPollerConfig",
    "DestinationConfig",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MetricsConfig",
    "Tags",
)


def batching_window_seconds(window_ms: int) -> int | None:
    """``smm.batching.window.ms`` as the ESM's whole seconds; None keeps Lambda's 500 ms default."""
    if window_ms == LAMBDA_DEFAULT_BATCHING_WINDOW_MS:
        return None
    return min(300, round(window_ms / 1000))


def event_sources() -> dict[str, EventSourceTemplate]:
    """Flow name -> template, from ``SMM_EVENT_SOURCES`` (JSON) or the SSM parameter ``SMM_EVENT_SOURCES_PARAMETER``.

    Empty when neither is set (the local runtime, or a deployment without mirror functions).
    """
    raw = os.environ.get(EVENT_SOURCES_ENV, "").strip()
    where = EVENT_SOURCES_ENV
    if not raw and os.environ.get(EVENT_SOURCES_PARAMETER_ENV):
        where = os.environ[EVENT_SOURCES_PARAMETER_ENV]
        raw = _parameter(where)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{where}: not JSON ({exc.msg})"]) from None
    if not isinstance(value, Mapping):
        raise ConfigError([f'{where}: allowed: a JSON object of flow name to template, e.g. {{"A->B": {{...}}}}'])
    return {flow: EventSourceTemplate.from_json(flow, template) for flow, template in value.items()}


def event_sources_json(templates: Mapping[str, EventSourceTemplate]) -> dict[str, Any]:
    """The JSON form ``event_sources`` reads (what the stack writes)."""
    return {flow: t.common_parameters() for flow, t in templates.items()}
