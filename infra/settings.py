"""Deploy-time settings: what ``mm2.properties`` cannot say about AWS (cluster ARNs, secrets, network, sizing).

They come from a JSON file (``cdk deploy -c settings=deploy.json``) or an object under the context key
``settings`` in ``cdk.json``. Every problem is reported at once, each naming its key and what is allowed, before
anything is synthesized. ``Deployment.resolve`` then checks the settings against the configuration (which
clusters need which secret, which authentication each cluster uses) so that a mismatch fails ``cdk synth``
instead of a Lambda poller at 3 a.m.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from functions.heartbeats import health
from shared.aws import providers
from shared.aws.config_source import ProvisionedPollers
from shared.mm2 import properties
from shared.mm2 import providers as mm2_providers
from shared.mm2.client_settings import parse_jaas_config
from shared.mm2.config import FLOW_ARROW, ClusterConfig, FlowConfig, MirrorConfig

T = TypeVar("T")
D = TypeVar("D")

FUNCTION_KINDS = ("mirror", "config_sync", "heartbeats", "checkpoints")
RUNTIMES = ("python3.14", "python3.13")
ARCHITECTURES = ("arm64", "x86_64")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# CloudWatch Logs accepts only these retention periods.
RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,29}")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
_MSK_ARN = re.compile(r"arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9-]+/[A-Za-z0-9-]+")
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}")
_KMS_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
_DESTINATION_ARN = re.compile(r"arn:aws[a-z-]*:(sqs|sns|s3):[a-z0-9-]*:(\d{12})?:[A-Za-z0-9_.\-]+")
KAFKA_DESTINATION_PREFIX = "kafka://"
_KAFKA_DESTINATION = re.compile(r"kafka://[A-Za-z0-9._\-]{1,249}")
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+")
_VPC_ID = re.compile(r"vpc-[0-9a-f]{8,17}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
_SG_ID = re.compile(r"sg-[0-9a-f]{8,17}")
_POLLER_GROUP = re.compile(r"[A-Za-z0-9_-]{1,100}")


class SettingsError(ValueError):
    """Problems in the deploy settings (or between them and the configuration); ``problems`` lists each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid deploy settings:\n  - " + "\n  - ".join(self.problems))


class Egress(Enum):
    """How a VPC reaches AWS APIs: what on-demand Kafka pollers in it need besides the brokers.

    Synth cannot see the VPC, so the settings say; ``UNKNOWN`` makes synth list what is needed.
    """

    NAT = "nat"  # a NAT gateway (or another route to the public endpoints)
    ENDPOINTS = "endpoints"  # interface endpoints for Lambda and STS (and Secrets Manager when a secret is used)
    UNKNOWN = "unknown"


class Auth(Enum):
    """How a cluster authenticates clients; derived from its ``mm2.properties`` client settings."""

    IAM = "iam"
    SCRAM_512 = "sasl-scram-512"
    SCRAM_256 = "sasl-scram-256"
    PLAIN = "sasl-plain"
    MTLS = "mtls"
    TLS = "tls"  # encrypted, not authenticated
    NONE = "none"

    @property
    def needs_secret(self) -> bool:
        return self not in (Auth.IAM, Auth.TLS, Auth.NONE)


# --- the settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """Subnets and security groups in one VPC (ids only: synth makes no AWS lookups), and how it reaches AWS."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    egress: Egress = Egress.UNKNOWN


@dataclass(frozen=True)
class ClusterSettings:
    """AWS facts of one cluster alias: MSK or self-managed, where its secrets are, how its ESMs reach it."""

    alias: str
    msk_cluster_arn: str | None = None
    secret_arn: str | None = None
    create_secret: bool = False
    root_ca_secret_arn: str | None = None
    kms_key_arn: str | None = None
    event_source_network: Network | None = None

    @property
    def is_msk(self) -> bool:
        return self.msk_cluster_arn is not None


@dataclass(frozen=True)
class EventSourceSettings:
    """Deploy-time options of a flow's event-source mappings (the rest comes from ``mm2.properties``)."""

    provisioned_pollers: ProvisionedPollers | None = None
    on_failure: str | None = None  # "sqs" (a queue this stack creates), kafka://topic, or an SQS/SNS/S3 ARN
    max_retry_attempts: int | None = None
    max_record_age_seconds: int | None = None
    bisect_batch_on_error: bool = False
    metrics: bool = False


