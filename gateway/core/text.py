"""Free text from outside (names, notes, reasons): checked at input, escaped at output.

Every free-text field that a person or device sends (custody ``actor``, ``carrier``,
``note``; an acknowledgement's ``by`` and ``note``; a key's description) is a
:data:`Name` or a :data:`Note`: bounded in length and free of characters that can forge
what a reader sees:

- C0 and C1 control characters (ESC starts terminal escape sequences that clear the
  screen or rewrite earlier lines, BEL rings, CR/LF forge extra lines in logs and tables);
- Unicode format characters (category Cf): the bidi overrides and isolates (U+202A-U+202E,
  U+2066-U+2069: "Trojan Source", an actor that reads differently from what it is) and the
  zero-width characters (U+200B-U+200D, U+2060, U+FEFF: two actors that look the same);
- the line and paragraph separators U+2028/U+2029, and lone surrogates.

Whatever is already stored (older journals, dead letters, payloads) is shown through
:func:`printable`, which writes those characters as visible escapes, so a CLI line or a
table cell is always one line of what was really there.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final

from pydantic import AfterValidator, Field

NAME_MAX_CHARS: Final = 128
NOTE_MAX_CHARS: Final = 500

_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def text_problem(value: str) -> str | None:
    """Why a free-text value is refused, or None when it is acceptable."""
    for index, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return (
                f"character {_escape(char)} at position {index} is not allowed"
                " (control, bidi or zero-width characters are refused)"
            )
    if value != value.strip():
        return "must not start or end with spaces"
    return None


def _checked(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS), AfterValidator(_checked)]
"""Who did something (actor, by, carrier): 1..128 characters, nothing invisible."""

Note = Annotated[str, Field(max_length=NOTE_MAX_CHARS), AfterValidator(_checked)]
"""Why (a note, a reason): up to 500 characters on one line, nothing invisible."""


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return "\\t"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object, limit: int | None = None) -> str:
    """Text safe for a terminal line or table cell: invisible characters as escapes.

    A backslash is doubled, so ``\\x1b`` in the output always means the ESC byte was there
    and never that someone typed the four characters. ``limit`` truncates (with ``...``)
    after escaping, so a 10 MB value prints as one bounded line.
    """
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _REFUSED_CATEGORIES:
            out.append(_escape(char))
        else:
            out.append(char)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        return result[: max(0, limit - 3)] + "..."
    return result


def printable_bytes(raw: bytes, limit: int | None = None) -> str:
    """Raw payload bytes as one printable line: invalid UTF-8 as ``\\xNN``, controls escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    # backslashreplace already wrote "\xNN" for undecodable bytes; keep those as they are
    # and escape the rest (a literal backslash in valid UTF-8 cannot be told apart here,
    # which only matters for display).
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            out.append(_escape(char))
        else:
            out.append(char)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        return result[: max(0, limit - 3)] + "..."
    return result
