"""Lambda entry point of the mirror function: parse the ESM event, mirror the batch, publish metrics.

``lambda_handler`` serves the flow named by ``SMM_FLOW`` with the configuration from ``shared.aws.config_source``.
The local runtime builds the same handler with ``build_handler`` for each flow it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from functions.mirror.mirror import BatchReport, Mirror
from shared.aws import config_source
from shared.aws.esm_event import parse_event
from shared.kafka.clients import KafkaClients

logger = Logger(service="smm-mirror")
metrics = Metrics(namespace="ServerlessMirrorMaker", service="smm-mirror")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def build_handler(mirror_for_invocation: Callable[[], Mirror], sink: Metrics | EphemeralMetrics = metrics) -> Handler:
    """The decorated handler around a provider of the (container-cached) ``Mirror``.

    ``sink`` is the shared Lambda ``Metrics``; the local runtime passes one ``EphemeralMetrics`` per poller
    so concurrent pollers do not share a metric set.
    """

    @sink.log_metrics  # type: ignore[untyped-decorator]
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        mirror = mirror_for_invocation()
        _, records = parse_event(event)
        report = mirror.mirror(records)
        publish(report, mirror, sink)
        logger.info("batch mirrored", extra=report.as_dict())
        return report.as_dict()

    return handler


def publish(report: BatchReport, mirror: Mirror, sink: Metrics | EphemeralMetrics) -> None:
    sink.add_dimension(name="Flow", value=mirror.flow.name)
    sink.add_metric(name="Records", unit=MetricUnit.Count, value=report.mirrored)
    sink.add_metric(name="Bytes", unit=MetricUnit.Bytes, value=report.bytes)
    sink.add_metric(name="OffsetSyncs", unit=MetricUnit.Count, value=report.offset_syncs)
    sink.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=report.batch_latency_ms)
    sink.add_metric(name="RecordAge", unit=MetricUnit.Milliseconds, value=report.max_record_age_ms)
    sink.add_metric(name="Gaps", unit=MetricUnit.Count, value=report.gaps)
    sink.add_metric(name="GapRecords", unit=MetricUnit.Count, value=report.gap_records)
    sink.add_metric(name="DeadLetteredRecords", unit=MetricUnit.Count, value=report.dead_lettered)
    sink.add_metric(name="SkippedRecords", unit=MetricUnit.Count, value=sum(report.skipped.values()))
    for latency in report.replication_latency_ms:
        sink.add_metric(name="ReplicationLatency", unit=MetricUnit.Milliseconds, value=latency)


class _Container:
    """What survives between invocations of one Lambda container: clients and mirrors per config text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text: str | None = None
        self._mirror: Mirror | None = None

    def mirror(self) -> Mirror:
        text = config_source.config_text()
        with self._lock:
            if self._mirror is None or text != self._text:
                if self._mirror is not None:
                    self._mirror.close()
                mirror_config = config_source.parse_text(text)
                flow = config_source.flow_from_environment(mirror_config)
                self._mirror = Mirror(flow, KafkaClients(mirror_config, client_id=f"smm-mirror-{flow.name}"))
                self._text = text
            return self._mirror

    def close(self) -> None:
        with self._lock:
            if self._mirror is not None:
                self._mirror.close()
            self._mirror = self._text = None


_container = _Container()
lambda_handler = build_handler(_container.mirror)
