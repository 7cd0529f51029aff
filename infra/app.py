"""The CDK app: ``cdk synth -c config=path/to/mm2.properties -c settings=path/to/deploy.json``.

``config`` is required; ``settings`` may be a JSON file or an object under ``settings`` in ``cdk.json``'s
context (no settings: defaults, fine for self-managed clusters without credentials). Synth makes no AWS calls
and needs no credentials. The Lambda asset is built here without Docker (``infra.assets``), and cdk-nag's
AwsSolutions checks run on every synth; a finding without a written justification fails it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra import assets, settings
from infra.settings import Deployment, SettingsError
from infra.stack import MirrorMakerStack
from shared.aws import providers
from shared.mm2 import config
from shared.mm2.config import ConfigError


def deployment_from(config_path: str | Path, settings_source: str | Path | Mapping[str, Any] | None) -> Deployment:
    """Read and cross-check ``mm2.properties`` and the deploy settings."""
    path = Path(config_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"config {path}: cannot read it ({exc.strerror})"]) from None
    # No reference is resolved at synth: secrets must not reach the template, and the functions read them later.
    mirror_config = config.parse_text(text, providers.deferred_factories())
    return Deployment.resolve(mirror_config, text, settings.load(settings_source))


def add_stack(app: cdk.App, deployment: Deployment, code: lambda_.Code | None = None) -> MirrorMakerStack:
    """The deployment's stack in ``app``; ``code`` defaults to the asset built for the configured runtime."""
    s = deployment.settings
    if code is None:
        spec = assets.AssetSpec.for_runtime(s.runtime, s.architecture)
        code = lambda_.Code.from_asset(str(assets.build(spec)))
    env = cdk.Environment(account=s.account, region=s.region) if s.account or s.region else None
    return MirrorMakerStack(
        app,
        s.name,
        deployment=deployment,
        code=code,
        env=env,
        description=f"Serverless MirrorMaker {s.name}: Kafka MirrorMaker 2 on AWS Lambda",
    )


def check(app: cdk.App) -> None:
    """Run cdk-nag's AwsSolutions rules when the app synthesizes; acknowledgments go into resource metadata."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def main() -> None:
    app = cdk.App()
    config_path = app.node.try_get_context("config")
    if not config_path:
        sys.exit(
            "infra.app: pass the configuration: cdk synth -c config=path/to/mm2.properties [-c settings=deploy.json]"
        )
    try:
        deployment = deployment_from(config_path, app.node.try_get_context("settings"))
    except (ConfigError, SettingsError) as exc:
        sys.exit(f"infra.app: {exc}")
    for warning in (*deployment.config.warnings, *deployment.warnings):
        print(f"infra.app: warning: {warning}", file=sys.stderr)
    add_stack(app, deployment)
    check(app)
    app.synth()


if __name__ == "__main__":
    main()
