"""Kafka's config providers: ``config.providers`` and ``${provider:[path:]key}`` references in any value.

MM2 resolves references with Kafka's ``ConfigTransformer`` before its clients see a value. The providers of Kafka
itself are here (``env``, ``file``, ``directory``: local reads only); ``shared.aws.providers`` adds AWS's MSK
config providers (Secrets Manager, SSM Parameter Store), which the caller passes in because they call AWS.

Where MM2 would quietly keep the reference text (an unset variable, a key missing from a file, a secret without
the key), the reference is an error naming it: a literal ``${env:PASSWORD}`` sent as a password helps nobody.
A reference to a provider the file does not declare stays as text, as in MM2, with a warning. Resolved values
are never put in a message: errors about a resolved value show the reference instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from shared.mm2 import properties
from shared.mm2.configdef import InvalidValue, parse_list, trim

PROVIDERS_KEY = "config.providers"
# ConfigTransformer.DEFAULT_PATTERN
REFERENCE = re.compile(r"\$\{([^}]*?):(([^}]*?):)?([^}]*?)\}")

ENV_PROVIDER = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
FILE_PROVIDER = "org.apache.kafka.common.config.provider.FileConfigProvider"
DIRECTORY_PROVIDER = "org.apache.kafka.common.config.provider.DirectoryConfigProvider"


class ProviderError(ValueError):
    """A reference that cannot be resolved; the message names the reference, never a value."""


class ConfigProvider(Protocol):
    """Kafka's ``ConfigProvider.get(path, keys)``: the values of ``keys`` under ``path`` that exist."""

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]: ...


ProviderFactory = Callable[[Mapping[str, str]], ConfigProvider]


class Deferred:
    """A provider whose values are only known where the configuration runs (an AWS secret at ``cdk synth``)."""

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        return {}


@dataclass
class EnvProvider:
    """``EnvVarConfigProvider``: ``${env:NAME}``; ``allowlist.pattern`` limits the variables it may read."""

    params: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        if path:
            raise ProviderError(f"path {path!r} is not supported by the env provider (write ${{env:NAME}})")
        allow = re.compile(self.params.get("allowlist.pattern", ".*"))
        return {k: self.environ[k] for k in keys if k in self.environ and allow.fullmatch(k)}


@dataclass
class FileProvider:
    """``FileConfigProvider``: ``${file:/path/to/file.properties:key}``, the file read as UTF-8 properties."""

    params: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        if not path:
            return {}
        file = _allowed(path, self.params)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProviderError(f"cannot read properties from file {path} ({_reason(exc)})") from None
        values = properties.load(text)
        return {k: values[k] for k in keys if k in values}


@dataclass
class DirectoryProvider:
    """``DirectoryConfigProvider``: ``${directory:/dir:file}``, the whole content of ``/dir/file``."""

    params: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str, keys: Collection[str]) -> Mapping[str, str]:
        if not path:
            return {}
        directory = _allowed(path, self.params)
        if not directory.is_dir():
            raise ProviderError(f"{path} is not a directory")
        found: dict[str, str] = {}
        for key in keys:
            file = directory / key
            if file.is_file() and file.parent == directory:
                try:
                    found[key] = file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ProviderError(f"cannot read file {file} ({_reason(exc)})") from None
        return found


def _allowed(path: str, params: Mapping[str, str]) -> Path:
    """``AllowedPaths``: with ``allowed.paths`` set, only paths below one of them."""
    candidate = Path(os.path.normpath(path))
    allowed = params.get("allowed.paths")
    if allowed and not any(candidate.is_relative_to(Path(os.path.normpath(a))) for a in allowed.split(",")):
        raise ProviderError(f"the path {path} is outside allowed.paths ({allowed})")
    return candidate


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


KAFKA_PROVIDERS: dict[str, ProviderFactory] = {
    ENV_PROVIDER: lambda params: EnvProvider(params),
    FILE_PROVIDER: lambda params: FileProvider(params),
    DIRECTORY_PROVIDER: lambda params: DirectoryProvider(params),
}


@dataclass(frozen=True)
class Reference:
    """One ``${provider:path:key}`` in a value."""

    text: str
    provider: str
    path: str
    key: str


def references(value: str) -> list[Reference]:
    return [Reference(m.group(0), m.group(1), m.group(3) or "", m.group(4)) for m in REFERENCE.finditer(value)]


@dataclass
class Resolution:
    """Values with their references replaced; which keys came from a provider, and which wait for run time."""

    values: dict[str, str]
    from_provider: dict[str, str] = field(default_factory=dict)  # key -> the reference text, for messages
    deferred: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (key, message)

    def shown(self, key: str, value: str) -> str:
        """How a value may appear in a message: the reference, never what it resolved to."""
        return self.from_provider.get(key, repr(value))


def resolve(raw: Mapping[str, str], factories: Mapping[str, ProviderFactory] = KAFKA_PROVIDERS) -> Resolution:
    """Every value of ``raw`` with the references of the declared providers replaced.

    ``config.providers`` lists names; ``config.providers.<name>.class`` says which provider each is, and
    ``config.providers.<name>.param.<p>`` configures it. A class not in ``factories`` is an error.
    """
    result = Resolution(dict(raw))
    providers: dict[str, ConfigProvider] = {}
    try:
        names = parse_list(raw.get(PROVIDERS_KEY, ""))
    except InvalidValue:
        names = []
    for name in dict.fromkeys(n for n in names if n):
        prefix = f"{PROVIDERS_KEY}.{name}."
        class_name = raw.get(f"{prefix}class")
        if class_name is None:
            result.problems.append(f"{PROVIDERS_KEY}: provider {name!r} has no {prefix}class")
            continue
        factory = factories.get(trim(class_name))
        if factory is None:
            allowed = ", ".join(sorted(factories))
            result.problems.append(f"{prefix}class = {class_name!r}: not a provider here; allowed: {allowed}")
            continue
        params = {k[len(prefix) + len("param.") :]: v for k, v in raw.items() if k.startswith(f"{prefix}param.")}
        providers[name] = factory(params)
    for key, value in raw.items():
        if "${" not in value or key.startswith(f"{PROVIDERS_KEY}."):
            continue
        found = references(value)
        if not found:
            continue
        lookups: dict[str, str] = {}
        for ref in found:
            looked_up = _look_up(key, ref, providers, result)
            if looked_up is not None:
                lookups[ref.text] = looked_up
        if lookups:
            result.values[key] = REFERENCE.sub(partial(_replacement, lookups), value)
            result.from_provider[key] = value
    return result


def _replacement(lookups: Mapping[str, str], match: re.Match[str]) -> str:
    return lookups.get(match.group(0), match.group(0))


def _look_up(key: str, ref: Reference, providers: Mapping[str, ConfigProvider], result: Resolution) -> str | None:
    provider = providers.get(ref.provider)
    if provider is None:
        result.warnings.append(
            (key, f"{ref.text}: {ref.provider!r} is not a declared config provider; the text is used as is")
        )
        return None
    if isinstance(provider, Deferred):
        result.deferred.add(key)
        return None
    try:
        looked_up = provider.get(ref.path, {ref.key})
    except ProviderError as exc:
        result.problems.append(f"{key}: {ref.text}: {exc}")
        return None
    if ref.key not in looked_up:
        where = f" in {ref.path}" if ref.path else ""
        result.problems.append(f"{key}: {ref.text}: no {ref.key!r}{where} for provider {ref.provider!r}")
        return None
    return looked_up[ref.key]