@dataclass(frozen=True)
class FunctionSettings:
    memory_mb: int
    timeout_seconds: int


DEFAULT_FUNCTIONS = {
    "mirror": FunctionSettings(1024, 120),
    "config_sync": FunctionSettings(512, 300),
    # Loops for a whole schedule period (60 s) when the heartbeat interval is shorter than a minute.
    "heartbeats": FunctionSettings(256, 120),
    "checkpoints": FunctionSettings(512, 180),
}


@dataclass(frozen=True)
class AlarmSettings:
    replication_latency_seconds: int = 60
    offset_lag_records: int = 10_000
    # No heartbeat crossing a flow for this long is a stall (whatever its cause: mapping, network, credentials).
    heartbeat_age_seconds: int = 300
    topic_arn: str | None = None


@dataclass(frozen=True)
class DeploySettings:
    """Everything ``cdk deploy`` needs besides ``mm2.properties``; see docs/deploy.md for the table."""

    name: str = "smm"
    account: str | None = None
    region: str | None = None
    runtime: str = RUNTIMES[0]
    architecture: str = "arm64"
    log_level: str = "INFO"
    log_retention_days: int = 30
    config_max_age_seconds: int = 30
    network: Network | None = None
    clusters: Mapping[str, ClusterSettings] = field(default_factory=dict)
    event_source: EventSourceSettings = EventSourceSettings()
    flow_event_sources: Mapping[str, EventSourceSettings] = field(default_factory=dict)
    deploy_disabled_flows: bool = False
    functions: Mapping[str, FunctionSettings] = field(default_factory=lambda: dict(DEFAULT_FUNCTIONS))
    alarms: AlarmSettings = AlarmSettings()

    def cluster(self, alias: str) -> ClusterSettings:
        return self.clusters.get(alias) or ClusterSettings(alias)

    def event_source_for(self, flow: str) -> EventSourceSettings:
        return self.flow_event_sources.get(flow, self.event_source)


# --- reading -----------------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object that records problems (with the key's path) instead of raising."""

    def __init__(self, data: Any, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        self._seen: set[str] = set()
        if not isinstance(data, Mapping):
            problems.append(f"{path}: allowed: a JSON object")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, check: Callable[[Any], T], default: D, allowed: str) -> T | D:
        self._seen.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        value = self.data[name]
        try:
            return check(value)
        except (TypeError, ValueError):
            self.problems.append(f"{self.key(name)} = {json.dumps(value)}: allowed: {allowed}")
            return default

    def text(self, name: str, pattern: re.Pattern[str] | None = None, allowed: str = "a string") -> str | None:
        def check(value: Any) -> str:
            if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
                raise ValueError
            return value

        return self.get(name, check, None, allowed)

    def choice(self, name: str, choices: Iterable[Any], default: T) -> T:
        options = list(choices)

        def check(value: Any) -> T:
            if value not in options:
                raise ValueError
            return value  # type: ignore[no-any-return]

        return self.get(name, check, default, ", ".join(json.dumps(o) for o in options))

    def number(self, name: str, low: int, high: int, default: D) -> int | D:
        def check(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError
            return value

        return self.get(name, check, default, f"a whole number from {low} to {high}")

    def flag(self, name: str, default: bool = False) -> bool:
        def check(value: Any) -> bool:
            if not isinstance(value, bool):
                raise ValueError
            return value

        return self.get(name, check, default, "true or false")

    def ids(self, name: str, pattern: re.Pattern[str], example: str) -> tuple[str, ...]:
        def check(value: Any) -> tuple[str, ...]:
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value)
            ):
                raise ValueError
            return tuple(value)

        return self.get(name, check, (), f'a non-empty list like ["{example}"]')

    def child(self, name: str) -> _Reader | None:
        self._seen.add(name)
        if self.data.get(name) is None:
            return None
        return _Reader(self.data[name], self.key(name), self.problems)

    def children(self, name: str) -> dict[str, _Reader]:
        self._seen.add(name)
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(f"{self.key(name)}: allowed: a JSON object")
            return {}
        return {k: _Reader(v, f"{self.key(name)}.{k}", self.problems) for k, v in value.items()}

    def done(self) -> None:
        """Report keys nobody asked for: usually a typo."""
        for name in sorted(set(self.data) - self._seen):
            self.problems.append(f"{self.key(name)}: unknown setting (allowed: {', '.join(sorted(self._seen))})")


