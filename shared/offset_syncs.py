"""When the mirror emits an offset sync (MM2's ``OffsetSyncWriter`` rules plus this project's stronger ones).

MM2 emits a sync for a partition's first record, when the downstream offset drifted ``offset.lag.max`` from
the last sync, when upstream offsets are not contiguous, and when downstream went backwards. This project also
emits one at least every ``offset.lag.max`` upstream records and for the last record of every batch, so any
translation is off by at most ``offset.lag.max`` and, once the flow has drained, exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.formats import OffsetSync


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What the writer remembers of one partition between records (and batches, within a container)."""

    previous_upstream: int = -1
    previous_downstream: int = -1
    last_sync_upstream: int = -1
    last_sync_downstream: int = -1

    def sync_due(self, upstream: int, downstream: int, offset_lag_max: int) -> bool:
        if self.last_sync_downstream == -1:
            return True  # first record since the container started
        return (
            downstream - (self.last_sync_downstream + 1) >= offset_lag_max
            or upstream - self.last_sync_upstream >= offset_lag_max
            or upstream - self.previous_upstream != 1
            or downstream < self.previous_downstream
        )


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
        syncs: list[OffsetSync] = []
        last = len(pairs) - 1
        for i, (upstream, downstream) in enumerate(pairs):
            if i == last or state.sync_due(upstream, downstream, self.offset_lag_max):
                syncs.append(OffsetSync(topic, partition, upstream, downstream))
                state = PartitionState(upstream, downstream, upstream, downstream)
            else:
                state = replace(state, previous_upstream=upstream, previous_downstream=downstream)
        return syncs, state

    def commit(self, topic: str, partition: int, state: PartitionState) -> None:
        self._states[(topic, partition)] = state
