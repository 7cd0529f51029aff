"""The last good configuration: a bad edit keeps what runs, ConfigRejected is published, secrets are refreshed.

No AWS here: the text, the parsing (with a fake secret store) and the clock are the test's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from functions.mirror.mirror import MirrorError
from functions.scheduled import TaskCache
from shared.aws.live_config import RETRY_REJECTED_SECONDS, ConfigSource, LiveConfig
from shared.kafka.clients import ClusterAuthenticationError, ClusterError, KafkaClients
from shared.kafka.failures import is_authentication_failure
from shared.mm2 import config
from shared.mm2.client_settings import parse_jaas
from shared.mm2.config import ConfigError, FlowConfig, MirrorConfig

SERVICE = "smm-test-live-config"
MAX_AGE = 300.0
GOOD = """
clusters = A, B
A.bootstrap.servers = a:9092
B.bootstrap.servers = b:9092
A.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required \\
    username="mirror" password="@PASSWORD@";
A.security.protocol = SASL_SSL
A.sasl.mechanism = SCRAM-SHA-512
A->B.enabled = true
A->B.topics = orders
"""
TYPO = GOOD.replace("a:9092", "a9092")  # a console edit that lost a colon
TYPO_PROBLEM = "A.bootstrap.servers = 'a9092': allowed: host:port[,host:port...] (bad: a9092)"
OTHER_FLOW = GOOD.replace("A, B", "A, C").replace("B.", "C.").replace("A->B", "A->C")  # parses; no flow A->B


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Deployment:
    """The console-editable text and a secret store; parsing puts the current password into the text."""

    text: str = GOOD
    password: str = "first-pa55"
    unreadable: Exception | None = None
    parses: list[bool] = field(default_factory=list)  # the fresh_secrets flag of each parse

    def read_text(self) -> str:
        if self.unreadable is not None:
            raise self.unreadable
        return self.text

    def parse(self, text: str, fresh_secrets: bool) -> MirrorConfig:
        self.parses.append(fresh_secrets)
        return config.parse_text(text.replace("@PASSWORD@", self.password))

    def source(self) -> ConfigSource:
        return ConfigSource(self.read_text, self.parse, lambda: MAX_AGE)


@dataclass
class Built:
    """What a function builds from a configuration (the mirror's Mirror, in this test)."""

    flow: FlowConfig
    password: str
    closed: bool = False

    def close(self) -> None:
        self.closed = True


def build(mirror_config: MirrorConfig) -> Built:
    flow = mirror_config.flow("A", "B")  # ConfigError when the flow is gone, as flow_from_environment
    password = parse_jaas(mirror_config.cluster("A").client["sasl.jaas.config"])["password"]
    return Built(flow, password)


@pytest.fixture
def deployment() -> Deployment:
    return Deployment()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live(deployment: Deployment, clock: Clock) -> Iterator[LiveConfig[Built]]:
    live = LiveConfig(build, Built.close, SERVICE, deployment.source(), is_authentication_failure, clock)
    yield live
    live.close()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` with what the live configuration logs at INFO and above."""
    caplog.set_level(logging.INFO, logger=SERVICE)
    return caplog


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


def rejected_metrics(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF documents printed since the last call that carry ConfigRejected."""
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return [d for d in documents if "ConfigRejected" in d]


def errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno >= logging.ERROR]


def test_a_bad_edit_keeps_the_last_good_configuration_and_publishes_config_rejected(
    live: LiveConfig[Built],
    deployment: Deployment,
    logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = live.current()
    assert good.flow.name == "A->B" and rejected_metrics(capsys) == []

    deployment.text = TYPO
    assert live.current() is good and not good.closed
    [emitted] = rejected_metrics(capsys)
    assert emitted["ConfigRejected"] == [1.0] and emitted["service"] == SERVICE
    [definition] = emitted["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "ServerlessMirrorMaker"
    assert definition["Dimensions"] == [["service"]]  # no Flow: one alarm per function
    assert definition["Metrics"] == [{"Name": "ConfigRejected", "Unit": "Count"}]
    [error] = errors(logged.records)
    assert error.getMessage() == "configuration rejected: the last good configuration keeps running"
    assert error.__dict__["problems"] == [
        "A.bootstrap.servers = 'a9092': allowed: host:port[,host:port...] (bad: a9092)"
    ]
    assert error.__dict__["rejected"] != error.__dict__["running"]

    assert live.current() is good  # every invocation counts while the bad text is current; logged once
    assert len(rejected_metrics(capsys)) == 1 and len(errors(logged.records)) == 1

    deployment.text = GOOD.replace("orders", "orders|payments")  # fixed
    fixed = live.current()
    assert fixed is not good and good.closed and fixed.flow.settings.topics == ("orders|payments",)
    assert rejected_metrics(capsys) == []


def test_an_edit_whose_objects_cannot_be_built_is_rejected_too(
    live: LiveConfig[Built],
    deployment: Deployment,
    logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = live.current()
    deployment.text = OTHER_FLOW
    assert live.current() is good
    assert len(rejected_metrics(capsys)) == 1
    assert errors(logged.records)[0].__dict__["problems"] == ["no flow A->B (flows: A->C, C->A)"]


def test_a_cold_start_with_a_bad_text_fails_with_its_problems(
    live: LiveConfig[Built],
    deployment: Deployment,
    logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployment.text = TYPO
    for _ in range(2):
        with pytest.raises(ConfigError) as caught:
            live.current()
        assert caught.value.problems == [
            "A.bootstrap.servers = 'a9092': allowed: host:port[,host:port...] (bad: a9092)"
        ]
    assert len(rejected_metrics(capsys)) == 2
    [error] = errors(logged.records)
    assert error.getMessage() == "configuration rejected: there is no good configuration to run"

    deployment.text = GOOD
    assert live.current().flow.name == "A->B"


def test_the_same_bad_edit_made_again_after_a_fix_is_logged_again(
    live: LiveConfig[Built], deployment: Deployment, logged: pytest.LogCaptureFixture
) -> None:
    live.current()
    for _ in range(2):
        deployment.text = TYPO
        live.current()
        deployment.text = GOOD  # taken back: the running configuration again
        live.current()
    assert len(errors(logged.records)) == 2


def test_a_rejected_text_is_validated_again_after_a_while(
    live: LiveConfig[Built], deployment: Deployment, clock: Clock
) -> None:
    """The same text can become valid: e.g. the secret it needs was created after the edit."""
    good = live.current()
    deployment.text = OTHER_FLOW
    live.current()
    parsed = len(deployment.parses)
    clock.now += RETRY_REJECTED_SECONDS - 1
    assert live.current() is good and len(deployment.parses) == parsed  # not parsed on every invocation
    clock.now += 1
    assert live.current() is good and len(deployment.parses) == parsed + 1


def test_secrets_are_read_again_after_their_max_age(
    live: LiveConfig[Built], deployment: Deployment, clock: Clock, logged: pytest.LogCaptureFixture
) -> None:
    first = live.current()
    assert first.password == "first-pa55" and deployment.parses == [False]
    clock.now += MAX_AGE - 1
    assert live.current() is first and deployment.parses == [False]  # within the age: nothing read

    clock.now += 1
    assert live.current() is first and deployment.parses == [False, False]  # read again, unchanged: kept
    assert not first.closed

    deployment.password = "rotated-pa55"
    clock.now += MAX_AGE
    second = live.current()
    assert second.password == "rotated-pa55" and first.closed
    assert [r.__dict__["reason"] for r in logged.records if r.getMessage() == "configuration applied"] == [
        "text changed",
        "secrets changed",
    ]


def test_a_refused_login_reads_the_secrets_afresh_on_the_next_invocation(
    live: LiveConfig[Built], deployment: Deployment, logged: pytest.LogCaptureFixture
) -> None:
    first = live.current()
    deployment.password = "rotated-pa55"
    live.failed(ClusterError("cluster 'A' at a:9092 is unreachable"))  # not a login problem: nothing changes
    assert live.current() is first and deployment.parses == [False]

    live.failed(
        ClusterAuthenticationError("cannot log in to cluster 'A' at a:9092: the broker refused the credentials")
    )
    second = live.current()
    assert deployment.parses == [False, True]  # bypassing the secrets' cache, long before their max age
    assert second.password == "rotated-pa55" and first.closed
    assert live.current() is second and deployment.parses == [False, True]
    warning = next(r for r in logged.records if r.levelno == logging.WARNING)
    assert "rotated-pa55" not in warning.getMessage() + str(vars(warning))


def test_an_unreadable_text_keeps_the_last_good_configuration(
    live: LiveConfig[Built], deployment: Deployment, logged: pytest.LogCaptureFixture
) -> None:
    good = live.current()
    deployment.unreadable = RuntimeError("ThrottlingException")
    assert live.current() is good and live.current() is good
    assert [r.getMessage() for r in logged.records if r.levelno == logging.WARNING] == [
        "cannot read the configuration: the last good configuration keeps running"
    ]


def test_without_a_last_good_configuration_an_unreadable_text_fails(
    live: LiveConfig[Built], deployment: Deployment
) -> None:
    deployment.unreadable = ConfigError(["SMM_CONFIG_FILE=/nowhere: cannot read it: No such file or directory"])
    with pytest.raises(ConfigError, match="/nowhere"):
        live.current()


def test_close_releases_the_running_objects(live: LiveConfig[Built]) -> None:
    built = live.current()
    live.close()
    assert built.closed and live.current() is not built


# --- the scheduled functions' TaskCache uses the same path -------------------------------------------------


@dataclass
class RecordingTask:
    name: str
    error: Exception | None = None
    closed: bool = False

    def interval_seconds(self) -> float:
        return 60.0

    def run_once(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {}

    def close(self) -> None:
        self.closed = True


def test_task_cache_keeps_the_last_good_tasks_and_reads_secrets_after_a_refused_login(
    deployment: Deployment, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[RecordingTask] = []

    def build_tasks(mirror_config: MirrorConfig, clients: KafkaClients) -> dict[str, RecordingTask]:
        made.append(RecordingTask("role", error=SaslAuthenticationFailedError("Authentication failed")))
        return {f.name: made[-1] for f in mirror_config.enabled_flows()}

    cache = TaskCache(build_tasks, client_id=SERVICE, source=deployment.source(), clock=clock)
    try:
        [task] = cache.tasks().values()
        deployment.text = TYPO
        assert list(cache.tasks().values()) == [task] and len(made) == 1
        assert rejected_metrics(capsys)[0]["service"] == SERVICE

        deployment.text = GOOD
        with pytest.raises(SaslAuthenticationFailedError):
            task.run_once()  # as run_tasks calls it: the cache sees the refused login
        deployment.password = "rotated-pa55"
        [rebuilt] = cache.tasks().values()
        assert deployment.parses[-1] is True and rebuilt is not task and made[0].closed
    finally:
        cache.close()
    assert made[-1].closed


# --- which failures are a refused login --------------------------------------------------------------------


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("the batch failed") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        ClusterAuthenticationError("cannot connect to cluster 'A': the broker refused the client certificate"),
        SaslAuthenticationFailedError("Authentication failed during authentication due to invalid credentials"),
        _raised_from(SaslAuthenticationFailedError("invalid credentials")),
        MirrorError("mirroring records of t-0 to the target failed: SaslAuthenticationFailedError: [Error 58] ..."),
        KafkaException(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed")),
        KafkaException(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED)),
        RuntimeError(f"delivery failed: {KafkaError(KafkaError._AUTHENTICATION)}"),
    ],
    ids=["cluster-auth", "sasl", "chained", "mirror-text", "librdkafka", "librdkafka-broker", "delivery-text"],
)
def test_refused_logins_are_recognised(exc: BaseException) -> None:
    assert is_authentication_failure(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ClusterError("cluster 'A' at a:9092 is unreachable"),
        KafkaTimeoutError("Failed to update metadata after 60.0 secs."),
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
        RuntimeError("something else"),
    ],
    ids=["unreachable", "timeout", "transport", "other"],
)
def test_other_failures_are_not_refused_logins(exc: BaseException) -> None:
    assert not is_authentication_failure(exc)