def load(source: str | Path | Mapping[str, Any] | None) -> DeploySettings:
    """Settings from a JSON file path, an already-parsed object (``cdk.json`` context), or None (defaults)."""
    if source is None:
        return parse({})
    if isinstance(source, Mapping):
        return parse(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):  # -c settings='{"name": ...}'
        try:
            return parse(json.loads(source))
        except json.JSONDecodeError as exc:
            raise SettingsError([f"settings: not JSON ({exc.msg})"]) from None
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError([f"settings file {path}: cannot read it ({exc.strerror})"]) from None
    except json.JSONDecodeError as exc:
        raise SettingsError([f"settings file {path}: not JSON ({exc.msg} at line {exc.lineno})"]) from None
    return parse(data)


def parse(data: Any) -> DeploySettings:
    problems: list[str] = []
    r = _Reader(data, "", problems)
    defaults = DeploySettings()
    network = r.child("network")
    event_source = r.child("event_source")
    alarms = r.child("alarms")
    settings = DeploySettings(
        name=r.text("name", _NAME, "1-30 letters, digits and '-', starting with a letter") or defaults.name,
        account=r.text("account", _ACCOUNT, "a 12-digit AWS account id"),
        region=r.text("region", _REGION, "an AWS region such as eu-west-1"),
        runtime=r.choice("runtime", RUNTIMES, defaults.runtime),
        architecture=r.choice("architecture", ARCHITECTURES, defaults.architecture),
        log_level=r.choice("log_level", LOG_LEVELS, defaults.log_level),
        log_retention_days=r.choice("log_retention_days", RETENTION_DAYS, defaults.log_retention_days),
        config_max_age_seconds=r.number("config_max_age_seconds", 0, 3600, defaults.config_max_age_seconds),
        network=_network(network) if network else None,
        clusters={alias: _cluster(alias, c) for alias, c in r.children("clusters").items()},
        event_source=_event_source(event_source) if event_source else EventSourceSettings(),
        flow_event_sources={name: _event_source(e) for name, e in _flow_overrides(r, event_source).items()},
        deploy_disabled_flows=r.flag("deploy_disabled_flows"),
        functions=_functions(r.children("functions"), problems),
        alarms=_alarms(alarms) if alarms else AlarmSettings(),
    )
    r.done()
    for name in settings.flow_event_sources:
        if FLOW_ARROW not in name:
            problems.append(f"flow_event_sources.{name}: a flow is named SOURCE->TARGET, e.g. onprem->cloud")
    if problems:
        raise SettingsError(problems)
    return settings


def _network(r: _Reader) -> Network:
    network = Network(
        vpc_id=r.text("vpc_id", _VPC_ID, "a VPC id such as vpc-0123456789abcdef0") or "",
        subnet_ids=r.ids("subnet_ids", _SUBNET_ID, "subnet-0123456789abcdef0"),
        security_group_ids=r.ids("security_group_ids", _SG_ID, "sg-0123456789abcdef0"),
        egress=Egress(r.choice("egress", [e.value for e in Egress], Egress.UNKNOWN.value)),
    )
    if not network.vpc_id:
        r.problems.append(f"{r.key('vpc_id')}: missing")
    if not network.subnet_ids:
        r.problems.append(f"{r.key('subnet_ids')}: missing")
    if not network.security_group_ids:
        r.problems.append(f"{r.key('security_group_ids')}: missing")
    r.done()
    return network


