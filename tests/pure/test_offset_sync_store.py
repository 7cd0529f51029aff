"""Offset translation and checkpoint emission rules: every edge case of ``mm2.md`` §7."""

from __future__ import annotations

import random

import pytest

from shared.mm2.formats import Checkpoint, OffsetSync
from shared.mm2.offset_sync_store import THINNED_SLOTS, CheckpointStore, OffsetSyncStore
from shared.mm2.offset_syncs import OffsetSyncPlanner

T, P = "t", 0


def store_with(*pairs: tuple[int, int], dense_cap: int = 1024, read: bool = True) -> OffsetSyncStore:
    store = OffsetSyncStore(dense_cap)
    for upstream, downstream in pairs:
        store.add(OffsetSync(T, P, upstream, downstream))
    if read:
        store.mark_read_to_end()
    return store


# --- translation -----------------------------------------------------------------------------------------


def test_no_syncs_no_translation() -> None:
    store = store_with()
    assert store.translate_downstream(T, P, 0) is None
    assert store.translate_downstream(T, P, 100) is None
    assert store.newest(T, P) is None


def test_syncs_of_another_partition_do_not_translate_this_one() -> None:
    store = store_with((0, 0))
    assert store.translate_downstream(T, 1, 5) is None
    assert store.translate_downstream("other", P, 5) is None


def test_nothing_translates_until_the_topic_was_read_to_its_end() -> None:
    store = store_with((0, 0), (10, 10), read=False)
    assert store.translate_downstream(T, P, 10) is None
    assert store.translate_upstream(T, P, 10) is None
    store.mark_read_to_end()
    assert store.translate_downstream(T, P, 10) == 10


def test_position_before_the_oldest_sync_is_not_translated() -> None:
    store = store_with((100, 5), (200, 105))
    assert store.translate_downstream(T, P, 99) is None
    assert store.translate_downstream(T, P, 0) is None


def test_exact_hit_translates_to_the_synced_record() -> None:
    store = store_with((0, 0), (100, 40), (200, 140))
    assert store.translate_downstream(T, P, 0) == 0
    assert store.translate_downstream(T, P, 100) == 40
    assert store.translate_downstream(T, P, 200) == 140


def test_between_syncs_translates_just_past_the_preceding_sync() -> None:
    store = store_with((0, 0), (100, 40), (200, 140))
    assert store.translate_downstream(T, P, 1) == 1
    assert store.translate_downstream(T, P, 150) == 41
    assert store.translate_downstream(T, P, 199) == 41
    assert store.translate_downstream(T, P, 5000) == 141  # past the newest: one after the last mirrored record


