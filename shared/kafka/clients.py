"""The one place that talks to Kafka: clients per cluster alias, created once per container and reused.

Everything else asks this module for topics, partitions and offsets, so the client library can be swapped
(the benchmark issue may add a librdkafka backend) without touching the core.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, OffsetSpec
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)

from shared.kafka import settings as client_settings
from shared.kafka.producers import (
    PRODUCER_DEFAULTS,
    TRANSACTION_FLUSH_TIMEOUT_SECONDS,
    ConfluentProducer,
    ConfluentTransactionalProducer,
    KafkaPythonProducer,
    KafkaPythonTransactionalProducer,
    NullableKeySerializer,
    RecordProducer,
    TransactionalProducer,
)
from shared.mm2.config import MirrorConfig

_BATCH_SIZE = {"confluent-kafka": "batch.size", "kafka-python": "batch_size"}


class ClusterError(RuntimeError):
    """A cluster refused or could not do what was asked; the message names the cluster and the fix."""


class ClusterAuthenticationError(ClusterError):
    """The cluster refused the client's credentials or certificate (or its certificate is not trusted).

    Trying again with the same settings cannot help, unlike a cluster that is not up yet.
    """


@dataclass(frozen=True)
class TopicInfo:
    """What the mirror needs to know of a topic: its partitions and the configs that shape records."""

    name: str
    partitions: int
    max_message_bytes: int
    compacted: bool
    topic_id: str | None = None  # KIP-516: changes when the topic is deleted and created again


_PRODUCER_DEFAULTS: dict[str, Any] = {
    # Never lose, never reorder: MM2's producer settings.
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "max_request_size": 8 * 1024 * 1024,
    "key_serializer": NullableKeySerializer(),
    # The Java client's cap: kafka-python's 30 s left a batch waiting up to 30 s after the target came back.
    "reconnect_backoff_max_ms": 1000,
}


class KafkaClients:
    """Lazily built, cached clients for the clusters of one configuration."""

    def __init__(self, config: MirrorConfig, client_id: str = "smm") -> None:
        self.config = config
        self._client_id = client_id
        self._producers: dict[str, KafkaProducer] = {}
        self._record_producers: dict[tuple[str, str, int], RecordProducer] = {}
        self._base_producer_settings: dict[tuple[str, str], dict[str, Any]] = {}
        self._admins: dict[str, KafkaAdminClient] = {}
        self._topic_info: dict[tuple[str, str], TopicInfo] = {}
        self._lock = threading.Lock()

    def _settings(self, alias: str, role: str) -> dict[str, Any]:
        settings = client_settings.kafka_python(self.config.cluster(alias), role)
        settings.setdefault("client_id", f"{self._client_id}-{alias}-{role}")
        settings.setdefault("bootstrap_timeout_ms", 15000)
        return settings

    def producer(self, alias: str) -> KafkaProducer:
        with self._lock:
            if alias not in self._producers:
                settings = {**_PRODUCER_DEFAULTS, **self._settings(alias, "producer")}
                self._producers[alias] = _connect(alias, KafkaProducer, settings)
            return self._producers[alias]

    def record_producer(self, alias: str, backend: str, max_message_bytes: int | None = None) -> RecordProducer:
        """The data path's producer for ``alias`` with the chosen backend (``smm.producer.backend``).

        Its record batches stay within ``max_message_bytes`` (the remote topic's): librdkafka fails a whole
        batch the broker finds too large instead of splitting it, and the partition would stall. Topics with the
        same limit share one producer.
        """
        with self._lock:
            base = self._base_producer_settings.get((alias, backend))
            if base is None:
                base = self._base_producer_settings[(alias, backend)] = self._producer_settings(alias, backend, None)
            name = _BATCH_SIZE[backend]
            batch = int(base[name]) if max_message_bytes is None else min(int(base[name]), max_message_bytes)
            key = (alias, backend, batch)
            if key not in self._record_producers:
                self._record_producers[key] = self._new_record_producer(alias, backend, {**base, name: batch})
            return self._record_producers[key]

    def _producer_settings(self, alias: str, backend: str, max_message_bytes: int | None) -> dict[str, Any]:
        if backend == "confluent-kafka":
            settings = self._librdkafka_producer_config(alias)
        else:
            settings = {**_PRODUCER_DEFAULTS, **self._settings(alias, "producer")}
        name = _BATCH_SIZE[backend]
        if max_message_bytes is not None:
            settings[name] = min(int(settings[name]), max_message_bytes)
        return settings

    def _new_record_producer(self, alias: str, backend: str, settings: dict[str, Any]) -> RecordProducer:
        if backend == "confluent-kafka":
            return ConfluentProducer(settings)
        return KafkaPythonProducer(_connect(alias, KafkaProducer, settings))

    def transactional_producer(
        self, alias: str, backend: str, transactional_id: str, max_message_bytes: int | None = None
    ) -> TransactionalProducer:
        """A new producer of the caller's own for ``transactional_id``, initialised: older ones are fenced."""
        if backend == "confluent-kafka":
            config = {
                **self._producer_settings(alias, backend, max_message_bytes),
                "transactional.id": transactional_id,
            }
            return ConfluentTransactionalProducer(config)
        settings = {
            **self._producer_settings(alias, backend, max_message_bytes),
            "transactional_id": transactional_id,
            "max_block_ms": int(TRANSACTION_FLUSH_TIMEOUT_SECONDS * 1000),  # init and commit wait no longer
        }
        return KafkaPythonTransactionalProducer(_connect(alias, KafkaProducer, settings))

    def _librdkafka_producer_config(self, alias: str) -> dict[str, Any]:
        config = client_settings.librdkafka(self.config.cluster(alias), "producer", PRODUCER_DEFAULTS)
        config.setdefault("client.id", f"{self._client_id}-{alias}-producer")
        return config

    def admin(self, alias: str) -> KafkaAdminClient:
        with self._lock:
            if alias not in self._admins:
                self._admins[alias] = _connect(alias, KafkaAdminClient, self._settings(alias, "admin"))
            return self._admins[alias]

    def consumer(self, alias: str, **overrides: Any) -> KafkaConsumer:
        """A new consumer (consumers are not shared: each belongs to one group and one thread)."""
        settings = {**self._settings(alias, "consumer"), **overrides}
        return _connect(alias, KafkaConsumer, settings)

    def close(self) -> None:
        with self._lock:
            for record_producer in self._record_producers.values():
                record_producer.close()
            for producer in self._producers.values():
                producer.close()
            for admin in self._admins.values():
                admin.close()
            self._producers.clear()
            self._record_producers.clear()
            self._base_producer_settings.clear()
            self._admins.clear()

    # --- topics -------------------------------------------------------------------------------------------

    def topics(self, alias: str) -> list[str]:
        return sorted(self.admin(alias).list_topics())

    def topic_info(self, alias: str, topic: str, refresh: bool = False) -> TopicInfo | None:
        """Partition count and record-shaping configs of ``topic`` on ``alias``; None if it does not exist."""
        key = (alias, topic)
        if not refresh and key in self._topic_info:
            return self._topic_info[key]
        admin = self.admin(alias)
        described = admin.describe_topics([topic])
        if not described or described[0].get("error_code", 0) != 0:
            self._topic_info.pop(key, None)
            return None
        partitions = len(described[0]["partitions"])
        configs = _topic_configs(admin, topic)
        info = TopicInfo(
            name=topic,
            partitions=partitions,
            max_message_bytes=int(configs.get("max.message.bytes", "1048588")),
            compacted="compact" in configs.get("cleanup.policy", "delete"),
            topic_id=_topic_id(described[0].get("topic_id")),
        )
        self._topic_info[key] = info
        return info

    def ensure_topic(
        self,
        alias: str,
        topic: str,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None = None,
    ) -> TopicInfo:
        """Create ``topic`` with at least ``partitions`` partitions, or grow it; never shrinks it."""
        info = self.topic_info(alias, topic)
        if info is not None and info.partitions >= partitions:
            return info
        admin = self.admin(alias)
        try:
            if info is None:
                admin.create_topics(
                    {
                        topic: {
                            "num_partitions": partitions,
                            "replication_factor": replication_factor,
                            "configs": dict(configs or {}),
                        }
                    },
                    wait_for_metadata=True,
                )
            else:
                admin.create_partitions({topic: partitions})
        except TopicAlreadyExistsError:
            pass  # created concurrently by another invocation: fine, it is re-read below
        except InvalidPartitionsError:
            pass  # grown concurrently to at least this count
        except InvalidReplicationFactorError:
            brokers = len(admin.describe_cluster()["brokers"])
            raise ClusterError(
                f"cannot create topic {topic!r} on cluster {alias!r} with replication factor "
                f"{replication_factor}: the cluster has {brokers} broker(s). Set the replication factor "
                f"(replication.factor for remote topics, <name>.topic.replication.factor for internal ones) "
                f"to at most {brokers}, or -1 for the broker default"
            ) from None
        fresh = self.topic_info(alias, topic, refresh=True)
        if fresh is None or fresh.partitions < partitions:
            raise ClusterError(f"topic {topic!r} on cluster {alias!r} did not reach {partitions} partitions")
        if info is not None:  # grown: cached producers learn new partitions lazily, make them look now
            with self._lock:
                waiting: list[RecordProducer] = [
                    KafkaPythonProducer(p) for a, p in self._producers.items() if a == alias
                ]
                waiting += [p for (a, *_), p in self._record_producers.items() if a == alias]
            for producer in waiting:
                if not producer.await_partitions(topic, fresh.partitions, timeout=30.0):
                    raise ClusterError(f"producer for {alias!r} did not see {fresh.partitions} partitions of {topic!r}")
        return fresh

    def earliest_offsets(self, alias: str, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(alias, partitions, OffsetSpec.EARLIEST)

    def latest_offsets(self, alias: str, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(alias, partitions, OffsetSpec.LATEST)

    def _offsets(self, alias: str, partitions: Iterable[TopicPartition], spec: Any) -> dict[TopicPartition, int]:
        specs = dict.fromkeys(partitions, spec)
        if not specs:
            return {}
        try:
            result = self.admin(alias).list_partition_offsets(specs)
        except (NodeNotReadyError, KafkaConnectionError):
            # kafka-python's admin goes on failing like this for half a minute after its cluster came back from an
            # outage (it looks for partition leaders on a node it has not reconnected to); a new admin does not
            self._drop_admin(alias)
            result = self.admin(alias).list_partition_offsets(specs)
        return {tp: found.offset for tp, found in result.items()}

    def _drop_admin(self, alias: str) -> None:
        with self._lock:
            admin = self._admins.pop(alias, None)
        if admin is not None:
            admin.close()

    def committed_offsets(self, alias: str, group: str) -> dict[TopicPartition, int]:
        """The group's committed positions on ``alias`` (next offset to read, per partition).

        Raises ``KafkaError`` while the group coordinator is not available (e.g. on a new cluster).
        """
        answer = self.admin(alias).list_group_offsets({group: None})
        offsets = answer.get(group, {}) if isinstance(answer, dict) else {}
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _topic_id(value: Any) -> str | None:
    """The topic id as text; None where the broker has none (the all-zero UUID) or reports none."""
    text = None if value is None else str(value)
    return None if not text or text.strip("0-") == "" else text


def _topic_configs(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    entries = result.get("topic", {}).get(topic, {})
    return {name: str(entry.get("value")) for name, entry in entries.items()}


def _connect(alias: str, factory: Any, settings: dict[str, Any]) -> Any:
    """``factory(**settings)``, or a ClusterError saying which cluster failed, how it was reached, and why.

    kafka-python retries refused credentials and failed TLS handshakes until its bootstrap timeout and then
    reports only a timeout; the reason is in its log records, so they are watched during the attempt.
    """
    failures = _ConnectFailures(f"kafka-io-{settings.get('client_id')}")
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.addHandler(failures)
    try:
        return factory(**settings)
    except KafkaTimeoutError:
        raise _connect_error(alias, settings, failures.last) from None
    except KafkaError as exc:
        raise _connect_error(alias, settings, exc) from None
    finally:
        kafka_logger.removeHandler(failures)


class _ConnectFailures(logging.Handler):
    """Keeps the last connection error that kafka-python's IO thread of one client logged."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.WARNING)
        self.thread_name = thread_name
        self.last: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName != self.thread_name or not isinstance(record.args, tuple):
            return
        for arg in record.args:
            # A refused login outranks the "socket disconnected" that follows it; the final timeout says nothing.
            if (
                isinstance(arg, BaseException)
                and not isinstance(arg, KafkaTimeoutError)
                and not isinstance(self.last, SaslAuthenticationFailedError)
            ):
                self.last = arg


_CLIENT_CERT_REFUSED = ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED", "UNKNOWN_CA")


def _connect_error(alias: str, settings: Mapping[str, Any], cause: BaseException | None) -> ClusterError:
    """The error for a failed connection: cluster, address, protocol and mechanism, reason, what to check.

    Only setting names and the client library's reason appear, never a credential.
    """
    servers = ",".join(settings.get("bootstrap_servers", []))
    protocol = settings.get("security_protocol", "PLAINTEXT")
    mechanism = settings.get("sasl_mechanism")
    reason = "no answer" if cause is None else str(cause) if isinstance(cause, KafkaError) else repr(cause)
    where = f"cluster {alias!r} at {servers} (security.protocol={protocol}"
    where += f", sasl.mechanism={mechanism})" if mechanism and protocol.startswith("SASL_") else ")"
    if isinstance(cause, SaslAuthenticationFailedError):
        return ClusterAuthenticationError(
            f"cannot log in to {where}: the broker refused the {mechanism} credentials ({reason}); "
            f"check the username and password of {alias}.sasl.jaas.config or of its secret"
        )
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return ClusterAuthenticationError(
            f"cannot connect to {where}: TLS handshake failed, the broker's certificate is not trusted ({reason}); "
            f"check {alias}.ssl.truststore.location"
        )
    if any(code in reason for code in _CLIENT_CERT_REFUSED):
        return ClusterAuthenticationError(
            f"cannot connect to {where}: the broker refused the client certificate of mutual TLS ({reason}); "
            f"check {alias}.ssl.keystore.location and that its CA is one the broker trusts"
        )
    if _answers(settings.get("bootstrap_servers", [])):
        if mechanism and protocol.startswith("SASL_"):
            # A broker may answer a refused SCRAM login by closing the connection (kafka-python's admin client then
            # sees only "socket disconnected"): counted as a refused login, so the next attempt reads the secret anew.
            return ClusterAuthenticationError(
                f"cannot log in to {where}: the broker answers, but the {protocol} handshake or the {mechanism} "
                f"login did not complete ({reason}); check {alias}.security.protocol, {alias}.sasl.mechanism and "
                "the credentials"
            )
        return ClusterError(
            f"cannot connect to {where}: the broker answers, but the {protocol} handshake failed ({reason}); "
            f"check {alias}.security.protocol"
        )
    return ClusterError(f"{where} is unreachable ({reason}); check its bootstrap.servers and that the brokers are up")


def _answers(servers: Iterable[str]) -> bool:
    """True when a TCP connection to any bootstrap server opens: then the failure was in TLS, SASL or Kafka."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except (OSError, ValueError):
            continue
    return False
