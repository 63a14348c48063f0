"""``coldchain --help`` is the operator's first manual: every command, exit codes, examples."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from gateway.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*words, name))


def test_root_help_lists_every_command_with_its_purpose_exit_codes_and_examples() -> None:
    parser = build_parser()
    text = parser.format_help()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        assert choice.help, f"{choice.dest} has no one-line purpose"
        line = re.search(rf"^  {re.escape(choice.dest)} +(.+)$", text, re.MULTILINE)
        assert line is not None, f"{choice.dest} not listed in --help"
        assert line.group(1) == choice.help
    assert "exit codes" in text
    assert re.search(r"^  2 +usage or config error", text, re.MULTILINE)
    assert "examples:" in text
    assert "\n  coldchain check-config " in text


def test_no_rst_markup_in_any_help() -> None:
    for words, parser in _parsers(build_parser()):
        text = parser.format_help()
        for markup in ("``", ":class:", ":meth:", ":func:", ".. "):
            assert markup not in text, f"coldchain {' '.join(words)} --help shows {markup!r}"


def test_every_option_has_help_text() -> None:
    missing = [
        f"coldchain {' '.join(words)} {action.option_strings or action.dest}"
        for words, parser in _parsers(build_parser())
        for action in parser._actions
        if action.help is None and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []
