"""``java.util.Properties.load`` exactly, because that is how MirrorMaker 2 reads ``mm2.properties``.

MM2's ``MirrorMaker.main`` loads the file with ``Utils.loadProps``: ``Properties.load(InputStream)``, which decodes
the bytes as ISO-8859-1 (``\\uXXXX`` escapes are the only way to write other characters). The surprises this
brings are kept, and reported as ``Surprise`` notes so ``smm validate`` can say what MM2 makes of a line:

- a backslash before any character other than ``t n r f u`` is dropped (``orders\\..*`` is the regex ``orders..*``);
- values keep trailing whitespace (``A->B.enabled = true `` is not ``true``);
- a line ending in an odd number of backslashes continues on the next one, whose leading whitespace is dropped;
- a comment line never continues, even when it ends in a backslash; ``:`` and whitespace separate like ``=``;
- a key given twice keeps its last value.
"""

from __future__ import annotations

from dataclasses import dataclass

_WHITESPACE = " \t\f"
_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "f": "\f"}
_HEX = "0123456789abcdefABCDEF"


class PropertiesError(ValueError):
    """Text ``Properties.load`` refuses (a malformed ``\\uXXXX`` escape); the message names the line."""


@dataclass(frozen=True)
class Surprise:
    """Something in the file that MM2 reads differently from how it looks; ``line`` is 1-based."""

    line: int
    key: str
    message: str


@dataclass(frozen=True)
class Entry:
    """One logical line: its key and value as ``Properties`` stores them, and where it started."""

    key: str
    value: str
    line: int
    raw: str


def decode(data: bytes) -> str:
    """The characters ``Properties.load(InputStream)`` sees: each byte is one ISO-8859-1 character."""
    return data.decode("latin-1")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """``Properties.LineReader.readLine``, ported step by step: (first line number, logical line) pairs.

    A natural line ends at ``\\n``, ``\\r`` or ``\\r\\n``. Leading ``' '``, ``\\t`` and ``\\f`` are skipped, as are
    blank lines and comment lines (``#`` or ``!`` first). An odd number of trailing backslashes joins the next natural
    line, without its leading whitespace; an empty line after a continuation ends the logical line.
    """
    line_of = _line_numbers(text)
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        buf: list[str] = []
        start = 0
        skip_white, appended_line_begin, preceding_backslash = True, False, False
        while True:
            if i >= n:  # end of the text
                if buf:
                    out.append((start, "".join(buf[:-1] if preceding_backslash else buf)))
                return out
            c = text[i]
            i += 1
            if skip_white:
                if c in _WHITESPACE or (not appended_line_begin and c in "\r\n"):
                    continue
                skip_white = appended_line_begin = False
            if not buf and c in "#!":  # a comment: up to and including its line break, never continued
                while i < n and text[i] not in "\r\n":
                    i += 1
                i += 1
                skip_white = True
                continue
            if c not in "\r\n":
                if not buf:
                    start = line_of[i - 1]
                buf.append(c)
                preceding_backslash = (not preceding_backslash) if c == "\\" else False
                continue
            if not buf:
                skip_white = True
                continue
            if i >= n or not preceding_backslash:
                out.append((start, "".join(buf[:-1] if preceding_backslash else buf)))
                break
            buf.pop()  # the continuation backslash is not part of the line
            skip_white = appended_line_begin = True
            preceding_backslash = False
            if c == "\r" and text[i] == "\n":
                i += 1


def _line_numbers(text: str) -> list[int]:
    """The 1-based line number of each character (``\\r\\n`` is one line break)."""
    numbers: list[int] = []
    line = 1
    for i, c in enumerate(text):
        numbers.append(line)
        if c == "\n" or (c == "\r" and text[i + 1 : i + 2] != "\n"):
            line += 1
    return numbers