def _cluster(alias: str, r: _Reader) -> ClusterSettings:
    network = r.child("event_source_network")
    cluster = ClusterSettings(
        alias=alias,
        msk_cluster_arn=r.text("msk_cluster_arn", _MSK_ARN, "an MSK cluster ARN (arn:aws:kafka:...:cluster/NAME/UUID)"),
        secret_arn=r.text("secret_arn", _SECRET_ARN, "a complete Secrets Manager ARN, with its 6-character suffix"),
        create_secret=r.flag("create_secret"),
        root_ca_secret_arn=r.text("root_ca_secret_arn", _SECRET_ARN, "a complete Secrets Manager ARN"),
        kms_key_arn=r.text("kms_key_arn", _KMS_ARN, "a KMS key ARN (arn:aws:kms:...:key/ID)"),
        event_source_network=_network(network) if network else None,
    )
    r.done()
    if cluster.secret_arn and cluster.create_secret:
        r.problems.append(f"{r.path}: set secret_arn (an existing secret) or create_secret, not both")
    if cluster.is_msk and (cluster.root_ca_secret_arn or cluster.event_source_network):
        r.problems.append(
            f"{r.path}: root_ca_secret_arn and event_source_network are for self-managed clusters; "
            "MSK brings its own certificates and network"
        )
    return cluster


def _event_source(r: _Reader) -> EventSourceSettings:
    pollers_reader = r.child("provisioned_pollers")
    pollers = None
    if pollers_reader:
        low = pollers_reader.number("minimum", 1, 200, 1)
        high = pollers_reader.number("maximum", 1, 2000, 200)
        group = pollers_reader.text("group", _POLLER_GROUP, "1-100 letters, digits, '-' and '_'")
        pollers_reader.done()
        if high < low:
            r.problems.append(f"{pollers_reader.path}: maximum ({high}) is below minimum ({low})")
        pollers = ProvisionedPollers(low, high, group)

    def destination(value: Any) -> str:
        if value == "sqs" or (
            isinstance(value, str) and (_KAFKA_DESTINATION.fullmatch(value) or _DESTINATION_ARN.fullmatch(value))
        ):
            return str(value)
        raise ValueError

    settings = EventSourceSettings(
        provisioned_pollers=pollers,
        on_failure=r.get(
            "on_failure", destination, None, '"sqs" (a queue the stack creates), "kafka://TOPIC" or an SQS/SNS/S3 ARN'
        ),
        max_retry_attempts=r.number("max_retry_attempts", -1, 10_000, None),
        max_record_age_seconds=r.number("max_record_age_seconds", -1, 604_800, None),
        bisect_batch_on_error=r.flag("bisect_batch_on_error"),
        metrics=r.flag("metrics"),
    )
    r.done()
    provisioned_only = [
        name
        for name, used in (
            ("max_retry_attempts", settings.max_retry_attempts is not None),
            ("max_record_age_seconds", settings.max_record_age_seconds is not None),
            ("bisect_batch_on_error", settings.bisect_batch_on_error),
            ("metrics", settings.metrics),
            ("on_failure (kafka://)", (settings.on_failure or "").startswith("kafka://")),
        )
        if used
    ]
    if provisioned_only and pollers is None:
        r.problems.append(
            f"{r.path}: {', '.join(provisioned_only)} need provisioned mode for Kafka event sources; "
            "set provisioned_pollers too (or leave them out)"
        )
    age = settings.max_record_age_seconds
    if age is not None and age != -1 and age < 60:
        r.problems.append(f"{r.key('max_record_age_seconds')} = {age}: allowed: -1 (never) or 60 to 604800")
    return settings


def _flow_overrides(r: _Reader, base: _Reader | None) -> dict[str, _Reader]:
    """Per-flow event-source settings: each one's keys over those of ``event_source``."""
    flows = r.children("flow_event_sources")
    for reader in flows.values():
        if base is not None and isinstance(reader.data, Mapping):
            reader.data = {**base.data, **reader.data}
    return flows


def _functions(readers: Mapping[str, _Reader], problems: list[str]) -> dict[str, FunctionSettings]:
    functions = dict(DEFAULT_FUNCTIONS)
    for kind, r in readers.items():
        if kind not in FUNCTION_KINDS:
            problems.append(f"{r.path}: unknown function kind (allowed: {', '.join(FUNCTION_KINDS)})")
            continue
        default = DEFAULT_FUNCTIONS[kind]
        functions[kind] = FunctionSettings(
            memory_mb=r.number("memory_mb", 128, 10_240, default.memory_mb),
            timeout_seconds=r.number("timeout_seconds", 10, 900, default.timeout_seconds),
        )
        r.done()
    return functions


