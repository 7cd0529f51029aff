"""Lambda entry point of the mirror function: parse the ESM event, mirror the batch, publish metrics.

The ESM event is the handler's contract in Lambda. The local runtime may pass a ``RecordBatch`` instead (the records
the event would parse to); everything after parsing, and the Powertools decorators around it, is the same.

``lambda_handler`` serves the flow named by ``SMM_FLOW`` with the configuration from ``shared.aws.config_source``,
through ``shared.aws.live_config``: a console edit that is not valid (or names no such flow) leaves the last good
``Mirror`` running and publishes ``ConfigRejected``, and a refused login makes the next invocation read the secrets
afresh. The local runtime builds the same handler with ``build_handler`` for each flow it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from functions.mirror.collector import tune_for_batches
from functions.mirror.mirror import BatchReport, Mirror
from shared.aws import config_source
from shared.aws.esm_event import MirrorPayload, batch_records
from shared.aws.live_config import LiveConfig
from shared.kafka.clients import KafkaClients
from shared.kafka.failures import is_authentication_failure
from shared.mm2.config import MirrorConfig

SERVICE = "smm-mirror"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="ServerlessMirrorMaker", service=SERVICE)

Handler = Callable[[MirrorPayload, Any], dict[str, Any]]
# Kept of the invocation's time when copying skipped ranges: one more chunk, then a clean failure.
DEADLINE_MARGIN_SECONDS = 20.0


def build_handler(
    mirror_for_invocation: Callable[[], Mirror],
    sink: Metrics | EphemeralMetrics = metrics,
    on_failure: Callable[[Exception], None] | None = None,
) -> Handler:
    """The decorated handler around a provider of the (container-cached) ``Mirror``.

    ``sink`` is the shared Lambda ``Metrics``; the local runtime passes one ``EphemeralMetrics`` per poller
    so concurrent pollers do not share a metric set. ``on_failure`` sees what fails a batch before it is raised.
    """

    @sink.log_metrics  # type: ignore[untyped-decorator]
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: MirrorPayload, context: Any) -> dict[str, Any]:
        mirror = mirror_for_invocation()
        try:
            report = mirror.mirror(batch_records(event), deadline=_deadline(context))
        except Exception as exc:
            if on_failure is not None:
                on_failure(exc)
            raise
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
    if mirror.positions is not None:  # the mappings may skip: say whether they did
        sink.add_metric(name="SkippedRanges", unit=MetricUnit.Count, value=report.skipped_ranges)
        sink.add_metric(name="RecoveredRecords", unit=MetricUnit.Count, value=report.recovered_records)
    for latency in report.replication_latency_ms:
        sink.add_metric(name="ReplicationLatency", unit=MetricUnit.Milliseconds, value=latency)


def _deadline(context: Any) -> float:
    """When the invocation must stop copying a range the mapping skipped, so that it can still fail cleanly."""
    return time.monotonic() + float(context.get_remaining_time_in_millis()) / 1000 - DEADLINE_MARGIN_SECONDS


def _new_mirror(mirror_config: MirrorConfig) -> Mirror:
    """The ``Mirror`` of this function's flow; a configuration without that flow is rejected (``ConfigError``)."""
    flow = config_source.flow_from_environment(mirror_config)
    clients = KafkaClients(mirror_config, client_id=f"smm-mirror-{flow.name}")
    return Mirror(flow, clients, recover_skipped=config_source.recover_skipped())


class _Container:
    """What survives between invocations of one Lambda container: the ``Mirror`` of the last good configuration."""

    def __init__(self) -> None:
        self._live = LiveConfig(_new_mirror, Mirror.close, SERVICE, is_refused_login=is_authentication_failure)

    def mirror(self) -> Mirror:
        return self._live.current()

    def failed(self, exc: Exception) -> None:
        self._live.failed(exc)

    def close(self) -> None:
        self._live.close()


_container = _Container()
lambda_handler = build_handler(_container.mirror, on_failure=_container.failed)
tune_for_batches()  # at the end of the cold start: what it made is frozen out of later collections
