"""Reading ``mm2.properties`` for a command: every config provider, warnings on stderr."""

from __future__ import annotations

import sys

from shared.aws import providers
from shared.mm2 import config
from shared.mm2.config import MirrorConfig


def load(path: str) -> MirrorConfig:
    """The configuration at ``path``; AWS provider references are read with this machine's AWS credentials."""
    mirror_config = config.load(path, providers.factories())
    for warning in mirror_config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return mirror_config
