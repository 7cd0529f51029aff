"""What config sync last applied, kept in a compacted topic on the target so a cold start redoes nothing.

One record per source topic of the flow: key ``topic:<source topic>`` (UTF-8), value a JSON object
``{"v": 1, "remote": ..., "partitions": n, "configs": digest|null, "acls": digest|null, "esm": state}``;
a tombstone once the source topic is gone. Writers may run concurrently: every write is idempotent and the
last one wins, and each run first reads what others wrote since it last looked.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger
from kafka import TopicPartition

from functions.config_sync.rules import COMPACT, InternalTopic
from shared.kafka.clients import ClusterError, KafkaClients

logger = Logger(service="smm-config-sync")

VERSION = 1
KEY_PREFIX = "topic:"
READ_TIMEOUT_SECONDS = 30.0

ESM_NONE = "none"  # no reconciler manages this flow's ESMs (e.g. SMM_MIRROR_FUNCTION unset)


class StateError(ClusterError):
    """The state topic could not be read or written."""


@dataclass(frozen=True)
class TopicState:
    """What was applied for one source topic."""

    topic: str
    remote: str
    partitions: int
    configs: str | None = None  # ConfigPlan digest last applied to the remote topic
    acls: str | None = None  # ACL digest last applied
    esm: str = ESM_NONE  # enabled, disabled, deleted, pending:<Lambda state>, none

    def key(self) -> bytes:
        return key_for(self.topic)

    def value(self) -> bytes:
        body = {"v": VERSION, **{k: v for k, v in asdict(self).items() if k != "topic"}}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, key: bytes, value: bytes) -> TopicState:
        """Decode a state record; ValueError names what is wrong with it."""
        name = key.decode("utf-8")
        if not name.startswith(KEY_PREFIX):
            raise ValueError(f"key {name!r} does not start with {KEY_PREFIX!r}")
        body = json.loads(value)
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise ValueError(f"value is not a version-{VERSION} object")
        try:
            return cls(
                topic=name[len(KEY_PREFIX) :],
                remote=str(body["remote"]),
                partitions=int(body["partitions"]),
                configs=body.get("configs"),
                acls=body.get("acls"),
                esm=str(body.get("esm", ESM_NONE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"value lacks or mistypes a field: {exc}") from None


def key_for(topic: str) -> bytes:
    return (KEY_PREFIX + topic).encode("utf-8")


class StateStore:
    """The state topic of one flow: read to its end before each run, written through the shared producer."""

    def __init__(self, clients: KafkaClients, topic: InternalTopic) -> None:
        self.clients = clients
        self.spec = topic
        self._tp = TopicPartition(topic.name, 0)
        self._consumer: Any = None
        self._states: dict[str, TopicState] = {}
        self._pending: list[Any] = []

    def ensure_topic(self) -> None:
        self.clients.ensure_topic(self.spec.cluster, self.spec.name, 1, self.spec.replication_factor, COMPACT)

    def load(self) -> dict[str, TopicState]:
        """Every topic's state, including what other writers added since the last call."""
        consumer = self._reader()
        end = self.clients.latest_offsets(self.spec.cluster, [self._tp]).get(self._tp, 0)
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while consumer.position(self._tp) < end:
            if time.monotonic() > deadline:
                raise StateError(
                    f"reading state topic {self.spec.name!r} on cluster {self.spec.cluster!r} did not reach offset "
                    f"{end} within {READ_TIMEOUT_SECONDS:.0f} s (at {consumer.position(self._tp)})"
                )
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    self._apply(record.key, record.value, record.offset)
        return dict(self._states)

    def current(self) -> dict[str, TopicState]:
        """The states as of the last ``load`` plus this run's own writes (no I/O)."""
        return dict(self._states)

    def put(self, state: TopicState) -> bool:
        """Record ``state``; False (and no write) when it is what was recorded already."""
        if self._states.get(state.topic) == state:
            return False
        self._send(state.key(), state.value())
        self._states[state.topic] = state
        return True

    def remove(self, topic: str) -> bool:
        if topic not in self._states:
            return False
        self._send(key_for(topic), None)
        del self._states[topic]
        return True

    def flush(self) -> int:
        """Wait for this run's writes; returns how many there were. A failed write raises."""
        if not self._pending:
            return 0
        self.clients.producer(self.spec.cluster).flush()
        pending, self._pending = self._pending, []
        for future in pending:
            if future.failed():
                raise StateError(
                    f"writing to state topic {self.spec.name!r} on cluster {self.spec.cluster!r} failed: "
                    f"{type(future.exception).__name__}: {future.exception}"
                )
        return len(pending)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _send(self, key: bytes, value: bytes | None) -> None:
        producer = self.clients.producer(self.spec.cluster)
        self._pending.append(producer.send(self.spec.name, key=key, value=value, partition=0))

    def _reader(self) -> Any:
        if self._consumer is None:
            consumer = self.clients.consumer(self.spec.cluster, group_id=None, enable_auto_commit=False)
            consumer.assign([self._tp])
            consumer.seek_to_beginning(self._tp)
            self._consumer = consumer
        return self._consumer

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None:
            return
        if value is None:
            self._states.pop(key.decode("utf-8", errors="replace")[len(KEY_PREFIX) :], None)
            return
        try:
            state = TopicState.parse(key, value)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning(
                "ignoring an unreadable state record",
                extra={"topic": self.spec.name, "offset": offset, "reason": str(exc)},
            )
            return
        self._states[state.topic] = state
