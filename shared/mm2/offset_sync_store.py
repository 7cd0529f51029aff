"""The checkpoint side's view of offset syncs, and when a checkpoint may be emitted. Pure: no I/O.

Translation follows MM2's ``OffsetSyncStore`` (KAFKA-14666):

- nothing is translated until the offset-syncs topic has been read to its end once (``mark_read_to_end``), so a
  half-read history never yields a stale answer;
- upstream offset ``U`` of a partition translates through the kept sync ``S`` with the largest upstream <= ``U``:
  ``S.downstream`` when ``S.upstream == U``, else ``S.downstream + 1`` (just past the last record known to be
  mirrored: never skips a record, may re-deliver the ones between ``S`` and ``U``);
- no syncs for the partition, or ``U`` older than the oldest kept sync: no translation;
- a sync whose upstream offset is lower than the newest one (the source partition was rewound, or a batch was
  mirrored again) replaces the whole history; so does one whose downstream offset went lower (the remote topic
  was recreated), since older syncs then point into a log that no longer exists. A sync with both offsets lower
  that fits between the syncs around it is an older one arriving late (two pollers of the partition overlapping
  during a rebalance write out of order, which MM2's single task never does): it is ignored, not a rewind.

The history kept is this project's stronger rule (``mm2.md`` §7). MM2 keeps 64 syncs per partition, spaced
exponentially, so on a steady partition a translation can be off by far more than ``offset.lag.max``. Here every
sync read is kept (dense) for the newest ``dense_cap`` syncs of each partition: with the mirror emitting a sync
at least every ``offset.lag.max`` upstream records and for the last record of every batch, a consumer position
inside that window translates with at most ``offset.lag.max - 1`` re-delivered records, and exactly once the
flow has drained. Memory stays bounded: beyond the cap, the oldest syncs are evicted (an eighth of the cap at
a time) into MM2's 64-slot exponential array, so positions further back still translate, with MM2's error.
At the default cap of 1024 and ``offset.lag.max=100`` the dense window covers the newest ~100,000 records of a
partition in 16 KiB.

``CheckpointStore`` holds MM2's checkpoint emission rules (``MirrorCheckpointTask.checkpointIsMoreRecent`` with
``CheckpointStore``, KAFKA-15905): nothing is emitted until the old checkpoints were read; a checkpoint is
emitted when it is the first for its group and partition, when the group rewound upstream, or when its
downstream offset is higher than the last one; repeats and steps backwards are not.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from shared.mm2.formats import Checkpoint, FormatError, OffsetSync

DEFAULT_DENSE_CAP = 1024
THINNED_SLOTS = 64  # MM2's Long.SIZE


class _PartitionSyncs:
    """One source partition's syncs: a dense window (oldest first) and MM2's thinned array behind it."""

    __slots__ = ("downstream", "thinned", "upstream")

    def __init__(self) -> None:
        self.upstream = array("q")
        self.downstream = array("q")
        # MM2's layout: [0] the newest evicted sync, then spaced roughly exponentially in upstream offset.
        self.thinned: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.upstream) + len(self.thinned)

    def newest(self) -> tuple[int, int]:
        return self.upstream[-1], self.downstream[-1]

    def add(self, upstream: int, downstream: int, dense_cap: int) -> None:
        if self.upstream:
            last_up, last_down = self.newest()
            if upstream < last_up and downstream < last_down and self._fits(upstream, downstream):
                return  # an older pair arriving late (two pollers overlapping in a rebalance): history stands
            if upstream < last_up or downstream < last_down:
                self.clear()
            elif upstream == last_up:
                self.downstream[-1] = downstream  # the same record mirrored again: its newest copy wins
                return
        self.upstream.append(upstream)
        self.downstream.append(downstream)
        if len(self.upstream) > dense_cap:
            self._evict(max(1, dense_cap // 8))

    def _fits(self, upstream: int, downstream: int) -> bool:
        """Whether (upstream, downstream) lies between the dense syncs around it, both offsets in order."""
        i = bisect_right(self.upstream, upstream)
        after_previous = i == 0 or self.downstream[i - 1] <= downstream
        before_next = i == len(self.upstream) or self.downstream[i] >= downstream
        return after_previous and before_next

    def clear(self) -> None:
        del self.upstream[:]
        del self.downstream[:]
        self.thinned.clear()

    def _evict(self, count: int) -> None:
        for up, down in zip(self.upstream[:count], self.downstream[:count], strict=True):
            _push_thinned(self.thinned, (up, down))
        del self.upstream[:count]
        del self.downstream[:count]

    def floor(self, offset: int, side: int) -> tuple[int, int] | None:
        """The kept (upstream, downstream) sync with the largest ``side`` offset <= ``offset`` (0 up, 1 down)."""
        dense = self.upstream if side == 0 else self.downstream
        if dense and dense[0] <= offset:
            i = bisect_right(dense, offset) - 1
            return self.upstream[i], self.downstream[i]
        if not self.thinned or self.thinned[-1][side] > offset:
            return None
        return next(sync for sync in self.thinned if sync[side] <= offset)


def _push_thinned(slots: list[tuple[int, int]], sync: tuple[int, int]) -> None:
    """MM2's ``updateSyncArray``: slot i keeps a sync until the new one differs from it above bit i."""
    if not slots:
        slots.extend([sync] * THINNED_SLOTS)
        return
    slots[0] = sync
    for i in range(1, THINNED_SLOTS):
        if (slots[i][0] ^ sync[0]) >> i:
            slots[i] = sync
        else:
            break


