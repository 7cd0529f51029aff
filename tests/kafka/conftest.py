"""Real local Kafka clusters for integration tests, started once per test session.

Three single-broker KRaft clusters (A, B, C) on free loopback ports. Tests share them, so every test names its
own topics (``unique_prefix``) and restricts its flows to them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.local.broker import LocalBroker, free_port

ALIASES = ("A", "B", "C")


@pytest.fixture(scope="session")
def kafka_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """alias -> bootstrap servers of three running local clusters."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    state_dir = Path(tmp_path_factory.mktemp("kafka"))
    brokers = [LocalBroker(alias, free_port(), state_dir) for alias in ALIASES]
    try:
        with ThreadPoolExecutor(len(brokers)) as pool:
            list(pool.map(lambda b: b.start(timeout=120), brokers))
        yield {b.alias: b.bootstrap for b in brokers}
    finally:
        for b in brokers:
            b.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A topic/group name prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:8]}"
