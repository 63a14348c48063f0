"""Free text: refused at input when it can forge what a reader sees; escaped at output."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from gateway.core.text import Name, Note, printable, printable_bytes, text_problem


class _Form(BaseModel):
    by: Name
    note: Note = ""


@pytest.mark.parametrize(
    "value",
    [
        "ops\x1b[2J",  # ESC: clear screen
        "ops\x07",  # BEL
        "ops\nall sensors OK",  # forged second line
        "ops\r",
        "ops\x85",  # C1 NEL
        "ops\u202egnp",  # bidi override
        "ops\u2066x\u2069",  # bidi isolate
        "o\u200bps",  # zero-width space
        "o\ufeffps",  # zero-width no-break space
        "ops\u2028",  # line separator
        " ops",
    ],
)
def test_invisible_or_line_breaking_characters_are_refused(value: str) -> None:
    assert text_problem(value) is not None
    with pytest.raises(ValidationError):
        _Form(by=value)


def test_plain_text_in_any_script_is_accepted() -> None:
    for value in ("Ana Sá", "Łukasz Żółć", "田中", "مريم", "dock 3 / door B"):
        assert _Form(by=value, note=value).by == value


def test_length_limits() -> None:
    _Form(by="x" * 128, note="y" * 500)
    with pytest.raises(ValidationError):
        _Form(by="x" * 129)
    with pytest.raises(ValidationError):
        _Form(by="ok", note="y" * 501)
    with pytest.raises(ValidationError):
        _Form(by="")


def test_printable_makes_one_visible_line() -> None:
    assert printable("a\x1b[2Jb\x07\nc\u202ed\\") == "a\\x1b[2Jb\\x07\\nc\\u202ed\\\\"
    assert printable("x" * 1000, 10) == "xxxxxxx..."
    assert printable_bytes(b"\xff\x1bok\n") == "\\xff\\x1bok\\n"
    assert "\n" not in printable("\n" * 5)
