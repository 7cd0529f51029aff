"""Per-record provenance header used to stop loops under identity topic names."""

from __future__ import annotations

import pytest

from shared.mm2.provenance import PROVENANCE_HEADER, has_visited, path_of, stamp

H = PROVENANCE_HEADER


def test_header_name() -> None:
    assert H == "__smm.path"


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ([], []),
        ([("other", b"x")], []),
        ([(H, b"")], []),
        ([(H, b"A")], ["A"]),
        ([(H, b"A,B")], ["A", "B"]),
        ([("k", b"1"), (H, b"A,B,C"), ("k", b"2")], ["A", "B", "C"]),
        ([(H, "\u00e9t\u00e9,B".encode())], ["\u00e9t\u00e9", "B"]),
    ],
)
def test_path_of(headers: list[tuple[str, bytes]], path: list[str]) -> None:
    assert path_of(headers) == path


@pytest.mark.parametrize(
    ("headers", "alias", "visited"),
    [
        ([], "A", False),
        ([(H, b"A")], "A", True),
        ([(H, b"A,B")], "B", True),
        ([(H, b"A,B")], "C", False),
        ([(H, b"AB")], "A", False),
        ([(H, b"A-1")], "A", False),
        ([("A", b"A")], "A", False),
    ],
)
def test_has_visited(headers: list[tuple[str, bytes]], alias: str, visited: bool) -> None:
    assert has_visited(headers, alias) is visited


def test_stamp_on_a_fresh_record() -> None:
    assert stamp([], "A") == [(H, b"A")]


def test_stamp_appends_the_source_alias() -> None:
    assert stamp([(H, b"A")], "B") == [(H, b"A,B")]
    assert stamp([(H, b"A,B")], "C") == [(H, b"A,B,C")]


def test_stamp_moves_provenance_last_and_keeps_other_headers_in_order() -> None:
    headers = [("k", b"1"), (H, b"A"), ("k", b"2"), ("trace", b"t"), ("k", b"1")]
    assert stamp(headers, "B") == [("k", b"1"), ("k", b"2"), ("trace", b"t"), ("k", b"1"), (H, b"A,B")]


def test_stamp_keeps_headers_with_empty_and_null_values() -> None:
    headers = [("empty", b""), ("null", None)]
    assert stamp(headers, "A") == [("empty", b""), ("null", None), (H, b"A")]  # type: ignore[list-item]


def test_stamp_does_not_modify_its_input() -> None:
    headers = [("k", b"1"), (H, b"A")]
    before = list(headers)
    stamp(headers, "B")
    assert headers == before


def test_stamped_record_is_seen_as_visited_downstream() -> None:
    once = stamp([("k", b"v")], "A")
    twice = stamp(once, "B")
    assert path_of(twice) == ["A", "B"]
    assert has_visited(twice, "A")
    assert has_visited(twice, "B")
    assert not has_visited(twice, "C")
    assert [h for h in twice if h[0] == H] == [(H, b"A,B")]
    assert twice[0] == ("k", b"v")


def test_stamp_after_an_empty_provenance_header() -> None:
    assert stamp([(H, b"")], "A") == [(H, b"A")]