def split_entry(line: str) -> tuple[str, str]:
    """``Properties.load0``: the raw key and raw value of a logical line (escapes not yet applied)."""
    key_len = 0
    value_start = len(line)
    has_sep = False
    preceding_backslash = False
    while key_len < len(line):
        c = line[key_len]
        if c in "=:" and not preceding_backslash:
            value_start = key_len + 1
            has_sep = True
            break
        if c in _WHITESPACE and not preceding_backslash:
            value_start = key_len + 1
            break
        preceding_backslash = (not preceding_backslash) if c == "\\" else False
        key_len += 1
    while value_start < len(line):
        c = line[value_start]
        if c not in _WHITESPACE:
            if not has_sep and c in "=:":
                has_sep = True
            else:
                break
        value_start += 1
    return line[:key_len], line[value_start:]


def unescape(raw: str) -> str:
    """``Properties.loadConvert``: ``\\t \\n \\r \\f \\uXXXX`` become characters; any other escaped character stays,
    without its backslash."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        c = raw[i]
        i += 1
        if c == "u":
            digits = raw[i : i + 4]
            if len(digits) < 4 or any(d not in _HEX for d in digits):
                raise PropertiesError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(c, c))
    # \uD83D\uDE00 is one character in Java (two UTF-16 units); join such pairs the same way
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def entries(text: str) -> list[Entry]:
    """Every logical line of ``text`` as a key and value, in file order (duplicates included)."""
    found: list[Entry] = []
    for line_no, line in logical_lines(text):
        raw_key, raw_value = split_entry(line)
        try:
            key, value = unescape(raw_key), unescape(raw_value)
        except PropertiesError as exc:
            raise PropertiesError(f"line {line_no}: {exc} (Properties.load refuses the file)") from None
        found.append(Entry(key, value, line_no, line))
    return found


def load(text: str) -> dict[str, str]:
    """The map ``Properties.load`` builds: the last value of each key wins."""
    return {e.key: e.value for e in entries(text)}


def surprises(text: str) -> list[Surprise]:
    """Lines whose meaning in MM2 differs from how they read; each note says what MM2 makes of it."""
    notes: list[Surprise] = []
    seen: dict[str, int] = {}
    for e in entries(text):
        raw_key, raw_value = split_entry(e.raw)
        dropped = _dropped_backslashes(raw_value)
        if dropped:
            notes.append(
                Surprise(
                    e.line,
                    e.key,
                    f"MM2 drops the backslash in {', '.join(dropped)}: the value is {e.value!r}"
                    + (" (write \\\\ for a regex backslash)" if "\\." in dropped else ""),
                )
            )
        if e.value != e.value.rstrip(_WHITESPACE + "\r\n"):
            notes.append(Surprise(e.line, e.key, f"the value keeps its trailing whitespace: {e.value!r}"))
        if "\\" in raw_key and _dropped_backslashes(raw_key):
            notes.append(Surprise(e.line, e.key, f"MM2 reads the key as {e.key!r}"))
        if any(ord(ch) > 0x7F for ch in raw_key + raw_value):
            notes.append(
                Surprise(
                    e.line,
                    e.key,
                    "MM2 reads the file as ISO-8859-1: a non-ASCII character written as UTF-8 becomes several "
                    "characters; write it as a \\uXXXX escape",
                )
            )
        if e.key in seen:
            notes.append(Surprise(e.line, e.key, f"given again (line {seen[e.key]} too): the last value wins"))
        seen[e.key] = e.line
    return notes


def _dropped_backslashes(raw: str) -> list[str]:
    """The escapes in ``raw`` whose backslash ``loadConvert`` drops without meaning (``\\.``, ``\\d``, ...)."""
    dropped: list[str] = []
    i = 0
    while i < len(raw) - 1:
        if raw[i] == "\\":
            nxt = raw[i + 1]
            if nxt not in "tnrfu\\=: #!":
                pair = "\\" + nxt
                if pair not in dropped:
                    dropped.append(pair)
            i += 2
            continue
        i += 1
    return dropped
