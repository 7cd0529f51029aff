"""The fault-injection suite's results file, and the README table made from it (``make fault-table``).

``tests/kafka/test_faults.py`` writes :data:`RESULTS` (``build/reports/faults.json``) as its tests finish
(``FaultReport`` in ``tests/kafka/faults.py``). ``make fault-table`` runs this module: it checks that the file
comes from a finished run with every row present and passed, copies it to :data:`COPY` (``docs/faults.json``,
committed, so the README's figures can be traced to a file) and writes README.md's table between
:data:`START` and :data:`END` from it, with a sentence naming the command that produced the rows.

The file is JSON, format ``smm-fault-results/1``; its keys:

- ``format``: ``"smm-fault-results/1"``;
- ``about``: one sentence on what the file is;
- ``command``: the pytest command line of the run that wrote it (``.venv/bin/pytest -q tests/kafka/test_faults.py``);
- ``commit``: ``git rev-parse HEAD`` when the run started (null without git) and ``dirty``: whether tracked files
  had uncommitted changes then;
- ``started``, ``finished``: UTC, ISO 8601 to the second; ``finished`` is null until the module ends, so a run
  that died part-way shows it;
- ``expected``: how many rows a full run writes (each scenario in each delivery mode it runs in: the rows under
  the shipped examples' mapping settings run in the examples' mode only); ``missing``: the ``"scenario / mode"``
  of those this run did not write (not selected, or the test failed before its tally);
- ``complete``: finished, nothing missing, and every row passed;
- ``columns``: each row key -> the table column it is shown in;
- ``rows``: one object per scenario and delivery mode that ran, in the suite's fixed order (scenario, then
  mode), so two runs differ only in figures: ``scenario``, ``mode``, ``source_records`` (produced to the
  source), ``target_records`` (copies on the target, read with ``read_committed``), ``lost``, ``duplicates``,
  ``notes`` (what the fault did, measured by the test) and ``passed`` (false while, or if, a check of the test
  that follows its tally fails). A row holds only what that run measured: rows are never carried over from
  an earlier run.

Run alone: ``python -m tests.kafka.fault_table [--results FILE] [--readme FILE] [--copy FILE] [--allow-partial]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "reports" / "faults.json"
COPY = ROOT / "docs" / "faults.json"
README = ROOT / "README.md"
FORMAT = "smm-fault-results/1"
START = "<!-- fault-table:start -->"
END = "<!-- fault-table:end -->"

# Row key -> table column, in table order; the numeric ones are right-aligned.
COLUMNS: dict[str, str] = {
    "scenario": "scenario",
    "mode": "mode",
    "source_records": "source records",
    "target_records": "target records",
    "lost": "lost",
    "duplicates": "duplicates",
    "notes": "notes",
}
NUMERIC = frozenset({"source_records", "target_records", "lost", "duplicates"})


def cells(row: Mapping[str, Any]) -> list[str]:
    """A row's table cells, in :data:`COLUMNS` order; ``|`` escaped so a note cannot split a Markdown row."""
    return [str(row[key]).replace("|", "\\|") for key in COLUMNS]


def markdown_table(rows: Sequence[Mapping[str, Any]], padded: bool = False) -> str:
    """The rows as a Markdown table; ``padded`` aligns the columns for a terminal."""
    table = [list(COLUMNS.values()), *(cells(r) for r in rows)]
    numeric = [key in NUMERIC for key in COLUMNS]
    if not padded:
        rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
        return "\n".join(["| " + " | ".join(table[0]) + " |", rule, *("| " + " | ".join(r) + " |" for r in table[1:])])
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]

    def line(row: Sequence[str]) -> str:
        out = (c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if n else "-" * (w + 2) for w, n in zip(widths, numeric, strict=True))
    return "\n".join([line(table[0]), rule + "|", *(line(r) for r in table[1:])])


def problems(results: Mapping[str, Any]) -> list[str]:
    """Why ``results`` cannot stand for the suite: unknown format, unfinished run, missing or failed rows."""
    found = []
    if results.get("format") != FORMAT:
        return [f"format {results.get('format')!r}, not {FORMAT!r}"]
    if not results.get("finished"):
        found.append("the run did not finish (no 'finished' time): it died or is still going")
    if results.get("missing"):
        found.append(f"rows missing: {', '.join(results['missing'])}")
    failed = [f"{r['scenario']} / {r['mode']}" for r in results["rows"] if not r.get("passed")]
    if failed:
        found.append(f"rows whose test failed: {', '.join(failed)}")
    return found


def provenance(results: Mapping[str, Any], copy: str) -> str:
    """The sentence above the README's table: which command wrote it, from which file and run."""
    commit = results.get("commit")
    at = f"at commit `{commit[:7]}`" if commit else "outside a git checkout"
    if commit and results.get("dirty"):
        at += " with uncommitted changes"
    day = str(results.get("started", ""))[:10]
    sentence = (
        f"`make fault-table` wrote this table from [{copy}]({copy}), the rows `{results['command']}` "
        f"produced on {day} {at}:"
    )
    return textwrap.fill(sentence, width=114, break_long_words=False, break_on_hyphens=False)


def block(results: Mapping[str, Any], copy: str) -> str:
    """What goes between the README's markers."""
    return f"{START}\n{provenance(results, copy)}\n\n{markdown_table(results['rows'])}\n{END}"


def replace_block(text: str, new_block: str) -> str:
    """``text`` with the part from :data:`START` to :data:`END` (markers included) replaced by ``new_block``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start or text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"expected one {START} followed by one {END}")
    return text[:start] + new_block + text[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make fault-table", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the fault suite's results file")
    parser.add_argument("--readme", type=Path, default=README, help="the file whose table is replaced")
    parser.add_argument("--copy", type=Path, default=COPY, help="where the results file is copied (committed)")
    parser.add_argument("--allow-partial", action="store_true", help="render an unfinished or failed run too")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"{args.results} not found: run `.venv/bin/pytest -q tests/kafka/test_faults.py` first", file=sys.stderr)
        return 1
    wrong = problems(results)
    if wrong and (not args.allow_partial or results.get("format") != FORMAT):
        print(f"{args.results} is not a complete, passing run of the fault suite:", file=sys.stderr)
        print("\n".join(f"- {p}" for p in wrong), file=sys.stderr)
        return 1
    copy = args.copy.resolve()
    readme = args.readme.resolve()
    link = copy.relative_to(readme.parent).as_posix() if copy.is_relative_to(readme.parent) else str(copy)
    text = readme.read_text(encoding="utf-8")
    updated = replace_block(text, block(results, link))
    if copy != args.results.resolve():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.results, copy)
    readme.write_text(updated, encoding="utf-8")
    print(f"{readme.name}: {len(results['rows'])} rows from {args.results} (copied to {link})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
