"""MM2's source offsets (Connect's offsets topic, ``mm2-offsets.<source>.internal`` on the target), read.

Both MM2's dedicated mode and this product's exactly-once mode write them there (``SourceOffset``); reading
them is how one takes over from the other.
"""

from __future__ import annotations

from kafka import TopicPartition

from shared.kafka.clients import KafkaClients
from shared.kafka.groups import TopicRecord, read_range
from shared.mm2.formats import FormatError, SourceOffset


def read(
    clients: KafkaClients, alias: str, topic: str, partitions: set[int] | None = None
) -> dict[tuple[str, int], SourceOffset]:
    """(topic, partition) -> the last source offset committed in ``topic`` on ``alias`` (empty if none).

    Read to the high watermark with ``read_committed``, so transactions still open there are waited for, not
    skipped. ``partitions`` limits the read to those partitions of the offsets topic.
    """
    info = clients.topic_info(alias, topic, refresh=True)
    if info is None:
        return {}
    tps = {TopicPartition(topic, p) for p in range(info.partitions) if partitions is None or p in partitions}
    ends = clients.latest_offsets(alias, tps)
    found: dict[tuple[str, int], SourceOffset] = {}
    for record in read_range(clients, alias, dict.fromkeys(tps, 0), ends):
        remember(found, record, f"{topic} on {alias!r}")
    return found


def remember(found: dict[tuple[str, int], SourceOffset], record: TopicRecord, where: str) -> None:
    """Fold one record of an offsets topic (``where``, for errors) into ``found``: the newest offset per source
    partition; a tombstone forgets the partition, its key says which."""
    try:
        offset = SourceOffset.deserialize(record.key or b"", record.value or b'{"offset":-1}')
    except FormatError as exc:
        raise FormatError(f"{where} at offset {record.offset}: {exc}") from None
    if offset is None:
        return
    if record.value is None:
        found.pop((offset.topic, offset.partition), None)
    else:
        found[(offset.topic, offset.partition)] = offset
