"""Replication policies: how remote topics are named, and how a name tells where a topic came from.

Mirrors MM2's ``ReplicationPolicy`` interface (``connect/mirror-client``) so that topic names, internal topic
names and the cycle rule match what MM2 and its tooling expect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

HEARTBEATS_TOPIC = "heartbeats"


class ReplicationPolicy(ABC):
    """Names remote topics and recovers their source; MM2's ``ReplicationPolicy``."""

    def __init__(self, separator: str = ".", internal_topic_separator_enabled: bool = True) -> None:
        if not separator:
            raise ValueError("replication.policy.separator must not be empty")
        self.separator = separator
        # KIP-690: internal topic names follow the separator unless switched off.
        self._internal_separator = separator if internal_topic_separator_enabled else "."

    @abstractmethod
    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        """Name of ``topic`` from cluster ``source_alias`` once it lives on the target."""

    @abstractmethod
    def topic_source(self, topic: str) -> str | None:
        """Alias of the cluster ``topic`` was replicated from, or None for a local topic."""

    @abstractmethod
    def upstream_topic(self, topic: str) -> str | None:
        """Name of ``topic`` one hop upstream, or None for a local topic."""

    def original_topic(self, topic: str) -> str:
        """Name of ``topic`` on the cluster it was first produced to."""
        upstream = self.upstream_topic(topic)
        if upstream is None or upstream == topic:
            return topic
        return self.original_topic(upstream)

    def heartbeats_topic(self) -> str:
        return HEARTBEATS_TOPIC

    def offset_syncs_topic(self, cluster_alias: str) -> str:
        sep = self._internal_separator
        return f"mm2-offset-syncs{sep}{cluster_alias}{sep}internal"

    def checkpoints_topic(self, cluster_alias: str) -> str:
        sep = self._internal_separator
        return f"{cluster_alias}{sep}checkpoints{sep}internal"

    def is_heartbeats_topic(self, topic: str) -> bool:
        return self.original_topic(topic) == HEARTBEATS_TOPIC

    def is_checkpoints_topic(self, topic: str) -> bool:
        sep = self._internal_separator
        return topic.endswith(f"{sep}checkpoints{sep}internal")

    def is_offset_syncs_topic(self, topic: str) -> bool:
        sep = self._internal_separator
        return topic.startswith(f"mm2-offset-syncs{sep}") and topic.endswith(f"{sep}internal")

    def is_mm2_internal_topic(self, topic: str) -> bool:
        """MM2's own topics: named ``mm2...<sep>internal``, or checkpoints (``isMM2InternalTopic``)."""
        return (topic.startswith("mm2") and topic.endswith(f"{self._internal_separator}internal")) or (
            self.is_checkpoints_topic(topic)
        )

    def is_internal_topic(self, topic: str) -> bool:
        """Kafka's hidden topics and MM2's own (``isInternalTopic``): never replicated.

        Other names ending in ``.internal`` (Connect's, say) are kept out by the default ``topics.exclude``.
        """
        return self.is_mm2_internal_topic(topic) or topic.startswith("__") or topic.startswith(".")

    def source_chain(self, topic: str) -> list[str]:
        """Every alias ``topic`` passed through, nearest first (``B.A.t`` -> ``[B, A]``)."""
        chain: list[str] = []
        current: str | None = topic
        while current is not None:
            source = self.topic_source(current)
            if source is None:
                break
            chain.append(source)
            upstream = self.upstream_topic(current)
            if upstream is None or upstream == current:
                break
            current = upstream
        return chain

    def is_cycle(self, topic: str, target_alias: str) -> bool:
        """True when replicating ``topic`` into ``target_alias`` would send it back where it came from."""
        return target_alias in self.source_chain(topic)


class DefaultReplicationPolicy(ReplicationPolicy):
    """``<source><sep><topic>``: loop-safe by name, so active/active and aggregation work."""

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        return f"{source_alias}{self.separator}{topic}"

    def topic_source(self, topic: str) -> str | None:
        parts = topic.split(self.separator)
        while parts and not parts[-1]:  # Java's String.split drops trailing empty strings
            parts.pop()
        return parts[0] if len(parts) >= 2 else None

    def upstream_topic(self, topic: str) -> str | None:
        source = self.topic_source(topic)
        return None if source is None else topic[len(source) + len(self.separator) :]


class IdentityReplicationPolicy(DefaultReplicationPolicy):
    """Remote topic keeps the source name (migration); only heartbeats are prefixed.

    Names carry no provenance, so loops are prevented per record by the provenance header instead
    (see ``shared.mm2.provenance``).
    """

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        if self._looks_like_heartbeats(topic):
            return super().format_remote_topic(source_alias, topic)
        return topic

    def topic_source(self, topic: str) -> str | None:
        return super().topic_source(topic) if self._looks_like_heartbeats(topic) else None

    def upstream_topic(self, topic: str) -> str | None:
        return super().upstream_topic(topic) if self._looks_like_heartbeats(topic) else None

    def _looks_like_heartbeats(self, topic: str) -> bool:
        return topic.endswith(HEARTBEATS_TOPIC)  # MM2's looksLikeHeartbeat: no separator needed


POLICY_CLASSES: dict[str, type[ReplicationPolicy]] = {
    "org.apache.kafka.connect.mirror.DefaultReplicationPolicy": DefaultReplicationPolicy,
    "org.apache.kafka.connect.mirror.IdentityReplicationPolicy": IdentityReplicationPolicy,
}
