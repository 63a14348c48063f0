"""Sink cursors are journaled at most every cursor_save_s, and at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.core.model import Reading
from gateway.journal.store import Journal, JournalRunner
from gateway.outbox.forwarder import InfluxForwarder
from gateway.outbox.streams import readings_stream


class Sink:
    def __init__(self) -> None:
        self.points = 0

    async def write(self, body: bytes, points: int) -> None:
        self.points += points

    async def close(self) -> None:
        return None


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JournalRunner]:
    r = JournalRunner(Journal(tmp_path / "j.db"))
    yield r
    r.close()


def _readings(n: int, start: int) -> list[Reading]:
    return [
        Reading(sensor="s1", ts_ns=i, received_ns=i, temp_c=4.0, source="t", zone="z")
        for i in range(start, start + n)
    ]


def _noop() -> None:
    return None


async def _until(condition: object) -> None:
    async with asyncio.timeout(5):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_cursor_saved_once_per_interval_and_at_stop(runner: JournalRunner) -> None:
    journal, clock, sink = runner.journal, ManualClock(), Sink()
    fwd = InfluxForwarder(
        "influx", runner, sink, [readings_stream("h")], Counters(), clock, cursor_save_s=10
    )
    journal.commit_batch(_readings(5, 0), [], 0)
    task = asyncio.create_task(fwd.run())
    await _until(lambda: fwd.cursor == 5)
    await runner.call(_noop)  # the save it submitted has run (one journal thread, FIFO)
    assert journal.cursor("influx", "readings") == 5, "the first batch is saved"
    journal.commit_batch(_readings(5, 5), [], 0)
    fwd.wake()
    await _until(lambda: fwd.cursor == 10)
    await runner.call(_noop)  # the save it submitted has run (one journal thread, FIFO)
    assert journal.cursor("influx", "readings") == 5, "within 10 s: only in memory"
    clock.advance(10)
    journal.commit_batch(_readings(5, 10), [], 0)
    fwd.wake()
    await _until(lambda: fwd.cursor == 15)
    await runner.call(_noop)  # the save it submitted has run (one journal thread, FIFO)
    assert journal.cursor("influx", "readings") == 15, "10 s later the batch saves it"
    journal.commit_batch(_readings(5, 15), [], 0)
    fwd.wake()
    await _until(lambda: fwd.cursor == 20)
    await runner.call(_noop)  # the save it submitted has run (one journal thread, FIFO)
    task.cancel()
    await fwd.save_cursors()  # what the daemon does at stop
    assert journal.cursor("influx", "readings") == 20
    assert sink.points == 20
