"""Every ``coldchain`` command, given a user's mistake, says what is wrong: never a traceback.

Each case runs the installed ``coldchain`` console script of this venv as a subprocess
(what an operator types), so an import-time or argparse-level crash shows up too. The
commands are enumerated from the parser itself: a new subcommand fails
``test_every_command_is_covered`` until it has a row in ``COMMANDS`` below.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import DEFAULT_CONFIG, build_parser

ROOT = Path(__file__).resolve().parents[2]
PUB = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # RFC 8032 test 1 public key
COLDCHAIN = Path(sys.executable).with_name("coldchain")


@dataclass(frozen=True)
class Command:
    """How to call one command: its words, the arguments it needs, what it reads."""

    words: tuple[str, ...]
    needs: tuple[str, ...] = ()
    """Required positionals/options besides --config (the command's own, valid)."""
    missing: tuple[str, ...] | None = None
    """An invocation with an argument missing; default: the bare words."""
    config: str | None = "--config"
    """How the command takes the config file (None: it takes none)."""
    reads_journal: bool = False
    verdict_on_stdout: bool = False
    """A check whose FAILED verdict is its normal output (verify-report on a bad PDF)."""


COMMANDS = [
    Command(("run",)),
    Command(("check-config",), config=""),
    Command(("status",), reads_journal=True),
    Command(("journal",), config=None),
    Command(("journal", "salvage"), config=None),
    Command(("dead-letters",), reads_journal=True),
    Command(("alerts",), reads_journal=True),
    Command(("alerts", "list"), reads_journal=True),
    Command(("alerts", "show"), needs=("hub-lis-01-a1",), reads_journal=True),
    Command(("alerts", "ack"), needs=("hub-lis-01-a1", "--by", "ana"), reads_journal=True),
    Command(("notify",), missing=("notify",)),
    Command(("notify", "test"), needs=("nobody",)),
    Command(
        ("handoff",),
        needs=("SH-1", "received", "--zone", "dock-1", "--by", "ana", "--wait", "0"),
        reads_journal=True,
    ),
    Command(("keys",)),
    Command(("keys", "init")),
    Command(("keys", "show")),
    Command(("keys", "enroll"), needs=("scanner-07", "--role", "custody", "--public-key", PUB)),
    Command(("keys", "list")),
    Command(("keys", "revoke"), needs=("scanner-07",)),
    Command(("keys", "generate"), needs=("dev-1", "--out", "dev-1.key"), config=None),
    Command(("verify-report",), needs=("{pdf}",), reads_journal=True, verdict_on_stdout=True),
    Command(("verify",), reads_journal=True, needs=("--source", "journal")),
    Command(("trace",), needs=("SH-1", "--source", "journal", "--quiet"), reads_journal=True),
    Command(("demo",), missing=("demo", "--duration"), config=None),
    Command(("discover",), missing=("discover", "--seconds"), config=None),
    Command(("sim",), config=None),
    Command(("sim", "serial"), missing=("sim", "serial", "--interval"), config=None),
    Command(("sim", "modbus"), missing=("sim", "modbus", "--slaves"), config=None),
    Command(("sim", "mqtt"), missing=("sim", "mqtt", "--port"), config=None),
]


def _leaves(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command and sub-command path of the parser (positional choices count too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name)
                yield from _leaves(sub, (*words, name))
        elif words and not action.option_strings and action.choices and action.dest == "action":
            for choice in action.choices:
                yield (*words, str(choice))


def test_every_command_is_covered() -> None:
    assert set(_leaves(build_parser())) == {c.words for c in COMMANDS}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COLDCHAIN), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _config_args(command: Command, path: Path) -> list[str]:
    if command.config is None:
        return []
    return [str(path)] if command.config == "" else [command.config, str(path)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    broken = tmp / "broken.toml"
    broken.write_text('[hub]\nid = "hub-1\n', encoding="utf-8")  # unterminated string
    invalid = tmp / "invalid.toml"
    invalid.write_text('[hub]\nid = "hub 1"\ncolour = "red"\n', encoding="utf-8")
    pdf = tmp / "trace-SH-1.pdf"
    pdf.write_bytes(b"%PDF-1.7 not really\n")
    typo = tmp / "typo.toml"
    example = (ROOT / "examples" / "gateway.toml").read_text(encoding="utf-8")
    journal = tmp / "no-such-dir" / "journal.db"
    typo.write_text(
        example.replace('path = "/var/lib/coldchain/journal.db"', f'path = "{journal}"'),
        encoding="utf-8",
    )
    assert str(journal) in typo.read_text(encoding="utf-8")
    return {
        "missing": tmp / "nope" / "gateway.toml",
        "broken": broken,
        "invalid": invalid,
        "typo": typo,
        "journal": journal,
        "cwd": tmp,
        "pdf": pdf,
    }


def _cases(files: dict[str, Path]) -> list[tuple[str, Command, list[str]]]:
    cases: list[tuple[str, Command, list[str]]] = []
    for c in COMMANDS:
        needs = [str(files["pdf"]) if n == "{pdf}" else n for n in c.needs]
        bare = list(c.missing) if c.missing is not None else list(c.words)
        if c.words != ("check-config",) or c.missing is not None:
            cases.append(("missing arguments", c, bare))
        if c.config is None:
            continue
        for kind in ("missing", "broken", "invalid"):
            cases.append((f"{kind} config", c, [*c.words, *needs, *_config_args(c, files[kind])]))
        if c.reads_journal:
            cases.append(("no journal", c, [*c.words, *needs, *_config_args(c, files["typo"])]))
    return cases


def test_no_traceback_for_any_mistake(files: dict[str, Path]) -> None:
    if Path(DEFAULT_CONFIG).exists():
        pytest.skip(f"{DEFAULT_CONFIG} exists here: the bare commands would use it")
    assert COLDCHAIN.is_file(), f"no console script at {COLDCHAIN} (pip install -e .)"
    cases = _cases(files)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case[2], files["cwd"]), cases))
    failures = []
    for (what, command, argv), done in zip(cases, results, strict=True):
        err = done.stderr.strip()
        if command.verdict_on_stdout and not err and "FAILED" in done.stdout:
            err = done.stdout.strip()
        bad = []
        if done.returncode == 0:
            bad.append("exit 0")
        if "Traceback" in done.stderr + done.stdout:
            bad.append("traceback")
        if not err:
            bad.append("nothing on stderr")
        if bad:
            failures.append(f"{what}: coldchain {' '.join(argv)}: {', '.join(bad)}\n{err[-600:]}")
    assert not failures, "\n\n".join(failures)
    # A mistyped journal path is an error, never a new empty journal (nor its folder).
    assert not files["journal"].parent.exists()


