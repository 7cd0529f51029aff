"""The Lambda code asset, built without Docker: ``pip install --target`` for the Lambda platform plus our packages.

``aws_lambda_python_alpha.PythonFunction`` always bundles in a container, and neither this machine nor most CI
runners have Docker. The runtime dependencies are pure Python (kafka-python, Powertools, pyjks, the MSK IAM
signer and theirs) or manylinux wheels for both Lambda architectures (crc32c, cryptography, pycryptodomex;
confluent-kafka, whose wheels are manylinux_2_28, which the Amazon Linux 2023 runtimes this project deploys
satisfy), so pip can fetch them for the Lambda platform and Python version from any host. boto3 and botocore are
shipped too, at the versions installed here: the runtime's bundled SDK lags behind and may not know the Lambda
API parameters config sync sends (event-source mapping tags, provisioned pollers, metrics), and the tests and the
botocore-model checks ran with these. The asset comes first on the function's path, so its copies win.

Each build is cached under ``build/lambda/<digest>`` where the digest covers the pinned requirements, the target
platform and every source file, so an unchanged tree is never rebuilt and a changed one always is.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / "build" / "lambda"
# What the functions import besides the standard library, and the AWS SDK with its dependencies; versions pinned
# to the dev environment's so the code that passed the tests is the code that is deployed.
AWS_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
DISTRIBUTIONS = (
    *AWS_SDK,
    "kafka-python",
    "aws-lambda-powertools",
    "crc32c",
    "confluent-kafka",
    "cryptography",
    "pycryptodomex",
    "javaobj-py3",
    "pyasn1",
    "pyasn1-modules",
)
# Installed without their dependencies: pyjks's twofish (BKS stores only) has no wheels, and of the signer's,
# boto3 and botocore come pinned in ``AWS_SDK`` and click is unused.
WITHOUT_DEPENDENCIES = ("pyjks", "aws-msk-iam-sasl-signer-python")
PACKAGES = ("shared", "functions")
# The layers above the functions (pyproject.toml's import contract): the local runtime and the command line.
NOT_DEPLOYED = ("shared/local", "shared/cli")
_PLATFORMS = {
    arch: (f"manylinux2014_{machine}", f"manylinux_2_28_{machine}")
    for arch, machine in (("arm64", "aarch64"), ("x86_64", "x86_64"))
}
_MARKER = ".smm-asset.json"


class AssetBuildError(RuntimeError):
    """pip could not produce the asset; the message carries pip's own explanation."""


@dataclass(frozen=True)
class AssetSpec:
    """What an asset is built for: Python version and platform of the runtime, and the pinned requirements."""

    python_version: str
    platforms: tuple[str, ...]
    requirements: tuple[str, ...]

    @classmethod
    def for_runtime(cls, runtime: str, architecture: str) -> AssetSpec:
        """The spec for a Lambda runtime name (``python3.14``) and architecture (``arm64``/``x86_64``)."""
        return cls(runtime.removeprefix("python"), _PLATFORMS[architecture], pinned_requirements())

    @classmethod
    def for_this_interpreter(cls) -> AssetSpec:
        """A spec the running interpreter can import: used to test an asset on a machine that is not Lambda."""
        machine = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
        return cls(f"{sys.version_info.major}.{sys.version_info.minor}", _PLATFORMS[machine], pinned_requirements())


def pinned_requirements() -> tuple[str, ...]:
    """``name==version`` of each runtime distribution, as installed in this environment."""
    pins = []
    for name in (*DISTRIBUTIONS, *WITHOUT_DEPENDENCIES):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise AssetBuildError(f"{name} is not installed here; run `make setup` first") from None
    return tuple(pins)


def build(spec: AssetSpec, root: Path = PROJECT_ROOT, cache_dir: Path = CACHE_DIR) -> Path:
    """The asset directory for ``spec`` (built now unless a build of the same inputs is cached)."""
    digest = fingerprint(spec, root)
    target = cache_dir / digest[:20]
    if (target / _MARKER).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        with_deps = tuple(r for r in spec.requirements if r.split("==")[0] not in WITHOUT_DEPENDENCIES)
        _pip_install(spec, staging, with_deps)
        _pip_install(spec, staging, tuple(r for r in spec.requirements if r not in with_deps), "--no-deps")
        for package in PACKAGES:
            shutil.copytree(root / package, staging / package, ignore=_not_deployed(root))
        (staging / _MARKER).write_text(json.dumps({"digest": digest, **asdict(spec)}, indent=2) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _MARKER).exists():  # not a concurrent build of the same inputs: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fingerprint(spec: AssetSpec, root: Path = PROJECT_ROOT) -> str:
    """Digest of everything that ends up in the asset."""
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and _deployed(path.relative_to(root)):
                h.update(path.relative_to(root).as_posix().encode() + b"\0")
                h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _deployed(relative: Path) -> bool:
    skipped = "__pycache__" in relative.parts or relative.suffix == ".pyc"
    return not skipped and not any(relative.is_relative_to(layer) for layer in NOT_DEPLOYED)


def _not_deployed(root: Path) -> Callable[[str, list[str]], set[str]]:
    """``copytree``'s ``ignore``: the names in a directory that the asset leaves out."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        base = Path(directory).relative_to(root)
        return {name for name in names if not _deployed(base / name)}

    return ignore


def _pip_install(spec: AssetSpec, target: Path, requirements: tuple[str, ...], *options: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # the runtime compiles for its own Python version
        "--target",
        str(target),
        *(arg for platform_tag in spec.platforms for arg in ("--platform", platform_tag)),
        "--implementation",
        "cp",
        "--python-version",
        spec.python_version,
        "--only-binary=:all:",
        *options,
        *requirements,
    ]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise AssetBuildError(
            f"pip could not install {', '.join(requirements)} for Python {spec.python_version} on "
            f"{'/'.join(spec.platforms)} (needs the package index or a pip cache):\n{result.stderr.strip()[-2000:]}"
        )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: no use in Lambda
