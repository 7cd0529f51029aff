"""The on-failure destination of an emulated event-source mapping: where the records it gives up are sent.

- ``kafka://TOPIC``. AWS documents (kafka-on-failure-destination): TOPIC must exist on the source cluster, and
  Lambda produces there one message per failed record, with the record's key (no key: spread over the
  partitions) and a JSON document holding the failure metadata (``requestContext`` with the condition and
  ``approximateInvokeCount``, ``responseContext``, ``version``, ``timestamp``, ``KafkaBatchInfo`` with the
  record's offset and timestamp) and the record itself as an ESM event under ``payload``. The emulator writes that
  document as the message value. Config sync creates TOPIC, locally as in a deployment
  (``EsmReconciler.failure_topic``); if it is missing all the same, the emulator does not create it: the error
  names it, and the records are not committed past, so they are read and retried again until it exists.
  Unverified: Kafka headers on the message (the emulator writes none), the message's own timestamp (the
  producer's clock), ``batchSize`` and ``payloadSize`` (the emulator counts the records given up together), the
  retry condition's spelling (that page shows ``RetriesExhausted``, kafka-on-failure ``RetryAttemptsExhausted``;
  the emulator writes the latter everywhere), and what Lambda does when it cannot write (the emulator never moves
  past records it could not write).
- An SQS, SNS or S3 ARN (or ``sqs``, the queue a deployment creates). AWS documents (kafka-on-failure): one JSON
  document per failed batch, metadata only (``recordsInfo``: first and last offset and timestamp per
  topic-partition); S3 also gets the invocation payload. There is no such service locally: the emulator prints
  the metadata document as one line on stderr, and counts it as sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.aws.esm import KAFKA_DESTINATION
from shared.aws.esm_event import build_event, by_partition
from shared.kafka.clients import KafkaClients
from shared.local.esm_policy import GiveUp
from shared.mm2.config import FlowConfig

WRITE_TIMEOUT_SECONDS = 30.0


class DestinationError(RuntimeError):
    """Given-up records could not be sent to the on-failure destination; they stay uncommitted."""


@dataclass(frozen=True)
class FailedInvocation:
    """The invocation whose failure made the mapping give records up: the metadata's request context."""

    request_id: str
    function_arn: str
    bootstrap_servers: Sequence[str]


class FailureDestination(Protocol):
    def send(self, given_up: GiveUp, invocation: FailedInvocation) -> None:
        """Hand the records over; raises if they could not be (so the mapping does not move past them)."""
        ...


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _metadata(given_up: GiveUp, invocation: FailedInvocation, now_ms: int) -> dict[str, Any]:
    """What every destination gets: why the records were given up, by which invocation, and how many."""
    event = build_event(given_up.records, invocation.bootstrap_servers)
    return {
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": invocation.function_arn,
            "condition": given_up.condition,
            "approximateInvokeCount": given_up.invocations,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": _iso(now_ms),
        "KafkaBatchInfo": {
            "batchSize": len(given_up.records),
            "bootstrapServers": event["bootstrapServers"],
            "payloadSize": len(json.dumps(event)),
        },
    }


def kafka_failure_records(given_up: GiveUp, invocation: FailedInvocation, now_ms: int) -> list[dict[str, Any]]:
    """The message values a Kafka destination gets, one per given-up record: metadata and the record as an event."""
    metadata = _metadata(given_up, invocation, now_ms)
    return [
        {
            **metadata,
            "KafkaBatchInfo": {
                **metadata["KafkaBatchInfo"],
                "recordInfo": {"offset": str(r.offset), "timestamp": _iso(r.timestamp)},
            },
            "payload": build_event([r], invocation.bootstrap_servers),
        }
        for r in given_up.records
    ]


def batch_metadata(given_up: GiveUp, invocation: FailedInvocation, now_ms: int) -> dict[str, Any]:
    """The document an SQS, SNS (or, with the payload, S3) destination gets for a given-up batch."""
    metadata = _metadata(given_up, invocation, now_ms)
    metadata["KafkaBatchInfo"]["recordsInfo"] = {
        f"{topic}-{partition}": {
            "firstRecordOffset": str(records[0].offset),
            "lastRecordOffset": str(records[-1].offset),
            "firstRecordTimestamp": _iso(records[0].timestamp),
            "lastRecordTimestamp": _iso(records[-1].timestamp),
        }
        for (topic, partition), records in by_partition(given_up.records)
    }
    return metadata


class KafkaTopicDestination:
    """``kafka://TOPIC``: the given-up records, each with its failure metadata, on TOPIC of the source cluster."""

    def __init__(self, clients: KafkaClients, flow: FlowConfig, topic: str) -> None:
        self.clients = clients
        self.flow = flow
        self.topic = topic

    def send(self, given_up: GiveUp, invocation: FailedInvocation) -> None:
        source = self.flow.source
        if self.clients.topic_info(source, self.topic) is None:
            raise DestinationError(
                f"{self.flow.name}: on-failure destination {KAFKA_DESTINATION}{self.topic}: there is no topic "
                f"{self.topic!r} on the source cluster {source!r}. Lambda requires it to exist there (config sync "
                "creates it) and the emulator does not create it either; the records stay uncommitted and are "
                "retried until it exists"
            )
        producer = self.clients.producer(source)
        values = kafka_failure_records(given_up, invocation, int(time.time() * 1000))
        futures = [
            producer.send(self.topic, key=r.key, value=json.dumps(value).encode())
            for r, value in zip(given_up.records, values, strict=True)
        ]
        producer.flush(timeout=WRITE_TIMEOUT_SECONDS)
        for future in futures:
            future.get(timeout=WRITE_TIMEOUT_SECONDS)


class LoggedDestination:
    """An SQS, SNS or S3 destination, which does not exist locally: its metadata document, one line on stderr."""

    def __init__(self, flow: FlowConfig, destination: str) -> None:
        self.flow = flow
        self.destination = destination

    def send(self, given_up: GiveUp, invocation: FailedInvocation) -> None:
        document = batch_metadata(given_up, invocation, int(time.time() * 1000))
        print(
            f"{self.flow.name}: on-failure destination {self.destination} (not emulated): {json.dumps(document)}",
            file=sys.stderr,
            flush=True,
        )


def failure_destination(destination: str | None, clients: KafkaClients, flow: FlowConfig) -> FailureDestination | None:
    """The destination ``DestinationConfig.OnFailure.Destination`` names, if any."""
    if not destination:
        return None
    if destination.startswith(KAFKA_DESTINATION):
        return KafkaTopicDestination(clients, flow, destination.removeprefix(KAFKA_DESTINATION))
    return LoggedDestination(flow, destination)
