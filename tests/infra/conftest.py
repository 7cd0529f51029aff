"""The two example deployments, synthesized once per test session (a synth takes seconds)."""

from __future__ import annotations

import pytest

from tests.infra.support import Synthesized, synthesize


@pytest.fixture(scope="session")
def msk(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize("msk", tmp_path_factory.mktemp("msk"))


@pytest.fixture(scope="session")
def self_managed(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize("self-managed", tmp_path_factory.mktemp("self-managed"))


@pytest.fixture(params=["msk", "self_managed"])
def example(request: pytest.FixtureRequest) -> Synthesized:
    """Each example in turn, for what must hold in every deployment."""
    synthesized: Synthesized = request.getfixturevalue(request.param)
    return synthesized
