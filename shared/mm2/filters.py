"""Topic and group filters: MM2's ``DefaultTopicFilter`` / ``DefaultGroupFilter`` semantics.

Each pattern must match the whole name (Java's ``Matcher.matches``), a name is replicated when it matches an
include pattern and no exclude pattern. The patterns are Java regular expressions; ``java_regex`` gives the
Python equivalent, or says which Java construct has none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.mm2.policy import ReplicationPolicy

DEFAULT_TOPICS = (".*",)
DEFAULT_TOPICS_EXCLUDE = (r"mm2.*\.internal", r".*\.replica", r"__.*")
DEFAULT_GROUPS = (".*",)
DEFAULT_GROUPS_EXCLUDE = (r"console-consumer-.*", r"connect-.*", r"__.*")


class JavaRegexError(ValueError):
    """A Java regular expression that does not compile, or uses a construct Python's ``re`` does not have."""


_UNSUPPORTED = {
    "p": "\\p{...} character classes",
    "P": "\\P{...} character classes",
    "h": "\\h (horizontal whitespace)",
    "H": "\\H",
    "R": "\\R (line breaks)",
    "X": "\\X (grapheme clusters)",
    "G": "\\G",
    "Z": "\\Z (Java's end before a final line break)",
}


_QUANTIFIER = re.compile(r"\{\d+(,\d*)?\}")


def java_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Java ``Pattern`` the way ``Pattern.compile`` reads it, as a Python pattern."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = 0
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":  # \Q...\E quotes everything in between
                end = pattern.find("\\E", i + 2)
                quoted = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(quoted))
                i = n if end < 0 else end + 2
                continue
            if nxt in _UNSUPPORTED:
                raise JavaRegexError(f"{_UNSUPPORTED[nxt]} cannot be used here")
            if nxt == "z":
                out.append("\\Z")
            elif nxt == "k" and pattern[i + 2 : i + 3] == "<":
                close = pattern.find(">", i + 3)
                if close < 0:
                    raise JavaRegexError("unterminated \\k<name>")
                out.append(f"(?P={pattern[i + 3 : close]})")
                i = close + 1
                continue
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if not in_class and c == "{" and not _QUANTIFIER.match(pattern, i):
            raise JavaRegexError(f"illegal repetition at {pattern[i:]!r} (Java needs {{n}}, {{n,}} or {{n,m}})")
        if in_class and c == "&" and pattern[i + 1 : i + 2] == "&":
            raise JavaRegexError("character class intersection (&&) cannot be used here")
        if c == "[" and (i == 0 or pattern[i - 1] != "\\"):
            in_class += 1
        elif c == "]" and in_class:
            in_class -= 1
        elif not in_class and pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise JavaRegexError(str(exc)) from None


@dataclass(frozen=True)
class NameFilter:
    """Include/exclude regex lists over topic or group names."""

    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, include: Iterable[str], exclude: Iterable[str]) -> NameFilter:
        return cls(tuple(java_regex(p) for p in include), tuple(java_regex(p) for p in exclude))

    def matches(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self.include) and not any(p.fullmatch(name) for p in self.exclude)


@dataclass(frozen=True)
class TopicSelector:
    """Which source topics a flow replicates: MM2's ``MirrorSourceConnector.shouldReplicateTopic``."""

    filter: NameFilter
    policy: ReplicationPolicy
    target_alias: str
    heartbeats_replication: bool = True  # heartbeats.replication.enabled

    def should_replicate(self, topic: str) -> bool:
        return self.skip_reason(topic) is None

    def skip_reason(self, topic: str) -> str | None:
        """Why ``topic`` is not replicated (``internal``, ``filtered``, ``cycle``), or None."""
        if self.policy.is_internal_topic(topic):
            return "internal"
        heartbeats = self.heartbeats_replication and self.policy.is_heartbeats_topic(topic)
        if not (self.filter.matches(topic) or heartbeats):
            return "filtered"
        if self.policy.is_cycle(topic, self.target_alias):
            return "cycle"
        return None
