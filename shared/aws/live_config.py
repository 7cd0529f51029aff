"""The configuration a warm Lambda container runs: replaced only by a valid one, its secrets kept fresh.

Every invocation asks for the objects built from the current configuration (the mirror's ``Mirror``, a scheduled
function's tasks). The configuration is read again when its text changed (a console edit of the SSM parameter),
when its secrets are older than ``SMM_SECRETS_MAX_AGE_SECONDS``, or after a cluster refused the login (then the
secrets bypass their cache). The new text is parsed, its secrets applied and its objects built before the old
objects are closed; when the same text yields the same configuration, the running objects are kept.

If any step fails, the last good configuration keeps running, the problems are logged once per bad text (each
names its key and reason, never a secret value), and every invocation that meets the bad text publishes
``ConfigRejected`` (namespace ``ServerlessMirrorMaker``, dimension ``service`` only) so an alarm fires until it is
fixed. A rejected text is tried again every ``RETRY_REJECTED_SECONDS`` (a missing secret may have been created).
Without a last good configuration (a cold start) there is nothing to run: the invocation fails with the problems.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared.aws import config_source, secrets
from shared.mm2.config import ConfigError, MirrorConfig

T = TypeVar("T")

NAMESPACE = "ServerlessMirrorMaker"
REJECTED_METRIC = "ConfigRejected"
RETRY_REJECTED_SECONDS = 60.0


def parse_deployed(text: str, fresh_secrets: bool) -> MirrorConfig:
    """``config_source.parse_text``; with ``fresh_secrets`` the secrets are read past their cache."""
    with secrets.fetched_fresh(fresh_secrets):
        return config_source.parse_text(text)


@dataclass(frozen=True)
class ConfigSource:
    """Where a function's configuration comes from: its text, how it is parsed, how long its secrets stay fresh."""

    read_text: Callable[[], str] = config_source.config_text
    parse: Callable[[str, bool], MirrorConfig] = parse_deployed
    secrets_max_age: Callable[[], float] = secrets.max_age_seconds


DEPLOYED = ConfigSource()


@dataclass
class _Running(Generic[T]):
    text: str
    config: MirrorConfig
    value: T
    read_at: float  # when its secrets were read


@dataclass(frozen=True)
class _Rejected:
    text: str
    problems: tuple[str, ...]
    retry_at: float


class LiveConfig(Generic[T]):
    """The objects ``build`` made from the last good configuration; ``close`` releases them when replaced.

    ``build`` validates what parsing cannot (e.g. that the function's flow exists) by raising; it must release
    whatever it made before raising. ``is_refused_login`` tells which failures (``failed``) call for fresh secrets.
    """

    def __init__(
        self,
        build: Callable[[MirrorConfig], T],
        close: Callable[[T], None],
        service: str,
        source: ConfigSource = DEPLOYED,
        is_refused_login: Callable[[BaseException], bool] = lambda exc: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build = build
        self._close = close
        self._service = service
        self._source = source
        self._is_refused_login = is_refused_login
        self._clock = clock
        self._logger = Logger(service=service)
        self._lock = threading.Lock()
        self._running: _Running[T] | None = None
        self._rejected: _Rejected | None = None
        self._unreadable: str | None = None  # the last reading error logged
        self._fresh_secrets = False

    def current(self) -> T:
        """The running objects, replaced first if the configuration changed and the new one is valid."""
        with self._lock:
            try:
                text = self._source.read_text()
            except Exception as exc:  # an unreadable text (SSM throttled) says nothing against the running one
                return self._keep_unreadable(exc)
            self._unreadable = None
            now = self._clock()
            running = self._running
            if running is not None and text == running.text and not self._refresh_due(running, now):
                self._rejected = None  # an edit taken back: the same bad edit again is logged again
                return running.value
            rejected = self._rejected
            if rejected is not None and rejected.text == text and now < rejected.retry_at and not self._fresh_secrets:
                return self._fall_back(rejected)
            return self._load(text)

    def failed(self, exc: BaseException) -> None:
        """An invocation failed with ``exc``: after a refused login, the next one reads the secrets afresh."""
        if not self._is_refused_login(exc):
            return
        with self._lock:
            self._fresh_secrets = True
        self._logger.warning(
            "a cluster refused the login: the next invocation reads the secrets again, bypassing their cache",
            extra={"error": type(exc).__name__},
        )

    def close(self) -> None:
        with self._lock:
            if self._running is not None:
                self._close(self._running.value)
            self._running = self._rejected = None

    def _refresh_due(self, running: _Running[T], now: float) -> bool:
        return self._fresh_secrets or now - running.read_at >= self._source.secrets_max_age()

    def _load(self, text: str) -> T:
        running = self._running
        fresh, self._fresh_secrets = self._fresh_secrets, False
        try:
            config = self._source.parse(text, fresh)
            if running is not None and text == running.text and config == running.config:
                running.read_at = self._clock()  # secrets read again and unchanged: keep what runs
                self._rejected = None
                return running.value
            value = self._build(config)
        except Exception as exc:  # whatever stops a configuration from running rejects it
            problems = exc.problems if isinstance(exc, ConfigError) else [f"{type(exc).__name__}: {exc}"]
            return self._reject(text, tuple(problems))
        self._running = _Running(text, config, value, self._clock())
        self._rejected = None
        why = "secrets changed" if running is not None and text == running.text else "text changed"
        self._logger.info("configuration applied", extra={"config": _digest(text), "reason": why})
        if running is not None:
            try:
                self._close(running.value)
            except Exception:  # the new objects run already; the old ones' clients go with the container
                self._logger.exception("closing the previous configuration's objects failed")
        return value

    def _reject(self, text: str, problems: tuple[str, ...]) -> T:
        previous = self._rejected
        self._rejected = _Rejected(text, problems, self._clock() + RETRY_REJECTED_SECONDS)
        if previous is None or (previous.text, previous.problems) != (text, problems):
            running = self._running
            extra: dict[str, object] = {"problems": list(problems), "rejected": _digest(text)}
            if running is None:
                self._logger.error("configuration rejected: there is no good configuration to run", extra=extra)
            else:
                extra["running"] = _digest(running.text)
                self._logger.error("configuration rejected: the last good configuration keeps running", extra=extra)
        return self._fall_back(self._rejected)

    def _fall_back(self, rejected: _Rejected) -> T:
        """The last good objects while ``rejected`` is the current text (none: its problems raised), counted each
        time so that an alarm fires."""
        metrics = EphemeralMetrics(namespace=NAMESPACE, service=self._service)
        metrics.add_metric(name=REJECTED_METRIC, unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        if self._running is None:
            raise ConfigError(rejected.problems)
        return self._running.value

    def _keep_unreadable(self, exc: Exception) -> T:
        if self._running is None:
            raise exc
        error = f"{type(exc).__name__}: {exc}"
        if error != self._unreadable:
            self._logger.warning(
                "cannot read the configuration: the last good configuration keeps running", extra={"error": error}
            )
            self._unreadable = error
        return self._running.value


def _digest(text: str) -> str:
    """A short name of a configuration text for logs (the text itself may be long)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]
