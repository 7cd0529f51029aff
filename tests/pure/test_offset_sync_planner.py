"""When the mirror emits offset syncs: MM2's rules plus this project's stronger ones; and the gap rule."""

from __future__ import annotations

import itertools

import pytest

from functions.mirror.mirror import unexplained_gap
from shared.mm2.offset_syncs import OffsetSyncPlanner, PartitionState, sync_due


def _upstreams(planner: OffsetSyncPlanner, pairs: list[tuple[int, int]], commit: bool = True) -> list[int]:
    syncs, state = planner.plan("t", 0, pairs)
    if commit:
        planner.commit("t", 0, state)
    return [s.upstream_offset for s in syncs]


def test_first_record_and_last_of_batch() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=100)
    assert _upstreams(planner, [(i, i) for i in range(10)]) == [0, 9]


def test_at_least_every_offset_lag_max_records() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=10)
    ups = _upstreams(planner, [(i, i) for i in range(35)])
    assert ups == [0, 10, 20, 30, 34]
    assert all(b - a <= 10 for a, b in itertools.pairwise(ups))


def test_downstream_drift_triggers_a_sync() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=10)
    # duplicates downstream (a redelivered prefix) make downstream run ahead of upstream
    assert _upstreams(planner, [(0, 0), (1, 12), (2, 13)]) == [0, 1, 2]


def test_non_contiguous_upstream_triggers_a_sync() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=100)
    # compaction or transaction markers: 3 -> 7 is not contiguous
    assert _upstreams(planner, [(0, 0), (1, 1), (2, 2), (3, 3), (7, 4), (8, 5), (9, 6)]) == [0, 7, 9]


def test_downstream_going_backwards_triggers_a_sync() -> None:
    assert sync_due(
        6,
        40,
        previous_upstream=5,
        previous_downstream=50,
        last_sync_upstream=5,
        last_sync_downstream=50,
        offset_lag_max=100,
    )
    planner = OffsetSyncPlanner(offset_lag_max=100)
    planner.commit("t", 0, PartitionState(5, 50, 5, 50))
    assert _upstreams(planner, [(6, 40), (7, 41)]) == [6, 7]


def test_state_carries_across_batches_only_when_committed() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=100)
    _upstreams(planner, [(0, 0), (1, 1)], commit=False)
    # not committed: the next batch is still the partition's first
    assert _upstreams(planner, [(0, 0), (1, 1), (2, 2)]) == [0, 2]
    # committed: contiguous continuation needs only its last record
    assert _upstreams(planner, [(3, 3), (4, 4)]) == [4]


def test_redelivered_batch_still_gives_true_pairs() -> None:
    planner = OffsetSyncPlanner(offset_lag_max=100)
    _upstreams(planner, [(0, 0), (1, 1), (2, 2)])
    # the ESM redelivers 1..2; the copies landed at 3..4 downstream
    syncs, _ = planner.plan("t", 0, [(1, 3), (2, 4)])
    assert [(s.upstream_offset, s.downstream_offset) for s in syncs] == [(1, 3), (2, 4)]


@pytest.mark.parametrize(
    ("expected", "first", "log_start", "lost"),
    [
        (10, 10, 0, 0),  # contiguous
        (10, 15, 3, 0),  # compaction / transaction markers: log start did not pass what we expected
        (10, 15, 15, 5),  # retention deleted 10..14 before they were mirrored
        (10, 15, 12, 2),  # deleted 10..11; 12..14 were markers or compacted
        (10, 8, 20, 0),  # redelivery (going back) is not a gap
    ],
)
def test_unexplained_gap(expected: int, first: int, log_start: int, lost: int) -> None:
    assert unexplained_gap(expected, first, log_start) == lost
