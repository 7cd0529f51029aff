"""The local runtime's running totals: every figure of a batch report is counted."""

from __future__ import annotations

from functions.mirror.mirror import BatchReport
from shared.local.emulator import FlowTotals


def test_totals_add_up_batch_reports() -> None:
    report = BatchReport(records=10, mirrored=7, bytes=700, dead_lettered=1, gaps=1)
    report.skipped["cycle"] = 2
    totals = FlowTotals()
    totals.add(report.as_dict())
    totals.add(report.as_dict())
    assert (totals.batches, totals.records, totals.mirrored, totals.bytes) == (2, 20, 14, 1400)
    assert (totals.skipped, totals.dead_lettered, totals.gaps) == (4, 2, 2)
