"""``npx cdk synth`` with the project's own CLI (package.json), offline and without AWS credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.support import EXAMPLES, ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(
    not CDK.exists() or shutil.which("node") is None,
    reason="the CDK CLI is not installed: run `npm ci` (the Makefile's node_modules target)",
)
def test_npx_cdk_synth_works_offline_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        CDK_DISABLE_VERSION_CHECK="1",
        CDK_DISABLE_CLI_TELEMETRY="true",
        AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata credentials either
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            "npx",
            "--no-install",
            "cdk",
            "synth",
            "--no-notices",
            "--quiet",
            "-o",
            str(out),
            "-c",
            f"config={EXAMPLES / 'self-managed' / 'mm2.properties'}",
            "-c",
            f"settings={EXAMPLES / 'self-managed' / 'deploy.json'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((out / "smm-hybrid.template.json").read_text())
    assert sum(r["Type"] == "AWS::Lambda::Function" for r in template["Resources"].values()) == 5
    report = json.loads((out / "validation-report.json").read_text())
    assert report["pluginReports"] == []  # cdk-nag ran (the app adds it) and found nothing unacknowledged
    assets = [p for p in out.iterdir() if p.name.startswith("asset.")]
    assert len(assets) == 1 and (assets[0] / "functions" / "mirror" / "handler.py").exists()
    assert (assets[0] / "kafka").is_dir()


def test_the_app_refuses_to_run_without_a_configuration() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "infra.app"],
        cwd=ROOT,
        env={**os.environ, "CDK_CONTEXT_JSON": "{}", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 and "-c config=path/to/mm2.properties" in result.stderr