def _alarms(r: _Reader) -> AlarmSettings:
    defaults = AlarmSettings()
    alarms = AlarmSettings(
        replication_latency_seconds=r.number(
            "replication_latency_seconds", 1, 86_400, defaults.replication_latency_seconds
        ),
        offset_lag_records=r.number("offset_lag_records", 1, 10**12, defaults.offset_lag_records),
        heartbeat_age_seconds=r.number("heartbeat_age_seconds", 60, 86_400, defaults.heartbeat_age_seconds),
        topic_arn=r.text("topic_arn", _SNS_ARN, "an SNS topic ARN"),
    )
    r.done()
    return alarms


# --- settings + configuration ------------------------------------------------------------------------------

# Java client keys that carry credentials or point at local files: not allowed in a deployed mm2.properties,
# whose text is stored in plain sight (template, SSM parameter). Secrets Manager carries them instead.
_CREDENTIAL_KEYS = {
    "sasl.jaas.config": "put the username and password in a Secrets Manager secret (clusters.<alias>.secret_arn), "
    'or refer to one: password="${secretsmanager:<secret>:password}"',
    "ssl.keystore.password": "put the key in a Secrets Manager secret (clusters.<alias>.secret_arn)",
    "ssl.key.password": "put the key in a Secrets Manager secret (clusters.<alias>.secret_arn)",
    "ssl.truststore.password": "a PEM truststore needs no password",
    "ssl.keystore.location": "a Lambda function has no such file; use clusters.<alias>.secret_arn (mTLS)",
    "ssl.truststore.location": "a Lambda function has no such file; use clusters.<alias>.root_ca_secret_arn",
}


@dataclass(frozen=True)
class ClusterPlan:
    """One cluster as deployed: its settings and the authentication its properties ask for."""

    config: ClusterConfig
    settings: ClusterSettings
    auth: Auth

    @property
    def alias(self) -> str:
        return self.config.alias


@dataclass(frozen=True)
class Deployment:
    """The checked combination of ``mm2.properties`` and deploy settings the stack is built from."""

    config: MirrorConfig
    config_text: str
    settings: DeploySettings
    clusters: Mapping[str, ClusterPlan]
    mirrored_flows: tuple[FlowConfig, ...]
    # What synth lets through but you should know (infra.app prints them): settings that let a mapping skip a
    # batch, network paths synth cannot see.
    warnings: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, config: MirrorConfig, config_text: str, settings: DeploySettings) -> Deployment:
        """Check settings against the configuration; raises ``SettingsError`` listing every problem."""
        problems: list[str] = []
        for alias in settings.clusters:
            if alias not in config.clusters:
                problems.append(f"clusters.{alias}: no such cluster in mm2.properties ({', '.join(config.clusters)})")
        flows = tuple(f for f in config.flows if f.enabled or settings.deploy_disabled_flows)
        for name in settings.flow_event_sources:
            if name not in {f.name for f in flows}:
                problems.append(f"flow_event_sources.{name}: not a deployed flow ({', '.join(f.name for f in flows)})")
        clusters: dict[str, ClusterPlan] = {}
        for alias, cluster in config.clusters.items():
            for key in cluster.client.keys() | {k for role in cluster.roles.values() for k in role}:
                if key in _CREDENTIAL_KEYS and not _no_credential_in_text(cluster, key):
                    problems.append(
                        f"{alias}.{key} in mm2.properties: not allowed in a deployment; {_CREDENTIAL_KEYS[key]}"
                    )
            clusters[alias] = ClusterPlan(
                cluster, settings.cluster(alias), _auth(cluster, settings.cluster(alias), problems)
            )
        warnings: list[str] = []
        for flow in flows:
            _check_flow(flow, settings, clusters[flow.source], problems)
            _check_event_source(flow, settings, clusters[flow.source], problems, warnings)
        _check_heartbeat_alarm(config, settings, problems)
        _check_lambda_can_read(config, config_text, problems)
        if problems:
            raise SettingsError(problems)
        return cls(config, config_text, settings, clusters, flows, tuple(warnings))

    @property
    def enabled_flows(self) -> tuple[FlowConfig, ...]:
        return tuple(f for f in self.mirrored_flows if f.enabled)

    @property
    def provider_references(self) -> list[providers.AwsReference]:
        """The secrets and parameters the functions read through the file's config provider references."""
        return providers.aws_references(properties.load(self.config_text))

    @property
    def assumed_roles(self) -> list[str]:
        """The roles the clusters' MSK IAM login options (``awsRoleArn``) name."""
        roles = {
            iam.role_arn
            for cluster in self.config.clusters.values()
            for role in ("producer", "consumer", "admin")
            if (iam := cluster.settings(role).iam) is not None and iam.role_arn
        }
        return sorted(roles)


