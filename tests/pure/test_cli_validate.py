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
    assert "flow cloud->onprem" not in out
    assert "pair cloud->onprem: heartbeats only" in out  # MM2 starts every pair while heartbeats are on


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
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


def test_unused_keys_are_warnings_and_strict_refuses_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD + "mars->cloud.enabled = true\ntasks.max = 4\n"
    code, out, err = _run(tmp_path, text, capsys)
    assert code == 0 and "2 key(s) accepted and unused" in out
    assert "warning: mars->cloud.enabled: 'mars->cloud' is not a flow between the clusters" in err
    assert "warning: tasks.max: a MirrorMaker 2 setting not used here" in err
    path = tmp_path / "mm2.properties"
    assert main(["validate", "--strict", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mars->cloud.enabled" in err and "tasks.max" in err and "--strict refuses" in err


def test_missing_bootstrap_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(tmp_path, GOOD.replace("cloud.bootstrap.servers = 127.0.0.1:9192\n", ""), capsys)
    assert code == 1
    assert "cloud.bootstrap.servers: missing" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.properties")]) == 1
    assert "cannot read" in capsys.readouterr().err