@dataclass(frozen=True)
class Lookup:
    """A translated position and the sync it came from (to tell an exact answer from an approximate one)."""

    sync: OffsetSync
    offset: int


class OffsetSyncStore:
    """Offset syncs of one offset-syncs topic, fed in topic order; translates consumer positions."""

    def __init__(self, dense_cap: int = DEFAULT_DENSE_CAP) -> None:
        if dense_cap < 1:
            raise ValueError(f"dense_cap must be at least 1, not {dense_cap}")
        self.dense_cap = dense_cap
        self.read_to_end = False
        self.invalid_records = 0
        self._partitions: dict[tuple[str, int], _PartitionSyncs] = {}

    def add(self, sync: OffsetSync) -> None:
        """Apply one sync, in the order of the offset-syncs topic."""
        key = (sync.topic, sync.partition)
        history = self._partitions.get(key)
        if history is None:
            history = self._partitions[key] = _PartitionSyncs()
        history.add(sync.upstream_offset, sync.downstream_offset, self.dense_cap)

    def add_record(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record of the topic; a record that is not an OffsetSync is counted and skipped."""
        try:
            if key is None or value is None:
                raise FormatError("null key or value")
            self.add(OffsetSync.deserialize(key, value))
        except FormatError:
            self.invalid_records += 1
            return False
        return True

    def mark_read_to_end(self) -> None:
        self.read_to_end = True

    def clear(self) -> None:
        """Forget everything (the topic is being read again from its beginning)."""
        self._partitions.clear()
        self.read_to_end = False
        self.invalid_records = 0

    def partitions(self) -> Iterator[tuple[str, int]]:
        return iter(self._partitions)

    def kept(self, topic: str, partition: int) -> int:
        """How many syncs are kept for the partition (dense window plus thinned slots)."""
        history = self._partitions.get((topic, partition))
        return len(history) if history else 0

    def newest(self, topic: str, partition: int) -> OffsetSync | None:
        history = self._partitions.get((topic, partition))
        if not history or not history.upstream:
            return None
        return OffsetSync(topic, partition, *history.newest())

    def lookup_downstream(self, topic: str, partition: int, upstream: int) -> Lookup | None:
        """Translation of upstream position ``upstream`` with the sync it used; None when not translatable."""
        sync = self._floor(topic, partition, upstream, 0)
        if sync is None:
            return None
        step = 0 if sync.upstream_offset == upstream else 1
        return Lookup(sync, sync.downstream_offset + step)

    def translate_downstream(self, topic: str, partition: int, upstream: int) -> int | None:
        """Downstream position for a consumer at ``upstream`` on the source partition, or None."""
        found = self.lookup_downstream(topic, partition, upstream)
        return None if found is None else found.offset

    def lookup_upstream(self, topic: str, partition: int, downstream: int) -> Lookup | None:
        """The inverse, for failback: source position for a consumer at ``downstream`` on the remote topic.

        The same rule mirrored: the sync with the largest downstream <= the position; its upstream offset when
        the position is that record, else the next upstream offset (the consumer has read the synced record, so
        resuming after it skips nothing and re-delivers at most the records up to the next sync).
        """
        sync = self._floor(topic, partition, downstream, 1)
        if sync is None:
            return None
        return Lookup(sync, sync.upstream_offset + (0 if sync.downstream_offset == downstream else 1))

    def translate_upstream(self, topic: str, partition: int, downstream: int) -> int | None:
        found = self.lookup_upstream(topic, partition, downstream)
        return None if found is None else found.offset

    def _floor(self, topic: str, partition: int, offset: int, side: int) -> OffsetSync | None:
        if not self.read_to_end:
            return None
        history = self._partitions.get((topic, partition))
        found = history.floor(offset, side) if history else None
        return None if found is None else OffsetSync(topic, partition, *found)


class CheckpointStore:
    """The newest checkpoint per group and downstream partition, and whether a new one may be emitted."""

    def __init__(self) -> None:
        self.loaded = False
        self.invalid_records = 0
        self._last: dict[tuple[str, str, int], Checkpoint] = {}

    def add_record(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record of the checkpoints topic (topic order: the later one wins)."""
        try:
            if key is None or value is None:
                raise FormatError("null key or value")
            self.update(Checkpoint.deserialize(key, value))
        except FormatError:
            self.invalid_records += 1
            return False
        return True

    def mark_loaded(self) -> None:
        self.loaded = True

    def clear(self) -> None:
        self._last.clear()
        self.loaded = False
        self.invalid_records = 0

    def update(self, checkpoint: Checkpoint) -> None:
        self._last[(checkpoint.group, checkpoint.topic, checkpoint.partition)] = checkpoint

    def last(self, group: str, topic: str, partition: int) -> Checkpoint | None:
        return self._last.get((group, topic, partition))

    def for_group(self, group: str) -> list[Checkpoint]:
        return [c for (g, _, _), c in self._last.items() if g == group]

    def groups(self) -> set[str]:
        return {g for g, _, _ in self._last}

    def should_emit(self, checkpoint: Checkpoint) -> bool:
        """MM2's rule: first for the group and partition, group rewound upstream, or downstream advanced."""
        if not self.loaded:
            return False
        last = self.last(checkpoint.group, checkpoint.topic, checkpoint.partition)
        return (
            last is None
            or checkpoint.upstream_offset < last.upstream_offset
            or checkpoint.downstream_offset > last.downstream_offset
        )