def test_translation_is_monotonic_in_the_upstream_offset() -> None:
    store = store_with(*[(u, u // 2) for u in range(0, 10_000, 37)], dense_cap=16)
    translated = [store.translate_downstream(T, P, u) for u in range(0, 10_000, 11)]
    known = [d for d in translated if d is not None]
    assert known == sorted(known)


def test_upstream_rewind_replaces_the_whole_history() -> None:
    store = store_with((0, 0), (100, 100), (200, 200), (50, 300))
    assert store.kept(T, P) == 1
    assert store.translate_downstream(T, P, 0) is None  # older than the only sync left
    assert store.translate_downstream(T, P, 50) == 300
    assert store.translate_downstream(T, P, 199) == 301


def test_downstream_rewind_replaces_the_whole_history() -> None:
    """The remote topic was recreated: syncs into the old log would translate into nothing."""
    store = store_with((0, 500), (100, 600), (200, 0))
    assert store.kept(T, P) == 1
    assert store.translate_downstream(T, P, 150) is None
    assert store.translate_downstream(T, P, 200) == 0


def test_the_same_record_mirrored_again_keeps_its_newest_copy() -> None:
    store = store_with((0, 0), (10, 10), (10, 14))
    assert store.kept(T, P) == 2
    assert store.translate_downstream(T, P, 10) == 14
    assert store.translate_downstream(T, P, 11) == 15


def test_clear_forgets_everything_and_waits_for_a_new_read() -> None:
    store = store_with((0, 0))
    store.clear()
    assert not store.read_to_end
    assert store.kept(T, P) == 0


def test_records_that_are_not_offset_syncs_are_counted_and_skipped() -> None:
    store = OffsetSyncStore()
    sync = OffsetSync(T, P, 3, 4)
    assert store.add_record(sync.record_key(), sync.record_value())
    assert not store.add_record(b"junk", b"junk")
    assert not store.add_record(None, sync.record_value())
    store.mark_read_to_end()
    assert store.invalid_records == 2
    assert store.translate_downstream(T, P, 3) == 4


def test_dense_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dense_cap"):
        OffsetSyncStore(0)


# --- bounded memory and the dense rule -------------------------------------------------------------------


def test_history_is_bounded_by_the_cap_plus_mm2s_thinned_slots() -> None:
    cap = 64
    store = store_with(*[(u, u) for u in range(100_000)], dense_cap=cap)
    assert store.kept(T, P) <= cap + THINNED_SLOTS


def test_positions_behind_the_dense_window_still_translate_with_mm2s_error() -> None:
    cap = 32
    count = 10_000
    store = store_with(*[(u, u) for u in range(count)], dense_cap=cap)
    translated = [store.translate_downstream(T, P, upstream) for upstream in range(count)]
    assert all(t is not None and t <= u for u, t in enumerate(translated))  # always answers, never skips
    # fewer distinct answers than positions: the old history is thinned, MM2-style
    assert len(set(translated[: count - cap])) <= THINNED_SLOTS


def test_dense_window_keeps_every_sync() -> None:
    cap = 128
    store = store_with(*[(u * 10, u * 10) for u in range(1000)], dense_cap=cap)
    # the newest ``cap - cap // 8`` syncs are always in the dense window: each translates exactly
    for u in range(1000 - (cap - cap // 8), 1000):
        assert store.translate_downstream(T, P, u * 10) == u * 10
        assert store.translate_downstream(T, P, u * 10 + 5) == u * 10 + 1


@pytest.mark.parametrize("lag_max", [1, 7, 100])
def test_with_the_projects_sync_rule_translation_is_off_by_at_most_offset_lag_max(lag_max: int) -> None:
    """Mirror random batches through the real sync planner, then translate every consumer position."""
    rng = random.Random(lag_max)
    planner = OffsetSyncPlanner(lag_max)
    store = OffsetSyncStore(dense_cap=4096)  # the whole history in the dense window
    downstream_of: dict[int, int] = {}
    upstream, downstream = 0, 0
    while upstream < 3000:
        pairs = []
        for _ in range(rng.randint(1, 250)):
            upstream += rng.choice((1, 1, 1, 1, 3))  # some upstream gaps (compaction, markers)
            pairs.append((upstream, downstream))
            downstream_of[upstream] = downstream
            downstream += 1
        syncs, state = planner.plan(T, P, pairs)
        planner.commit(T, P, state)
        for sync in syncs:
            store.add(sync)
    store.mark_read_to_end()
    records = sorted(downstream_of)
    end = records[-1] + 1
    for position in range(records[0], end + 1):
        translated = store.translate_downstream(T, P, position)
        assert translated is not None
        # the copy of the first record at or after ``position`` (or the end of the remote topic)
        truth = next((downstream_of[u] for u in records if u >= position), downstream)
        assert translated <= truth, position  # never skips
        assert truth - translated <= lag_max, position  # re-delivers at most offset.lag.max records
    assert store.translate_downstream(T, P, end) == downstream  # drained: exact at the end


def test_inverse_translation_for_failback() -> None:
    store = store_with((0, 10), (100, 110), (200, 210))
    assert store.translate_upstream(T, P, 110) == 100  # exact hit
    assert store.translate_upstream(T, P, 150) == 101  # the consumer read 110 (upstream 100): resume after it
    assert store.translate_upstream(T, P, 211) == 201
    assert store.translate_upstream(T, P, 9) is None  # before the oldest sync
    lookup = store.lookup_upstream(T, P, 150)
    assert lookup is not None and lookup.sync == OffsetSync(T, P, 100, 110)


def test_inverse_translation_behind_the_dense_window() -> None:
    store = store_with(*[(u, u + 1000) for u in range(5000)], dense_cap=16)
    for downstream in range(1000, 6000, 53):
        back = store.translate_upstream(T, P, downstream)
        assert back is not None
        assert back <= downstream - 1000  # never skips


# --- checkpoint emission ---------------------------------------------------------------------------------


def checkpoint(upstream: int, downstream: int, group: str = "g", partition: int = 0) -> Checkpoint:
    return Checkpoint(group, "A.t", partition, upstream, downstream)


def loaded(*existing: Checkpoint) -> CheckpointStore:
    store = CheckpointStore()
    for c in existing:
        store.add_record(c.record_key(), c.record_value())
    store.mark_loaded()
    return store


def test_nothing_is_emitted_until_the_old_checkpoints_were_read() -> None:
    store = CheckpointStore()
    assert not store.should_emit(checkpoint(10, 10))
    store.mark_loaded()
    assert store.should_emit(checkpoint(10, 10))


def test_first_checkpoint_of_a_group_and_partition_is_emitted() -> None:
    store = loaded(checkpoint(10, 10, group="other"), checkpoint(10, 10, partition=1))
    assert store.should_emit(checkpoint(5, 5))


def test_checkpoints_never_go_backwards() -> None:
    store = loaded(checkpoint(100, 90))
    assert not store.should_emit(checkpoint(100, 90))  # repeat
    assert not store.should_emit(checkpoint(150, 90))  # upstream moved, translation did not
    assert not store.should_emit(checkpoint(150, 80))  # lost sync history would step back: refused
    assert store.should_emit(checkpoint(150, 91))  # downstream advanced


def test_a_group_rewound_upstream_gets_its_lower_checkpoint() -> None:
    store = loaded(checkpoint(100, 90))
    assert store.should_emit(checkpoint(20, 15))


def test_the_newest_record_of_the_topic_wins_and_update_tracks_emitted_ones() -> None:
    store = loaded(checkpoint(10, 10), checkpoint(50, 48))
    assert store.last("g", "A.t", 0) == checkpoint(50, 48)
    store.update(checkpoint(60, 59))
    assert not store.should_emit(checkpoint(60, 59))
    assert store.groups() == {"g"}
    assert store.for_group("g") == [checkpoint(60, 59)]


def test_invalid_checkpoint_records_are_skipped() -> None:
    store = CheckpointStore()
    assert not store.add_record(b"x", b"y")
    assert not store.add_record(None, None)
    assert store.invalid_records == 2
    store.clear()
    assert store.invalid_records == 0 and not store.loaded


def test_an_older_sync_arriving_late_keeps_the_history() -> None:
    """Two pollers overlapping in a rebalance write out of order; MM2's single task never does. A sync that fits
    between the kept ones is stale, not a rewind: the history (and its translations) stands."""
    store = OffsetSyncStore()
    for up, down in ((0, 0), (100, 100), (200, 200), (150, 150)):  # 150 arrives after 200
        store.add(OffsetSync("t", 0, up, down))
    store.mark_read_to_end()
    assert store.translate_downstream("t", 0, 120) == 101 and store.translate_downstream("t", 0, 200) == 200
    store.add(OffsetSync("t", 0, 50, 300))  # the partition mirrored again from 50: a real rewind, as in MM2
    assert store.translate_downstream("t", 0, 120) == 301 and store.translate_downstream("t", 0, 10) is None