def _no_credential_in_text(cluster: ClusterConfig, key: str) -> bool:
    """A credential key whose text holds no secret: MSK IAM's login module, or only provider references."""
    value = {**cluster.client, **{k: v for role in cluster.roles.values() for k, v in role.items()}}[key]
    if key == "sasl.jaas.config" and cluster.settings("admin").iam is not None:
        return True
    if key.endswith("password") or key == "sasl.jaas.config":
        secrets = (
            [v for k, v in parse_jaas_config(value).options.items() if k == "password"] if "jaas" in key else [value]
        )
        return all(mm2_providers.REFERENCE.fullmatch(s.strip()) for s in secrets)
    return False


def _check_lambda_can_read(config: MirrorConfig, config_text: str, problems: list[str]) -> None:
    """What the file points to must exist where the functions run: no AWS profiles, no local files or variables."""
    for alias, cluster in config.clusters.items():
        iam = cluster.settings("admin").iam
        if iam is not None and iam.profile:
            problems.append(
                f"{alias}.sasl.jaas.config: awsProfileName={iam.profile!r} cannot work in Lambda (there are no AWS "
                "profiles there); remove it (the function's role is used) or name a role with awsRoleArn"
            )
    raw = properties.load(config_text)
    for key, value in raw.items():
        for ref in mm2_providers.references(value):
            cls = providers.declared_class(raw, ref.provider)
            if cls in mm2_providers.KAFKA_PROVIDERS:
                problems.append(
                    f"{key}: {ref.text} is read where the functions run, which has neither this machine's files nor "
                    "its environment; use ${secretsmanager:<secret>:<key>} or ${ssm::<parameter>} "
                    f"({providers.SECRETS_MANAGER_PROVIDER}, {providers.SSM_PROVIDER})"
                )


def _auth(cluster: ClusterConfig, settings: ClusterSettings, problems: list[str]) -> Auth:
    """The cluster's authentication, from ``security.protocol``/``sasl.mechanism``, checked against settings."""
    protocol = _protocol(cluster)
    mechanism = cluster.client.get("sasl.mechanism", "").strip()
    alias = cluster.alias
    has_secret = bool(settings.secret_arn or settings.create_secret)
    if protocol.startswith("SASL_"):
        auth = {
            "AWS_MSK_IAM": Auth.IAM,
            "SCRAM-SHA-512": Auth.SCRAM_512,
            "SCRAM-SHA-256": Auth.SCRAM_256,
            "PLAIN": Auth.PLAIN,
        }.get(mechanism or "PLAIN")
        if auth is None:
            problems.append(
                f"{alias}.sasl.mechanism = {mechanism}: not supported by Lambda event sources here; "
                "allowed: AWS_MSK_IAM, SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"
            )
            return Auth.NONE
    elif protocol == "SSL":
        auth = Auth.MTLS if has_secret else Auth.TLS
    else:
        auth = Auth.NONE
    if auth is Auth.IAM and (not settings.is_msk or protocol != "SASL_SSL"):
        problems.append(
            f"{alias}: sasl.mechanism=AWS_MSK_IAM needs an MSK cluster (clusters.{alias}.msk_cluster_arn) "
            "and security.protocol=SASL_SSL"
        )
    if settings.is_msk and auth in (Auth.SCRAM_256, Auth.PLAIN):
        problems.append(f"{alias}: MSK supports IAM, SCRAM-SHA-512 and mTLS; {mechanism} is for self-managed Kafka")
    if auth.needs_secret and not has_secret:
        problems.append(
            f"{alias}: {auth.value} authentication needs credentials: set clusters.{alias}.secret_arn "
            f"(an existing secret) or clusters.{alias}.create_secret"
        )
    if settings.create_secret and auth is Auth.MTLS:
        problems.append(
            f"{alias}: mTLS needs your client certificate; create the secret yourself "
            f'({{"certificate": PEM, "privateKey": PEM}}) and set clusters.{alias}.secret_arn'
        )
    if has_secret and not auth.needs_secret:
        problems.append(
            f"{alias}: a secret is set but mm2.properties asks for {auth.value} "
            f"(security.protocol={protocol}{', sasl.mechanism=' + mechanism if mechanism else ''})"
        )
    if settings.root_ca_secret_arn and protocol not in ("SSL", "SASL_SSL"):
        problems.append(f"{alias}: root_ca_secret_arn needs security.protocol SSL or SASL_SSL")
    return auth


