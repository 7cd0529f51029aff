"""``smm validate``: prints the flows it understood, and rejects bad files with the key, value and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.commands import main

GOOD = """\
clusters = onprem, cloud
onprem.bootstrap.servers = 127.0.0.1:9092
cloud.bootstrap.servers = 127.0.0.1:9192
onprem->cloud.enabled = true
onprem->cloud.topics = orders, payments.*
replication.factor = 1
"""


def _run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "mm2.properties"
    path.write_text(text)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_flows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(tmp_path, GOOD, capsys)
    assert code == 0
    assert "flow onprem->cloud: topics orders, payments.*" in out
    assert "onprem.orders" in out
    assert "cloud->onprem" not in out


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("mars->cloud.enabled = true\n", "mars->cloud.enabled: unknown cluster alias 'mars'"),
        ("onprem->cloud.topics = orders(\n", "onprem->cloud.topics = 'orders(': pattern 'orders(' is not a valid"),
        ("replication.policy.class = com.example.Mine\n", "replication.policy.class = 'com.example.Mine': allowed:"),
        ("emit.checkpoints.interval.seconds = soon\n", "emit.checkpoints.interval.seconds = 'soon': allowed: a whole"),
        ("refresh.topics.interval.seconds = 1.5\n", "refresh.topics.interval.seconds = '1.5'"),
        ("onprem.security.protocol = TLS\n", "onprem.security.protocol = 'TLS': must be one of PLAINTEXT"),
    ],
)
def test_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, expected: str) -> None:
    code, _, err = _run(tmp_path, GOOD + extra, capsys)
    assert code == 1
    assert expected in err


def test_missing_bootstrap_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(tmp_path, GOOD.replace("cloud.bootstrap.servers = 127.0.0.1:9192\n", ""), capsys)
    assert code == 1
    assert "cloud.bootstrap.servers: missing" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.properties")]) == 1
    assert "cannot read" in capsys.readouterr().err
