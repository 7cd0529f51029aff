"""Per-record loop protection for identity topic names.

MM2's ``IdentityReplicationPolicy`` cannot tell a mirrored topic from a local one, so it loops when run both
ways (KAFKA-9726). Each record mirrored under identity names carries a header listing the clusters it has
passed through; a flow drops (and counts) a record whose path already contains its target.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.mm2.formats import Header

PROVENANCE_HEADER = "__smm.path"
_SEPARATOR = ","


def path_of(headers: Sequence[Header]) -> list[str]:
    """Clusters the record has been on before its current one, oldest first."""
    for key, value in headers:
        if key == PROVENANCE_HEADER:
            return value.decode("utf-8").split(_SEPARATOR) if value else []
    return []


def has_visited(headers: Sequence[Header], alias: str) -> bool:
    return alias in path_of(headers)


def stamp(headers: Sequence[Header], source_alias: str) -> list[Header]:
    """Headers for the mirrored copy: the path extended by the cluster the record leaves.

    The provenance header moves to the end; every other header keeps its position and repeats.
    """
    path = [*path_of(headers), source_alias]
    kept = [h for h in headers if h[0] != PROVENANCE_HEADER]
    kept.append((PROVENANCE_HEADER, _SEPARATOR.join(path).encode("utf-8")))
    return kept
