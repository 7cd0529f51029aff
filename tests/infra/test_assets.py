"""The Lambda asset, built for real without Docker, imports every handler in a fresh interpreter, with its own
pinned AWS SDK ahead of the one the runtime brings."""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from infra import assets
from infra.settings import DeploySettings
from tests.infra.support import HANDLERS

# What the Lambda Python runtime brings besides the standard library (the asset ships its own, pinned).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six", "jmespath")

IMPORT_HANDLERS = """
import importlib, json, sys
sys.path[:0] = sys.argv[1:3]
found = {}
for handler in json.loads(sys.argv[3]):
    module, _, name = handler.rpartition(".")
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, name)), handler
    found[handler] = loaded.__file__
import kafka, aws_lambda_powertools, confluent_kafka, boto3, botocore
found["kafka"], found["aws_lambda_powertools"] = kafka.__file__, aws_lambda_powertools.__file__
found["confluent_kafka"] = confluent_kafka.__file__
found["boto3"], found["botocore"] = boto3.__file__, botocore.__file__
boto3.client("lambda", region_name="eu-west-1").meta.service_model.operation_model("CreateEventSourceMapping")
confluent_kafka.Producer({"bootstrap.servers": "localhost:9"}).flush(0)  # librdkafka loads and starts
print(json.dumps(found))
"""


def runtime_dir(tmp_path: Path) -> Path:
    """A stand-in for the runtime's own site-packages, after the asset on the path: boto3 and its dependencies,
    linked from this venv."""
    target = tmp_path / "runtime"
    target.mkdir()
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (target / source.name).symlink_to(source)
    return target


def interpreter() -> tuple[str, assets.AssetSpec]:
    """The Lambda runtime's Python if this machine has it, else this interpreter (the deps are pure Python)."""
    version = DeploySettings().runtime.removeprefix("python")
    found = shutil.which(f"python{version}")
    if found:
        machine = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
        return found, assets.AssetSpec.for_runtime(f"python{version}", machine)
    return sys.executable, assets.AssetSpec.for_this_interpreter()


def test_the_deployed_asset_has_the_code_the_dependencies_and_the_pinned_aws_sdk() -> None:
    spec = assets.AssetSpec.for_runtime(DeploySettings().runtime, DeploySettings().architecture)
    asset = assets.build(spec)
    assert spec.platforms == ("manylinux2014_aarch64", "manylinux_2_28_aarch64") and spec.python_version == "3.14"
    for path in (
        "functions/mirror/handler.py",
        "shared/aws/config_source.py",
        "shared/aws/secrets.py",
        "shared/kafka/clients.py",
        "shared/mm2/config.py",
        "kafka",
        "aws_lambda_powertools",
    ):
        assert (asset / path).exists(), path
    # the AWS SDK the tests and the botocore-model checks ran with, not the runtime's (older) bundled one
    for name in assets.AWS_SDK:
        (dist,) = asset.glob(f"{name.replace('-', '_')}-*.dist-info")
        assert dist.name == f"{name.replace('-', '_')}-{metadata.version(name)}.dist-info", dist.name
    assert not (asset / "shared" / "local").exists() and not (asset / "shared" / "cli").exists()  # not deployed
    assert not list(asset.rglob("__pycache__"))
    # the only native code: crc32c, confluent-kafka (librdkafka), cryptography (with cffi) and pycryptodomex
    # (JKS key stores), built for the Lambda architecture
    native = {p.relative_to(asset).parts[0] for p in asset.rglob("*.so*")}
    assert native == {
        "crc32c",
        "confluent_kafka",
        "confluent_kafka.libs",
        "cryptography",
        "_cffi_backend.cpython-314-aarch64-linux-gnu.so",
        "Cryptodome",
    }, native
    elf_aarch64 = 0xB7  # e_machine of the ELF header (abi3 libraries do not say the architecture in their names)
    assert all(int.from_bytes(p.read_bytes()[18:20], "little") == elf_aarch64 for p in asset.rglob("*.so*"))
    marker = json.loads((asset / ".smm-asset.json").read_text())
    assert marker["requirements"] == list(assets.pinned_requirements())
    assert assets.build(spec) == asset  # cached: same inputs, same directory


def test_every_handler_imports_from_the_asset_in_a_fresh_interpreter(tmp_path: Path) -> None:
    python, spec = interpreter()
    asset = assets.build(spec)
    missing = [h for h in HANDLERS if not (asset / (h.rpartition(".")[0].replace(".", "/") + ".py")).exists()]
    if missing:
        pytest.skip(f"handler modules not written yet: {missing}")
    result = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            IMPORT_HANDLERS,
            str(asset),
            str(runtime_dir(tmp_path)),
            json.dumps(sorted(HANDLERS)),
        ],
        capture_output=True,
        text=True,
        env={"AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_METRICS_NAMESPACE": "ServerlessMirrorMaker"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {*HANDLERS, "kafka", "aws_lambda_powertools", "confluent_kafka", "boto3", "botocore"}
    assert all(path.startswith(str(asset)) for path in found.values()), found  # nothing from this checkout or venv


def test_the_fingerprint_covers_the_sources(tmp_path: Path) -> None:
    for package in assets.PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    spec = assets.AssetSpec("3.14", ("manylinux2014_aarch64",), ("kafka-python==3.0.12",))
    before = assets.fingerprint(spec, tmp_path)
    (tmp_path / "shared" / "__pycache__").mkdir()
    (tmp_path / "shared" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert assets.fingerprint(spec, tmp_path) == before
    (tmp_path / "shared" / "__init__.py").write_text("changed = True\n")
    assert assets.fingerprint(spec, tmp_path) != before
    assert assets.fingerprint(assets.AssetSpec("3.13", spec.platforms, spec.requirements), tmp_path) != before
