"""Topic and group filters: MM2's ``DefaultTopicFilter`` / ``DefaultGroupFilter`` semantics.

Each pattern must match the whole name (Java's ``Matcher.matches``), a name is replicated when it matches an
include pattern and no exclude pattern.
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


@dataclass(frozen=True)
class NameFilter:
    """Include/exclude regex lists over topic or group names."""

    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, include: Iterable[str], exclude: Iterable[str]) -> NameFilter:
        return cls(tuple(re.compile(p) for p in include), tuple(re.compile(p) for p in exclude))

    def matches(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self.include) and not any(p.fullmatch(name) for p in self.exclude)


@dataclass(frozen=True)
class TopicSelector:
    """Which source topics a flow replicates: MM2's ``MirrorSourceConnector.shouldReplicateTopic``."""

    filter: NameFilter
    policy: ReplicationPolicy
    target_alias: str

    def should_replicate(self, topic: str) -> bool:
        return self.skip_reason(topic) is None

    def skip_reason(self, topic: str) -> str | None:
        """Why ``topic`` is not replicated (``internal``, ``filtered``, ``cycle``), or None."""
        if self.policy.is_internal_topic(topic):
            return "internal"
        if not (self.filter.matches(topic) or self.policy.is_heartbeats_topic(topic)):
            return "filtered"
        if self.policy.is_cycle(topic, self.target_alias):
            return "cycle"
        return None
