"""Apache MirrorMaker 2's own reading of mm2.properties files, for differential tests.

``properties()`` gives the map ``java.util.Properties`` (through Kafka's ``Utils.loadProps``, as MirrorMaker's
``main`` does) makes of each file. ``dump()`` compiles ``tests/mm2/harness/*.java`` against the MM2 4.3.1 jars
in ``.kafka/bench-libs`` and runs ``SmmConfigDump`` once, in a single JVM, over every given file. The Java side
only wires MM2's and Kafka Connect's own classes together (MirrorMakerConfig, MirrorSourceConfig,
MirrorCheckpointConfig, MirrorHeartbeatConfig, MirrorSourceConnector, the filters, the replication policy, the
worker's config transformer and the herder's connector validation); it never contacts a Kafka cluster. The JSON
it prints is described field by field in ``docs/mm2-config.md`` (section "The differential harness").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_LIBS = ROOT / ".kafka" / "bench-libs"
JAVA_SOURCES = tuple(sorted((Path(__file__).resolve().parent / "harness").glob("*.java")))
BUILD_ROOT = ROOT / "build" / "mm2-harness"
MAIN_CLASS = "org.apache.kafka.connect.mirror.SmmConfigDump"
PROPERTIES_CLASS = "PropertiesDump"
CLASS_FILE = Path("org", "apache", "kafka", "connect", "mirror", "SmmConfigDump.class")

TIMEOUT_SECONDS = 180.0
COMPILE_TIMEOUT_SECONDS = 180.0
STDERR_TAIL_CHARS = 4000

# Quick JVM start-up; log4j's default configuration at WARN (the Java side moves System.out to stderr before any
# logger exists, so log lines can never reach the JSON on stdout).
JVM_OPTIONS = (
    "-Dlog4j2.level=WARN",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
)


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-STDERR_TAIL_CHARS:]


def _require_bench_libs() -> None:
    if not BENCH_LIBS.is_dir() or not any(BENCH_LIBS.glob("connect-mirror-*.jar")):
        raise RuntimeError(
            f"MirrorMaker 2 jars not found in {BENCH_LIBS}: run `make setup`, then fetch the MM2 reference jars "
            "with `make .kafka/bench-libs/.fetched` (the Makefile's bench-libs target, also run by `make bench`)"
        )


def _tool(name: str) -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home, "bin", name)
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` not found: the MM2 differential harness needs a JDK (17+) on PATH")
    return found


def _classpath(classes: Path) -> str:
    return f"{classes}{os.pathsep}{BENCH_LIBS / '*'}"


def compiled_classes() -> Path:
    """The harness's class directory, compiled on first use; keyed by the Java source's SHA-256 (16 hex digits).

    Compilation goes to a private temporary directory that is then renamed into place, so concurrent test
    processes never see a half-written directory; the loser of a race discards its own copy.
    """
    _require_bench_libs()
    digest = hashlib.sha256()
    for java in JAVA_SOURCES:
        digest.update(java.name.encode() + b"\0" + java.read_bytes() + b"\0")
    target = BUILD_ROOT / digest.hexdigest()[:16]
    if (target / CLASS_FILE).is_file():
        return target
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".compiling-", dir=BUILD_ROOT))
    try:
        cmd = [
            _tool("javac"),
            "-encoding",
            "UTF-8",
            "-nowarn",
            "-d",
            str(staging),
            "-cp",
            _classpath(staging),
            *(str(java) for java in JAVA_SOURCES),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"javac timed out after {e.timeout:.0f} s:\n{_tail(e.stderr)}") from e
        if proc.returncode != 0:
            raise RuntimeError(f"javac failed (exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}")
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise stick to the shared cache directory
        try:
            staging.rename(target)
        except OSError:
            if not (target / CLASS_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_names(path: Path, names: Sequence[str], what: str) -> None:
    for name in names:
        if not name or "\n" in name or "\r" in name:
            raise ValueError(f"{what} name {name!r} cannot be passed to the harness (empty or contains a line break)")
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


def dump(
    files: Sequence[Path],
    topics: Sequence[str],
    groups: Sequence[str],
    config_properties: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """MM2's reading of each file, keyed by ``str(path)`` exactly as given.

    Each value is ``{"error": "<ExceptionClass>: <message>"}`` when MirrorMakerConfig refuses the file, otherwise
    the per-file result (clusters, pairs, flows, worker) documented in the semantics memo. ``topics``, ``groups``
    and ``config_properties`` are the candidate names every flow's filters are asked about. ``env`` replaces the
    JVM's environment (``${env:VAR}`` config providers read it); by default the caller's environment is inherited.
    """
    classes = compiled_classes()
    with tempfile.TemporaryDirectory(prefix="smm-mm2-harness-") as tmp:
        tmpdir = Path(tmp)
        lists = {"topics": topics, "groups": groups, "config-properties": config_properties}
        cmd = [_tool("java"), *JVM_OPTIONS, "-cp", _classpath(classes), MAIN_CLASS]
        for option, names in lists.items():
            list_file = tmpdir / f"{option}.txt"
            _write_names(list_file, names, option)
            cmd += [f"--{option}", str(list_file)]
        cmd += [str(f) for f in files]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=dict(os.environ if env is None else env),
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(
                f"MM2 harness JVM timed out after {e.timeout:.0f} s; stderr tail:\n{_tail(e.stderr)}"
            ) from e
    if proc.returncode != 0:
        # The JVM itself reports start-up failures (bad options, no memory) on stdout.
        raise RuntimeError(
            f"MM2 harness JVM failed (exit {proc.returncode}); stderr tail:\n{_tail(proc.stderr)}\n"
            f"stdout tail:\n{_tail(proc.stdout)[-1000:]}"
        )
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(
            f"MM2 harness printed invalid JSON ({e}); stdout head:\n{proc.stdout[:500]}\n"
            f"stderr tail:\n{_tail(proc.stderr)}"
        ) from e
    results = document.get("files") if isinstance(document, dict) else None
    if not isinstance(results, dict):
        raise RuntimeError(f"MM2 harness output has no 'files' map; stderr tail:\n{_tail(proc.stderr)}")
    return results


def properties(files: Sequence[Path], timeout: float = TIMEOUT_SECONDS) -> dict[str, dict[str, str]]:
    """What ``Utils.loadProps`` + ``Utils.propsToStringMap`` make of each file: its map, or ``{"error": ...}``."""
    classes = compiled_classes()
    cmd = [_tool("java"), *JVM_OPTIONS, "-cp", _classpath(classes), PROPERTIES_CLASS, *(str(f) for f in files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"PropertiesDump failed (exit {proc.returncode}); stderr tail:\n{_tail(proc.stderr)}")
    result: dict[str, dict[str, str]] = json.loads(proc.stdout)
    return result


def translate_offsets(bootstrap: str, remote_alias: str, group: str, timeout: float = 120.0) -> dict[str, list[Any]]:
    """MM2's ``RemoteClusterUtils.translateOffsets`` on the target at ``bootstrap``: "topic-partition" ->
    [offset, metadata], read from ``<remote_alias>.checkpoints.internal`` by MM2's own client code."""
    classes = compiled_classes()
    cmd = [_tool("java"), *JVM_OPTIONS, "-cp", _classpath(classes), "TranslateOffsets", bootstrap, remote_alias, group]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"TranslateOffsets failed (exit {proc.returncode}); stderr tail:\n{_tail(proc.stderr)}")
    result: dict[str, list[Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