def _protocol(cluster: ClusterConfig) -> str:
    return cluster.client.get("security.protocol", "PLAINTEXT").strip()


def _check_flow(flow: FlowConfig, settings: DeploySettings, source: ClusterPlan, problems: list[str]) -> None:
    """What a flow's event-source mappings need from its source cluster's settings."""
    if source.settings.is_msk:
        return
    network = source.settings.event_source_network or settings.network
    if source.auth in (Auth.NONE, Auth.TLS) and network is None:
        problems.append(
            f"{flow.name}: Lambda reads an unauthenticated self-managed cluster ({source.alias}) only inside a VPC; "
            f"set network or clusters.{source.alias}.event_source_network"
        )
    if len(source.config.bootstrap_servers) > 10:
        problems.append(f"{source.alias}.bootstrap.servers: a Kafka event source takes at most 10 servers")


def _event_source_key(flow: FlowConfig, settings: DeploySettings) -> str:
    """Where the flow's event-source settings come from: its override, or the shared ``event_source``."""
    return f"flow_event_sources.{flow.name}" if flow.name in settings.flow_event_sources else "event_source"


def _check_event_source(
    flow: FlowConfig, settings: DeploySettings, source: ClusterPlan, problems: list[str], warnings: list[str]
) -> None:
    """What Lambda's mappings of the flow would refuse or silently need, from their settings and source."""
    options = settings.event_source_for(flow.name)
    key = _event_source_key(flow, settings)
    if _protocol(source.config) == "SASL_PLAINTEXT" and source.auth is not Auth.IAM:  # IAM: refused by _auth
        problems.append(
            f"{flow.name}: {source.alias}.security.protocol = SASL_PLAINTEXT: Lambda's Kafka event source speaks "
            f"SASL only over TLS, so its mappings could not log in to the flow's source; allowed: SASL_SSL (or SSL, "
            "or PLAINTEXT inside a VPC)"
        )
    destination = options.on_failure or ""
    if destination.startswith(KAFKA_DESTINATION_PREFIX):
        _check_failure_topic(flow, destination.removeprefix(KAFKA_DESTINATION_PREFIX), f"{key}.on_failure", problems)
    skipping = skipping_settings(options)
    if skipping:
        warnings.append(
            f"{flow.name}: {' and '.join(f'{key}.{s}' for s in skipping)}: the event-source mappings may move past "
            "a batch they could not deliver (with a failure destination Lambda retries at most 10 times); the "
            "mirror then copies the skipped range from the source itself before its next batch, so nothing is "
            f"lost, but the RecoveredRecords alarm of {flow.name} fires"
        )
    if options.provisioned_pollers is None:
        warning = _on_demand_network(flow, settings, source, key)
        if warning:
            warnings.append(warning)


def skipping_settings(options: EventSourceSettings) -> list[str]:
    """The settings (``key = value``) that let the flow's mappings move past a batch instead of retrying it
    until it succeeds: what makes ``EventSourceTemplate.may_skip`` true."""
    limits = (
        ("max_retry_attempts", options.max_retry_attempts),
        ("max_record_age_seconds", options.max_record_age_seconds),
        ("on_failure", options.on_failure),
    )
    return [f"{name} = {json.dumps(value)}" for name, value in limits if value is not None and value != -1]


