"""Every corpus file read by Apache MirrorMaker 2's own classes and by ``shared.mm2.config``, compared.

MM2's side comes from ``tests/mm2/harness/SmmConfigDump.java`` (``MirrorMakerConfig``, the connector configs and
their validation, the filters and the policy, the clients' maps), run once over the whole corpus. For each file
(``tests/mm2/compare.py`` has the rules):

- a file MM2 refuses, this product refuses;
- a file this product refuses is one MM2 would not run either (it stops, or drops the refused flow's
  connectors), or one listed in ``compare.DELIBERATE`` with the reason this product is stricter;
- otherwise: the same clusters and cluster pairs, the same flows enabled, and for each enabled flow the same
  policy, separator and internal topic names, the same decisions on a set of topic, group and topic-config
  names, the same settings and intervals, and the same client settings per cluster and role (MM2's own
  defaults aside, and per-flow client keys, which this product reports instead of applying).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mm2.compare import CORPUS, ENV, ROOT, corpus, mm2_reading, outcome


@pytest.fixture(scope="module")
def mm2() -> dict[str, Any]:
    return mm2_reading(corpus())


@pytest.fixture(autouse=True)
def corpus_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(ROOT)  # the provider files name paths relative to the repository root
    for key in [k for k in os.environ if k.startswith("SMM_CORPUS_")]:
        monkeypatch.delenv(key)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    yield


def test_corpus_is_big_enough() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    files = corpus()
    assert len(files) >= 40
    for path in files:
        first = path.read_bytes().split(b"\n", 1)[0]
        assert first.startswith(b"# origin: "), f"{path.name} does not name its origin"
        assert f"`{path.name}`" in readme, f"{path.name} is not described in tests/mm2/corpus/README.md"


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_same_effective_configuration_as_mirrormaker_2(path: Path, mm2: dict[str, Any]) -> None:
    result = outcome(path, mm2["files"][str(path.relative_to(ROOT))], mm2["topics"])
    print(f"{path.name}: {result.status}: {result.detail[:200]}")
    assert result.status != "different", f"{path.name}:\n  {result.detail}"
