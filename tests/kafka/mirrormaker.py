"""Apache MirrorMaker 2 itself, in dedicated mode, on the test clusters: for the tests where it meets this product.

``mirrormaker(path)`` runs ``org.apache.kafka.connect.mirror.MirrorMaker <path>`` from the ``connect-mirror``
jars the benchmark fetches (``.kafka/bench-libs``) for the duration of a ``with`` block and stops it the way an
operator does (SIGTERM: Connect commits its source offsets on the way out). Its log is kept next to the file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_LIBS = ROOT / ".kafka" / "bench-libs"


def worker_settings(target: str) -> dict[str, str]:
    """What a dedicated MM2 on single-broker clusters needs for flows into ``target``: its Connect topics'
    replication factors, and source offsets committed every second rather than every minute."""
    return {
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "config.storage.replication.factor": "1",
        f"{target}.offset.flush.interval.ms": "1000",
    }


def write(path: Path, properties: dict[str, str]) -> Path:
    path.write_text("".join(f"{key} = {value}\n" for key, value in properties.items()), encoding="utf-8")
    return path


@contextmanager
def mirrormaker(config: Path, clusters: str) -> Iterator[subprocess.Popen[bytes]]:
    """MirrorMaker 2 running ``config`` for the target ``clusters`` (``--clusters``) until the block ends."""
    java = shutil.which("java")
    assert java and BENCH_LIBS.is_dir(), "MirrorMaker 2 needs java and .kafka/bench-libs (make setup fetches them)"
    log4j = config.with_suffix(".log4j2.properties")
    log = config.with_suffix(".log")
    log4j.write_text(
        "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = F\nappender.file.type = File\n"
        f"appender.file.name = F\nappender.file.fileName = {log}\n"
        "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = %d %p %m (%c)%n\n"
    )
    command = [
        java, "-Xmx512m", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={log4j}", "-cp", str(BENCH_LIBS / "*"),
        "org.apache.kafka.connect.mirror.MirrorMaker", str(config), "--clusters", clusters,
    ]  # fmt: skip
    out = config.with_suffix(".out").open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
        assert process.poll() is None, f"MirrorMaker 2 exited with {process.returncode}; see {log}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        out.close()
