"""Where a function finds its configuration: a file (local runtime, on-prem) or an SSM parameter (AWS).

In AWS the ``mm2.properties`` text lives in an SSM parameter that can be edited in the console; it is read
through Powertools Parameters with a short cache, so an edit takes effect without a redeploy.
"""

from __future__ import annotations

import os

from shared import config
from shared.config import ConfigError, FlowConfig, MirrorConfig

CONFIG_FILE_ENV = "SMM_CONFIG_FILE"
CONFIG_PARAMETER_ENV = "SMM_CONFIG_PARAMETER"
CONFIG_MAX_AGE_ENV = "SMM_CONFIG_MAX_AGE_SECONDS"
FLOW_ENV = "SMM_FLOW"


def config_text() -> str:
    """The current ``mm2.properties`` text, from the file or the (cached) SSM parameter."""
    path = os.environ.get(CONFIG_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise ConfigError([f"{CONFIG_FILE_ENV}={path}: cannot read it: {exc.strerror}"]) from None
    name = os.environ.get(CONFIG_PARAMETER_ENV)
    if name:
        from aws_lambda_powertools.utilities import parameters

        max_age = int(os.environ.get(CONFIG_MAX_AGE_ENV, "60"))
        value = parameters.get_parameter(name, max_age=max_age)
        return str(value)
    raise ConfigError([f"set {CONFIG_FILE_ENV} (a path) or {CONFIG_PARAMETER_ENV} (an SSM parameter name)"])


def parse_text(text: str) -> MirrorConfig:
    return config.parse(config.parse_properties(text))


def flow_from_environment(mirror_config: MirrorConfig) -> FlowConfig:
    """The flow this deployed function serves, named ``SOURCE->TARGET`` in ``SMM_FLOW``."""
    name = os.environ.get(FLOW_ENV, "")
    source, arrow, target = name.partition(config.FLOW_ARROW)
    if not arrow:
        raise ConfigError([f"{FLOW_ENV}={name!r}: allowed: SOURCE->TARGET, e.g. onprem->cloud"])
    return mirror_config.flow(source.strip(), target.strip())
