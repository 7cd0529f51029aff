"""A tiny run of ``make bench`` (no MirrorMaker 2, no latency phase): the harness works and reports figures.

It includes the exactly-once run, whose end is detected differently (committed source offsets, since the
remote partitions also hold commit markers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main

pytestmark = pytest.mark.kafka


def test_bench_harness_reports_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--records", "3000", "--partitions", "3", "--latency-seconds", "0", "--handler-records", "3000",
         "--backends", "confluent-kafka", "--processes", "2", "--skip-mm2", "--out", str(tmp_path)]
    )  # fmt: skip

    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["limit"]["records_per_second"] > 0
    runs = {run["name"]: run for run in results["runs"]}
    assert set(runs) == {"smm run (confluent-kafka, x2)", "smm run (confluent-kafka, exactly-once, x2)"}
    assert all(run["records_per_second"] > 0 and run["cpu_seconds"] > 0 for run in runs.values())
    handler = results["handler"]["confluent-kafka"]
    assert handler["records"] >= 3000 and handler["cpuMicrosPerRecord"] > 0
    assert results["cost"]["confluent-kafka"]["arm64"] > 0
    table = capsys.readouterr().out
    assert "producer-perf limit" in table and "handler alone (confluent-kafka)" in table
    assert (tmp_path / "results.png").stat().st_size > 0
