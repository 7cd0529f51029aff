"""``smm run --settings``: each flow's emulated mappings get what the deploy settings would give its Lambda mappings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli.commands import _mapping_options, main
from shared.cli.config_file import load
from shared.mm2.config import MirrorConfig

CONFIG = """\
clusters = onprem, cloud
onprem.bootstrap.servers = 127.0.0.1:1
cloud.bootstrap.servers = 127.0.0.1:2
onprem->cloud.enabled = true
cloud->onprem.enabled = true
replication.factor = 1
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "mm2.properties"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def config(config_path: Path) -> MirrorConfig:
    return load(str(config_path))


def test_settings_file_and_per_flow_overrides(config: MirrorConfig, tmp_path: Path) -> None:
    settings = {
        "event_source": {
            "provisioned_pollers": {"minimum": 1, "maximum": 2},
            "on_failure": "kafka://failed",
            "max_retry_attempts": 3,
        },
        "flow_event_sources": {"cloud->onprem": {"bisect_batch_on_error": True, "max_record_age_seconds": 600}},
        "functions": {"mirror": {"timeout_seconds": 300}},
    }
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps(settings))
    options = _mapping_options(str(path), config)
    out, back = options["onprem->cloud"], options["cloud->onprem"]
    assert (out.template.on_failure, out.template.max_retry_attempts, out.template.bisect_batch_on_error) == (
        "kafka://failed",
        3,
        False,
    )
    assert out.template.max_record_age_seconds is None and out.template.may_skip
    # the override's keys over event_source's
    assert (back.template.bisect_batch_on_error, back.template.max_record_age_seconds) == (True, 600)
    assert back.template.max_retry_attempts == 3 and back.template.on_failure == "kafka://failed"
    assert out.timeout_seconds == back.timeout_seconds == 300


def test_inline_settings_and_lambdas_defaults(config: MirrorConfig) -> None:
    options = _mapping_options("{}", config)
    for option in options.values():
        template = option.template
        assert (template.on_failure, template.max_retry_attempts, template.max_record_age_seconds) == (None,) * 3
        assert not template.bisect_batch_on_error and not template.may_skip
        assert option.timeout_seconds == 120


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ('{"event_source": {"max_retry_attempts": "ten"}}', 'event_source.max_retry_attempts = "ten": allowed:'),
        (
            '{"event_source": {"max_retry_attempts": 2}}',
            "event_source: max_retry_attempts need provisioned mode for Kafka event sources",
        ),
        ('{"flow_event_sources": {"a->b": {}}}', "flow_event_sources.a->b: not an enabled flow"),
        ('{"event_source": {"on_failure": "ftp://x"}}', 'event_source.on_failure = "ftp://x": allowed:'),
        ("{not json", "settings: not JSON"),
        ("missing.json", "settings file missing.json: cannot read it"),
    ],
)
def test_bad_settings_fail_before_anything_runs(
    config_path: Path, capsys: pytest.CaptureFixture[str], settings: str, expected: str
) -> None:
    assert main(["run", str(config_path), "--settings", settings, "--duration", "0"]) == 1
    assert expected in capsys.readouterr().err
