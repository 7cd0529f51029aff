"""MM2's ``MirrorClient`` / ``RemoteClusterUtils`` in Python: what one cluster's internal topics say.

Everything comes from topic names (heartbeats, checkpoints, remote topics) and from the checkpoints topics'
records, exactly as MM2's client reads them, so it answers the same for a cluster MM2 itself replicates to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kafka import OffsetAndMetadata, TopicPartition

from shared.kafka.clients import KafkaClients
from shared.kafka.groups import read_topic
from shared.mm2.config import MirrorConfig
from shared.mm2.formats import Checkpoint, FormatError
from shared.mm2.policy import DefaultReplicationPolicy, ReplicationPolicy


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint and when it was written (the record timestamp, epoch ms)."""

    checkpoint: Checkpoint
    timestamp: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.checkpoint.topic, self.checkpoint.partition)


class MirrorClient:
    """Reads the internal topics of cluster ``alias``; ``policy`` interprets the names (as MM2's client does)."""

    def __init__(self, clients: KafkaClients, alias: str, policy: ReplicationPolicy | None = None) -> None:
        self.clients = clients
        self.alias = alias
        self.policy = policy or policy_for(clients.config, alias)

    def _topics(self) -> list[str]:
        return self.clients.topics(self.alias)

    def heartbeat_topics(self) -> set[str]:
        """``heartbeats`` and its remote copies (``A.heartbeats``, ``B.A.heartbeats``, ...)."""
        return {t for t in self._topics() if self.policy.is_heartbeats_topic(t)}

    def checkpoint_topics(self) -> set[str]:
        return {t for t in self._topics() if self.policy.is_checkpoints_topic(t)}

    def upstream_clusters(self) -> set[str]:
        """Every alias found along the heartbeat topics' names: the clusters replicating here, however far."""
        return {alias for t in self.heartbeat_topics() for alias in _distinct(self.policy.source_chain(t))}

    def replication_hops(self, source_alias: str) -> int:
        """Fewest hops from ``source_alias`` to this cluster by the heartbeat topics; -1 if it is not upstream."""
        hops = [_hops(self.policy.source_chain(t), source_alias) for t in self.heartbeat_topics()]
        found = [h for h in hops if h > 0]
        return min(found) if found else -1

    def remote_topics(self, source_alias: str | None = None) -> set[str]:
        """Replicated topics here, or only those replicated directly from ``source_alias``."""
        remote = {t for t in self._topics() if not self.policy.is_internal_topic(t) and self.policy.topic_source(t)}
        if source_alias is None:
            return remote
        return {t for t in remote if self.policy.topic_source(t) == source_alias}

    def checkpoints(
        self, remote_alias: str, group_matches: Callable[[str], bool] | None = None
    ) -> dict[str, dict[TopicPartition, CheckpointRecord]]:
        """The newest checkpoint per group and partition in ``<remote_alias>.checkpoints.internal`` here."""
        topic = self.policy.checkpoints_topic(remote_alias)
        newest: dict[str, dict[TopicPartition, CheckpointRecord]] = {}
        for record in read_topic(self.clients, self.alias, topic).records:
            if record.key is None or record.value is None:
                continue
            try:
                checkpoint = Checkpoint.deserialize(record.key, record.value)
            except FormatError:
                continue  # MM2's client skips what it cannot read, too
            if group_matches is None or group_matches(checkpoint.group):
                entry = CheckpointRecord(checkpoint, record.timestamp)
                newest.setdefault(checkpoint.group, {})[entry.topic_partition] = entry
        return newest

    def translate_offsets(self, group: str, remote_alias: str) -> dict[TopicPartition, OffsetAndMetadata]:
        """Where ``group``, consuming on ``remote_alias``, resumes here: MM2's ``remoteConsumerOffsets``."""
        found = self.checkpoints(remote_alias, lambda g: g == group).get(group, {})
        return {
            tp: OffsetAndMetadata(entry.checkpoint.downstream_offset, entry.checkpoint.metadata, -1)
            for tp, entry in found.items()
        }


def policy_for(config: MirrorConfig, alias: str) -> ReplicationPolicy:
    """The policy names on ``alias`` follow: that of a flow into it, else any flow's, else MM2's default."""
    flows = [f for f in config.flows if f.target == alias] or list(config.flows)
    return flows[0].policy() if flows else DefaultReplicationPolicy()


def _distinct(chain: list[str]) -> list[str]:
    """The chain up to the first repeated alias (identity-named cycles cannot be followed further)."""
    seen: list[str] = []
    for alias in chain:
        if alias in seen:
            break
        seen.append(alias)
    return seen


def _hops(chain: list[str], source_alias: str) -> int:
    distinct = _distinct(chain)
    return distinct.index(source_alias) + 1 if source_alias in distinct else -1