def _check_failure_topic(flow: FlowConfig, topic: str, key: str, problems: list[str]) -> None:
    """A Kafka failure topic is created by the deployment on the flow's source: refuse one that cannot work."""
    where = f"{flow.name}: {key} = {json.dumps(KAFKA_DESTINATION_PREFIX + topic)}"
    policy = flow.policy()
    if topic.startswith("."):
        problems.append(f"{where}: Kafka and Lambda refuse this topic name; allowed: a name not starting with '.'")
    elif policy.is_internal_topic(topic) or policy.is_heartbeats_topic(topic):
        problems.append(
            f"{where}: an internal topic (Kafka's, MM2's or heartbeats) cannot take failed records; allowed: a "
            "topic of your own, such as smm-esm-failures"
        )
    elif topic in flow.settings.topics:
        problems.append(
            f"{where}: {flow.name}.topics lists it, and a mapping's failure topic must differ from the topic it "
            "reads; allowed: a topic the flow does not list"
        )
    elif flow.topic_selector().should_replicate(topic):
        problems.append(
            f"{where}: {flow.name}'s topic filter (topics, topics.exclude) selects it, so failed records would be "
            f"mirrored (and a failure there sent back to it); add it to {flow.name}.topics.exclude or choose a "
            "name the filter does not match"
        )


# VPC interface endpoints on-demand pollers call (the Lambda service for their control, STS for the execution
# role's credentials), and Secrets Manager for the mapping's secrets.
_POLLER_ENDPOINTS = ("lambda", "sts")
_SECRET_ENDPOINT = "secretsmanager"


def _on_demand_network(flow: FlowConfig, settings: DeploySettings, source: ClusterPlan, key: str) -> str | None:
    """A warning for on-demand pollers inside a VPC whose way to AWS APIs the settings do not state."""
    cluster = source.settings
    own_network = cluster.event_source_network is not None
    network = cluster.event_source_network or settings.network
    if not cluster.is_msk and network is None:
        return None  # self-managed brokers reached over the internet: pollers run in Lambda's own network
    if network is not None and network.egress is not Egress.UNKNOWN:
        return None
    egress_key = f"clusters.{source.alias}.event_source_network.egress" if own_network else "network.egress"
    region = settings.region or "<region>"
    uses_secret = bool(cluster.secret_arn or cluster.create_secret or cluster.root_ca_secret_arn)
    services = _POLLER_ENDPOINTS + ((_SECRET_ENDPOINT,) if uses_secret else ())
    endpoints = ", ".join(f"com.amazonaws.{region}.{s}" for s in services)
    where = (
        f"MSK cluster {source.alias}, in the cluster's own subnets and security groups"
        if cluster.is_msk
        else f"{source.alias} inside the VPC ({egress_key.removesuffix('.egress')})"
    )
    msk = (
        " MSK pollers also need the cluster's security groups to allow inbound traffic from themselves "
        "(a self-referencing rule)."
        if cluster.is_msk
        else ""
    )
    return (
        f"{flow.name}: on-demand event-source pollers (no {key}.provisioned_pollers) read {where}; from there they "
        f"must reach AWS APIs: VPC interface endpoints {endpoints}, or a NAT gateway.{msk} Synth cannot see the "
        f'VPC: set {egress_key} to "endpoints" or "nat" once one is in place (provisioned pollers need neither)'
    )


def _check_heartbeat_alarm(config: MirrorConfig, settings: DeploySettings, problems: list[str]) -> None:
    """The heartbeat-age alarm must leave room for the time between two heartbeats, or it never clears."""
    age = settings.alarms.heartbeat_age_seconds
    for flow in health.measured_flows(config):
        emitters = health.heartbeat_sources(config, flow)
        interval = min(f.settings.emit_heartbeats_interval_seconds for f in emitters)
        if age < 2 * interval:
            problems.append(
                f"alarms.heartbeat_age_seconds = {age}: heartbeats reach {flow.source} every {interval} s at best "
                f"(emit.heartbeats.interval.seconds of {', '.join(f.name for f in emitters)}), so the heartbeat age "
                f"of {flow.name} grows to {interval} s between two; allowed: at least {2 * interval}"
            )
