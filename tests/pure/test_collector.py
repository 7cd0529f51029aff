"""The collector settings a mirroring process runs with (``functions.mirror.collector``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from functions.mirror import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_raises_the_young_threshold_and_freezes_the_start_up_heap() -> None:
    kept = [[n] for n in range(1000)]  # start-up state: containers that live as long as the process

    assert collector.tune_for_batches() == collector.THRESHOLDS == gc.get_threshold()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.isenabled(), "cycles that libraries make must still be collected"
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
