"""``make demo`` end to end on its own pair of clusters (free ports), as a newcomer runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.commands import main
from shared.local.broker import free_port

pytestmark = pytest.mark.kafka

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.properties"


def test_demo_mirrors_both_ways_without_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DEMO.read_text()
    text = text.replace("127.0.0.1:29092", f"127.0.0.1:{free_port()}")
    text = text.replace("127.0.0.1:29192", f"127.0.0.1:{free_port()}")
    config = tmp_path / "demo.properties"
    config.write_text(text)
    monkeypatch.setenv("SMM_LOCAL_DIR", str(tmp_path / "clusters"))

    code = main(["demo", "--config", str(config), "--duration", "90"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "onprem.orders" in out and "cloud.payments" in out
    assert "loop topics (onprem.cloud.*, cloud.onprem.*): none" in out
    assert "== demo passed" in out
    assert "stopping local clusters" in out
