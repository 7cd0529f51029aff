"""When the mirror emits an offset sync (MM2's ``OffsetSyncWriter`` rules plus this project's stronger ones).

MM2 emits a sync for a partition's first record, when the downstream offset drifted ``offset.lag.max`` from
the last sync, when upstream offsets are not contiguous, and when downstream went backwards. This project also
emits one at least every ``offset.lag.max`` upstream records and for the last record of every batch, so any
translation is off by at most ``offset.lag.max`` and, once the flow has drained, exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.mm2.formats import OffsetSync


def sync_due(
    upstream: int,
    downstream: int,
    previous_upstream: int,
    previous_downstream: int,
    last_sync_upstream: int,
    last_sync_downstream: int,
    offset_lag_max: int,
) -> bool:
    """Whether the record at (upstream, downstream) needs its own offset sync."""
    return (
        last_sync_downstream == -1  # first record since the container started
        or downstream - (last_sync_downstream + 1) >= offset_lag_max
        or upstream - last_sync_upstream >= offset_lag_max
        or upstream - previous_upstream != 1
        or downstream < previous_downstream
    )


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What the writer remembers of one partition between batches (within a container)."""

    previous_upstream: int = -1
    previous_downstream: int = -1
    last_sync_upstream: int = -1
    last_sync_downstream: int = -1


class OffsetSyncPlanner:
    """Decides the offset syncs of each mirrored batch; state advances only when a batch is committed."""

    def __init__(self, offset_lag_max: int) -> None:
        self.offset_lag_max = offset_lag_max
        self._states: dict[tuple[str, int], PartitionState] = {}

    def plan(self, topic: str, partition: int, pairs: list[tuple[int, int]]) -> tuple[list[OffsetSync], PartitionState]:
        """Syncs for one partition's (upstream, downstream) pairs, in order, and the state after them.

        ``topic`` is the source topic name, as MM2 keys its offset syncs.
        """
        state = self._states.get((topic, partition), PartitionState())
        prev_up, prev_down = state.previous_upstream, state.previous_downstream
        last_up, last_down = state.last_sync_upstream, state.last_sync_downstream
        lag = self.offset_lag_max
        syncs: list[OffsetSync] = []
        last = len(pairs) - 1
        for i, (upstream, downstream) in enumerate(pairs):
            if i == last or sync_due(upstream, downstream, prev_up, prev_down, last_up, last_down, lag):
                syncs.append(OffsetSync(topic, partition, upstream, downstream))
                last_up, last_down = upstream, downstream
            prev_up, prev_down = upstream, downstream
        return syncs, PartitionState(prev_up, prev_down, last_up, last_down)

    def commit(self, topic: str, partition: int, state: PartitionState) -> None:
        self._states[(topic, partition)] = state
