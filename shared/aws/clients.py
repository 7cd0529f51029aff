"""boto3 clients, created once per Lambda container (client creation costs tens of milliseconds) and reused.

Only the functions that call AWS APIs import this module, so the local runtime never needs AWS credentials.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# Standard retry mode backs off on throttling (ESM APIs have low per-account rate limits).
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@functools.cache
def lambda_client() -> LambdaClient:
    """The Lambda API client of this container (region and credentials from the function's environment)."""
    return boto3.client("lambda", config=_CONFIG)
