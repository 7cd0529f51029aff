"""Is a flow moving? The two measures the heartbeats function publishes per flow, as pure functions.

- **Heartbeat age**: now minus the newest MM2 ``Heartbeat`` in the flow's remote heartbeats topic on the target
  (``A.heartbeats`` on B for A->B). The heartbeats there were emitted into A by the pairs that target A and
  crossed the flow like any record, so an old one means nothing crosses, whatever the cause: a mapping that
  cannot connect or authenticate, a mirror that fails, a target that refuses writes.
- **Source lag**: records on the source that the flow's mappings have not consumed yet: per partition of every
  mirrored topic, the end offset minus the committed offset of the topic's mapping group. A partition its group
  has not committed yet counts as the mapping will read it: from the log start with ``smm.starting.position =
  TRIM_HORIZON``, nothing with ``LATEST`` (the mapping starts at the end; counting the records before it would
  report lag that can never be consumed). Records deleted by retention below a committed offset are not counted:
  they are not on the source any more (the mirror reports them as a gap).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from functions.heartbeats.heartbeats import emitting_flows
from shared.mm2.config import FlowConfig, MirrorConfig
from shared.mm2.formats import Heartbeat

K = TypeVar("K", bound=Hashable)


def heartbeat_sources(config: MirrorConfig, flow: FlowConfig) -> list[FlowConfig]:
    """The pairs whose heartbeats ``flow`` carries: every emitting pair into the flow's source cluster."""
    return [f for f in emitting_flows(config) if f.target == flow.source]


def carries_heartbeats(flow: FlowConfig) -> bool:
    """The flow is enabled and mirrors its source's ``heartbeats`` topic."""
    return flow.enabled and flow.topic_selector().should_replicate(flow.policy().heartbeats_topic())


def measured_flows(config: MirrorConfig) -> list[FlowConfig]:
    """Flows that heartbeats cross: they carry heartbeats and some pair emits into their source. Only these have
    a heartbeat age (for the others it would be missing, which the alarm reads as a stall)."""
    return [f for f in config.flows if carries_heartbeats(f) and heartbeat_sources(config, f)]


def remote_heartbeats_topic(flow: FlowConfig) -> str:
    """Where the flow's crossed heartbeats land on the target: ``A.heartbeats`` for A->B."""
    policy = flow.policy()
    return policy.format_remote_topic(flow.source, policy.heartbeats_topic())


def newest_heartbeat_ms(records: Iterable[tuple[bytes | None, bytes | None]]) -> int | None:
    """Timestamp of the newest heartbeat among (key, value) records; None when there is none."""
    stamps = [h.timestamp for key, value in records if (h := Heartbeat.parse(key, value)) is not None]
    return max(stamps, default=None)


def source_lag(ends: Mapping[K, int], starts: Mapping[K, int], committed: Mapping[K, int], from_log_start: bool) -> int:
    """Records between each partition's consumed position and its end (see the module's rules).

    ``ends`` and ``starts`` hold every partition, ``committed`` those the mapping group has committed;
    ``from_log_start``: an uncommitted partition is read from its log start (``TRIM_HORIZON``).
    """
    lag = 0
    for partition, end in ends.items():
        start = starts.get(partition, 0)
        uncommitted = start if from_log_start else end
        lag += max(0, end - max(committed.get(partition, uncommitted), start))
    return lag
