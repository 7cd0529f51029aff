"""A tiny run of ``make bench`` (no MirrorMaker 2): the harness works and reports every figure.

It includes the exactly-once run, whose end is detected differently (committed source offsets, since the
remote partitions also hold commit markers), and a short latency phase, whose probes must reach every partition.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import backend_label, main
from shared.mm2.config import FLOW_KEYS

pytestmark = pytest.mark.kafka


def test_bench_harness_reports_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--records", "3000", "--partitions", "3", "--latency-seconds", "1", "--latency-rate", "200",
         "--handler-records", "3000", "--backends", "default", "--exactly-once-backends", "default",
         "--processes", "2", "--skip-mm2", "--out", str(tmp_path)]
    )  # fmt: skip

    assert code == 0
    default = f"default ({FLOW_KEYS['smm.producer.backend'].default})"
    assert backend_label("default") == default
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["limit"]["records_per_second"] > 0
    runs = {run["name"]: run for run in results["runs"]}
    assert set(runs) == {f"smm run ({default}, x2)", f"smm run ({default}, exactly-once, x2)"}
    for run in runs.values():
        assert run["records_per_second"] > 0 and run["cpu_seconds"] > 0
        assert len(run["peak_rss_mb"]) == 2 and all(mb > 10 for mb in run["peak_rss_mb"]), "smm and its peer"
        assert run["latency_p50_ms"] > 0 and run["latency_p99_ms"] >= run["latency_p50_ms"]
    handler = results["handler"][default]
    assert handler["records"] >= 3000 and handler["cpuMicrosPerRecord"] > 0
    assert handler["decodeCpuMicrosPerRecord"] > 0 and handler["eventBytes"] > 5_000_000
    assert handler["invocationTracemallocPeakMB"] > 0 and handler["invocationMemoryPerEventSize"] > 0
    assert results["cost"][default]["arm64"] > 0
    table = capsys.readouterr().out
    assert (tmp_path / "results.txt").read_text().strip() in table
    header = next(line for line in table.splitlines() if line.startswith("run "))
    for column in ("rec/s", "CPU µs/rec", "peak RSS MB/process", "p50 ms", "p99 ms", "vs MM2", "vs limit"):
        assert column in header
    assert "producer-perf limit" in table and f"handler alone ({default})" in table
    assert "Lambda runtime decode" in table
    goals = [line for line in table.splitlines() if line.startswith("goal: ")]
    assert len(goals) == 8
    assert sum(line.endswith(": not measured") for line in goals) == 2, "only the two MM2 comparisons"
    assert (tmp_path / "results.png").stat().st_size > 0