def test_default_config_path_is_in_help() -> None:
    done = _run(["status", "--help"], ROOT)
    assert done.returncode == 0
    assert DEFAULT_CONFIG in done.stdout


def test_broken_config_names_the_file_and_the_problem(files: dict[str, Path]) -> None:
    done = _run(["alerts", "--config", str(files["broken"])], files["cwd"])
    assert done.returncode == 2
    assert str(files["broken"]) in done.stderr
    assert "TOML" in done.stderr


def test_missing_journal_is_named(files: dict[str, Path]) -> None:
    done = _run(["alerts", "--config", str(files["typo"])], files["cwd"])
    assert done.returncode != 0
    assert str(files["journal"]) in done.stderr
    assert "no active alerts" not in done.stdout


def test_a_journal_without_the_alert_tables_is_an_error_not_a_traceback(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from gateway.cli import main

    journal = tmp_path / "journal.db"
    db = sqlite3.connect(journal)  # a journal some other tool made: no alert tables
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.commit()
    db.close()
    config = tmp_path / "gateway.toml"
    config.write_text(
        files["typo"].read_text(encoding="utf-8").replace(str(files["journal"]), str(journal)),
        encoding="utf-8",
    )
    assert main(["alerts", "--config", str(config)]) == 1
    assert "coldchain alerts: journal:" in capsys.readouterr().err
