"""``shared.mm2.properties`` against ``java.util.Properties`` itself, as MirrorMaker's ``main`` loads a file.

Every corpus file, plus a few thousand generated texts built from the characters the format gives meaning to
(separators, escapes, line breaks of three kinds, comment marks, non-ASCII bytes), go through Kafka's
``Utils.loadProps`` in one JVM and through the Python port; the maps must be equal, and a text one side refuses
(a malformed ``\\uXXXX``) must be refused by the other.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shared.mm2 import properties
from tests.mm2 import harness

CORPUS = Path(__file__).resolve().parent / "corpus"
ALPHABET = ["a", "b", "k", "=", ":", " ", "\t", "\f", "\\", "\n", "\r", "\r\n", "#", "!", "u", "0", "0", "4", "1", "é"]
GENERATED = 3000


def _generated(count: int, seed: int = 20261130) -> list[bytes]:
    rng = random.Random(seed)
    texts: list[bytes] = []
    for _ in range(count):
        pieces = [rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))]
        if rng.random() < 0.3:  # well-formed escapes too, not only broken ones
            pieces.insert(rng.randint(0, len(pieces)), rf"\u{rng.randint(0, 0xFFFF):04x}")
        texts.append("".join(pieces).encode("utf-8"))
    return texts


def _python(data: bytes) -> dict[str, str] | None:
    try:
        return properties.load(properties.decode(data))
    except properties.PropertiesError:
        return None


def test_the_parser_reads_every_text_as_java_util_properties_does(tmp_path: Path) -> None:
    files = sorted(CORPUS.glob("*.properties"))
    for i, data in enumerate(_generated(GENERATED)):
        generated = tmp_path / f"generated-{i:05d}.properties"
        generated.write_bytes(data)
        files.append(generated)
    java = harness.properties(files)
    mismatches = []
    refused = 0
    for path in files:
        theirs = java[str(path)]
        ours = _python(path.read_bytes())
        if "error" in theirs and len(theirs) == 1 and not any(k == "error" for k in (ours or {})):
            refused += 1
            if ours is not None:
                mismatches.append(f"{path.name}: Java refuses it ({theirs['error']}), Python reads {ours!r}")
        elif ours != theirs:
            mismatches.append(f"{path.name}: {path.read_bytes()!r}\n  Java:   {theirs!r}\n  Python: {ours!r}")
    print(f"compared {len(files)} texts with java.util.Properties ({refused} refused by both)")
    assert not mismatches, "\n".join(mismatches[:10])
    assert refused > 0  # the generator does reach malformed escapes


@pytest.mark.parametrize(
    ("text", "surprise"),
    [
        ("topics = orders\\..*\n", "drops the backslash in \\."),
        ("A->B.enabled = true \n", "trailing whitespace"),
        ("a = 1\na = 2\n", "the last value wins"),
        ("k = caf\u00c3\u00a9\n", "ISO-8859-1"),
    ],
)
def test_surprising_lines_are_explained(text: str, surprise: str) -> None:
    notes = properties.surprises(text)
    assert any(surprise in note.message for note in notes), notes
