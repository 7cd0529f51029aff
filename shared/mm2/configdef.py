"""How Kafka's ``ConfigDef`` and plain Java read a string setting, so a value means here what it means in MM2.

``ConfigDef.parseType`` trims every value first, then: booleans are ``true``/``false`` in any case, numbers are
Java integers, lists split at commas with the whitespace around them. A few places in MM2 read the raw string
instead, with ``Boolean.parseBoolean`` (``A->B.enabled`` when MM2 picks its cluster pairs, the policy's internal
separator switch): there only ``true`` in any case is true, and a trailing space makes it false.
"""

from __future__ import annotations

import re

_COMMA_WITH_WHITESPACE = re.compile(r"\s*,\s*")
_JAVA_WHITESPACE = "".join(chr(c) for c in range(0x21))  # String.trim drops every char <= U+0020
_INT_RANGES = {"SHORT": 2**15, "INT": 2**31, "LONG": 2**63}
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


class InvalidValue(ValueError):
    """A value ``ConfigDef`` refuses; the message says what is allowed (MM2's own wording where it has one)."""


def trim(value: str) -> str:
    """Java's ``String.trim``."""
    return value.strip(_JAVA_WHITESPACE)


def java_parse_boolean(value: str | None) -> bool:
    """``Boolean.parseBoolean``: ``true`` in any case, nothing else, no trimming."""
    return value is not None and value.lower() == "true"


def parse_boolean(value: str) -> bool:
    v = trim(value).lower()
    if v not in ("true", "false"):
        raise InvalidValue("expected true or false")
    return v == "true"


def parse_number(value: str, kind: str = "INT") -> int:
    """``Short/Integer/Long.parseInt`` of the trimmed value (``+5`` yes; ``5.0``, ``1_000``, ``0x10`` no)."""
    v = trim(value)
    if not _JAVA_INT.fullmatch(v):
        raise InvalidValue(f"not a number of type {kind}")
    number = int(v)
    bound = _INT_RANGES[kind]
    if not -bound <= number < bound:
        raise InvalidValue(f"not a number of type {kind}")
    return number


def parse_list(value: str) -> list[str]:
    """``ConfigDef`` LIST: empty after trimming is ``[]``; otherwise split at commas (items trimmed, empty kept)."""
    v = trim(value)
    if not v:
        return []
    return _COMMA_WITH_WHITESPACE.split(v)


def non_empty_unique(items: list[str], what: str) -> list[str]:
    """``ValidList.anyNonDuplicateValues``: an empty item is refused, a duplicate dropped (MM2 warns and drops)."""
    if any(not item for item in items):
        raise InvalidValue(f"values of {what} must not be empty (a stray comma?)")
    return list(dict.fromkeys(items))
