"""A config reload hands the open serial port to the next gateway: no line is lost."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from firmware_sim.board import SensorBoardSim
from gateway.config import load_config
from gateway.runtime.daemon import Gateway
from gateway.runtime.reload import run_with_reload
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration

PROBES = {"1": "p1", "2": "p2", "3": "p3"}
RELOADS = 3


def _toml(journal: Path, port: Path, status_interval_s: float) -> str:
    sensors = "\n".join(
        f'[[sensors]]\nid = "{s}"\nzone = "room"\nmodel = "ds18b20"\n' for s in PROBES.values()
    )
    probes = ", ".join(f'"{ch}" = "{s}"' for ch, s in PROBES.items())
    return f"""
status_interval_s = {status_interval_s}

[hub]
id = "hub-reload-serial"

[journal]
path = "{journal}"

[[zones]]
id = "room"
kind = "cold_storage"

{sensors}

[[drivers.serial]]
name = "board"
port = "{port}"
board = "A1"
probes = {{ {probes} }}
"""


def _connected(status_file: Path) -> bool:
    try:
        return bool(json.loads(status_file.read_text())["counters"]["connected"].get("board"))
    except (OSError, ValueError, KeyError):
        return False


def _journaled(journal: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return [(s, q) for s, q in db.execute("SELECT sensor, seq FROM readings")]


async def _reload_while_the_board_streams(
    tmp_path: Path, settle_s: float = 20.0
) -> tuple[SensorBoardSim, Path]:
    journal = tmp_path / "journal.db"
    status = tmp_path / "status.json"
    path = tmp_path / "gateway.toml"
    board = SensorBoardSim(len(PROBES), board="A1", link_dir=tmp_path)
    path.write_text(_toml(journal, board.link_path, 0.2))
    stop, reload = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_with_reload(load_config(path), path, stop, reload))
    streaming = True

    async def stream() -> None:
        while streaming:
            await board.send_lines(6)  # waits for room: nothing is dropped at the source
            await asyncio.sleep(0.005)

    try:
        await wait_for(lambda: _connected(status), what="port opened")
        writer = asyncio.create_task(stream())
        for n in range(RELOADS):
            await asyncio.sleep(0.3)
            status.unlink()
            path.write_text(_toml(journal, board.link_path, 0.2 + 0.05 * (n + 1)))
            reload.set()
            await wait_for(lambda: _connected(status), what=f"reload {n + 1} applied")
        await asyncio.sleep(0.3)
        streaming = False
        await writer
        sent = board.sent.total_valid
        await wait_for(
            lambda: len(_journaled(journal)) >= sent, settle_s, what="every line journaled"
        )
        await asyncio.sleep(0.2)  # a duplicate would show up now
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
        board.close()
    return board, journal


async def test_reload_keeps_the_serial_port_and_loses_no_line(tmp_path: Path) -> None:
    board, journal = await _reload_while_the_board_streams(tmp_path)
    rows = _journaled(journal)
    expected = {(PROBES[p], r.seq) for p, lines in board.sent.valid.items() for r in lines}
    assert len(expected) > 300
    duplicates = [key for key, n in Counter(rows).items() if n > 1]
    assert duplicates == []
    assert set(rows) == expected


async def test_without_the_hand_over_a_reload_loses_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: closing and reopening the port drops what the board sent meanwhile."""
    monkeypatch.setattr(Gateway, "hand_over_ports", lambda self: None)
    with pytest.raises(pytest.fail.Exception, match="every line journaled"):
        await _reload_while_the_board_streams(tmp_path, settle_s=3.0)
