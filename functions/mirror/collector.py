"""Garbage-collector settings for a process that mirrors batches (the Lambda container, ``smm run``).

A 6 MB batch is ~10^5 short-lived containers (records, header lists and tuples), all freed by reference counting:
they form no cycles. CPython's default young-generation threshold (700 allocations) still runs ~140 collections
per batch, and as the batch stays alive until the handler returns, the older generations' collections traverse
all of it again. Measured on the benchmark's workload this was a third of the mirror's CPU (issue 14,
README Performance). Raising the threshold keeps the collector for the cycles libraries do make (exceptions
with tracebacks, loggers), only less often; freezing moves the start-up heap (modules, clients, configuration)
out of every later traversal.
"""

from __future__ import annotations

import gc

# Young collections every 100,000 net allocations (CPython: 700); the middle generation every 20 young ones, the
# oldest every 100 middle ones (CPython: 10 and 10), as the plan measured best (a 10^6 threshold was no faster).
YOUNG_THRESHOLD = 100_000
THRESHOLDS = (YOUNG_THRESHOLD, 20, 100)


def tune_for_batches() -> tuple[int, int, int]:
    """Freeze what start-up made and collect less often; returns the thresholds now in force."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    first, second, third = gc.get_threshold()
    return first, second, third
