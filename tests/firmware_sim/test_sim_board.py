"""The board simulator's pty: raw bytes, the stable link, unplug/replug, the sent log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from drivers.serial.protocol import LineDecoder
from firmware_sim.board import BoardUnpluggedError, SensorBoardSim
from gateway.core.model import RawSample

pytestmark = pytest.mark.integration


@pytest.fixture
def board() -> Iterator[SensorBoardSim]:
    with SensorBoardSim(3, start_ms=1_000_000, seed=1) as sim:
        yield sim


def link_target(board: SensorBoardSim) -> str:
    return str(board.link_path.readlink())


async def read_exactly(fd: int, n: int) -> bytes:
    """Read n bytes from a non-blocking fd, waiting on readiness (no sleeps)."""
    loop = asyncio.get_running_loop()
    out = b""
    async with asyncio.timeout(4):
        while len(out) < n:
            ready = loop.create_future()
            loop.add_reader(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            out += os.read(fd, n - len(out))
    return out


async def test_bytes_arrive_untranslated_on_the_slave(board: SensorBoardSim) -> None:
    assert link_target(board) == board.port
    assert board.port.startswith("/dev/pts/")
    fd = os.open(board.link_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        expected = board.reading_lines(6)
        await board.write(expected)
        got = await read_exactly(fd, len(expected))
    finally:
        os.close(fd)
    assert got == expected  # raw mode: \r\n stays \r\n, no echo games
    decoder = LineDecoder({"1": "a", "2": "b", "3": "c"}, "t", board="B1")
    samples = [decoder.decode_line(line, 0) for line in got.splitlines(keepends=True)]
    assert all(isinstance(s, RawSample) for s in samples)
    assert [s.seq for s in samples if isinstance(s, RawSample)] == [1, 1, 1, 2, 2, 2]
    assert board.sent.count("1") == 2 and board.sent.total_valid == 6
    # One round per interval of simulated time, stamped with the device clock.
    assert [r.ts_ms for r in board.sent.valid["1"]] == [1_001_000, 1_002_000]


def test_unplug_removes_the_link_and_replug_restores_it(board: SensorBoardSim) -> None:
    board.unplug()
    assert not board.plugged and not board.link_path.exists()
    board.unplug()  # idempotent
    board.replug()
    assert board.plugged
    assert link_target(board) == board.port


async def test_send_while_unplugged_raises(board: SensorBoardSim) -> None:
    board.unplug()
    with pytest.raises(BoardUnpluggedError):
        await board.send_lines(1)
    assert board.sent.total_valid == 0


async def test_run_while_unplugged_counts_lost_readings(board: SensorBoardSim) -> None:
    board.unplug()
    board.speed = 1e6
    await board.run(rounds=4)
    assert board.sent.total_valid == 0 and board.sent.unplugged == 12


async def test_unplug_wakes_a_writer_blocked_on_a_full_pty(board: SensorBoardSim) -> None:
    # Nobody reads the slave: the pty fills, the write waits, unplug must release it.
    writer = asyncio.create_task(board.write(b"x" * 4_000_000))
    # One step of the task writes what fits and parks on the full pty.
    await asyncio.sleep(0)
    assert board._write_wait is not None
    board.unplug()
    with pytest.raises(BoardUnpluggedError):
        async with asyncio.timeout(4):
            await writer


async def test_free_running_board_discards_backlog_nobody_reads(board: SensorBoardSim) -> None:
    board.speed = 1e6
    await board.run(rounds=3000)  # ~9000 lines, far beyond the pty buffer
    assert board.sent.overrun_flushes > 0


def test_same_seed_same_bytes() -> None:
    with SensorBoardSim(4, start_ms=0, seed=5) as a, SensorBoardSim(4, start_ms=0, seed=5) as b:
        assert a.reading_lines(100) == b.reading_lines(100)
