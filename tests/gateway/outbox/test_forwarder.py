"""Forwarder rules with a scripted sink: bisect and quarantine, hold on config errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.errors import SinkRejected, SinkUnavailable
from gateway.core.metrics import Counters
from gateway.core.model import Reading
from gateway.journal.store import Journal, JournalRunner
from gateway.outbox.forwarder import SYSTEMATIC_REFUSALS, InfluxForwarder
from gateway.outbox.streams import Stream, readings_stream


class Rejected(SinkRejected):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ScriptedSink:
    """Refuses any body containing a poisoned sensor; can be down or unauthorised."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.down = False
        self.unauthorised = False
        self.poison_all = False

    async def write(self, body: bytes, points: int) -> None:
        if self.down:
            raise SinkUnavailable("connection refused")
        if self.unauthorised:
            raise Rejected(401)
        if self.poison_all or b"sensor=poison" in body:
            raise Rejected(400)
        self.bodies.append(body)

    async def close(self) -> None:
        return None


class InstantClock:
    """Sleeps return at once but are recorded, so backoff is visible without waiting."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now_ns(self) -> int:
        return 0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JournalRunner]:
    r = JournalRunner(Journal(tmp_path / "j.db"))
    yield r
    r.close()


def _readings(n: int, poison_at: int | None = None) -> list[Reading]:
    return [
        Reading(
            sensor="poison" if i == poison_at else "s1",
            ts_ns=i,
            received_ns=i,
            temp_c=4.0,
            source="t",
            zone="z",
        )
        for i in range(n)
    ]


async def _run_until(forwarder: InfluxForwarder, condition: object) -> asyncio.Task[None]:
    task = asyncio.create_task(forwarder.run())
    async with asyncio.timeout(5):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)
    return task


async def test_a_refused_record_is_isolated_and_quarantined(runner: JournalRunner) -> None:
    runner.journal.commit_batch(_readings(64, poison_at=37), [], 0)
    sink, counters = ScriptedSink(), Counters()
    fwd = InfluxForwarder(
        "influx", runner, sink, [readings_stream("h")], counters, InstantClock(), batch_size=16
    )
    task = await _run_until(fwd, lambda: fwd.cursor == 64)
    task.cancel()
    written = sum(body.count(b"\n") + 1 for body in sink.bodies)
    assert written == 63
    assert counters.quarantined["influx"] == 1
    row = runner.journal._db.execute("SELECT record_id, stream FROM quarantine").fetchone()
    assert row == (38, "readings")  # ids start at 1


async def test_unauthorised_holds_the_backlog_instead_of_quarantining(
    runner: JournalRunner,
) -> None:
    runner.journal.commit_batch(_readings(10), [], 0)
    sink, counters, clock = ScriptedSink(), Counters(), InstantClock()
    sink.unauthorised = True
    fwd = InfluxForwarder("influx", runner, sink, [readings_stream("h")], counters, clock)
    task = await _run_until(fwd, lambda: len(clock.sleeps) >= 3)
    assert fwd.cursor == 0
    assert counters.quarantined["influx"] == 0
    sink.unauthorised = False
    async with asyncio.timeout(5):
        while fwd.cursor != 10:
            await asyncio.sleep(0.01)
    task.cancel()


async def test_every_record_refused_is_a_schema_conflict_and_holds_the_backlog(
    runner: JournalRunner,
) -> None:
    """A 400 for record after record (a field type conflict) must not quarantine them all."""
    runner.journal.commit_batch(_readings(200, poison_at=None), [], 0)
    sink, counters, clock = ScriptedSink(), Counters(), InstantClock()
    sink.poison_all = True
    fwd = InfluxForwarder(
        "influx", runner, sink, [readings_stream("h")], counters, clock, batch_size=16
    )
    task = await _run_until(fwd, lambda: len(clock.sleeps) >= 3)
    assert counters.quarantined["influx"] == SYSTEMATIC_REFUSALS
    assert fwd.cursor == SYSTEMATIC_REFUSALS, "held at the first record after the streak"
    sink.poison_all = False  # the operator fixed the schema
    async with asyncio.timeout(5):
        while fwd.cursor != 200:
            await asyncio.sleep(0.01)
    task.cancel()
    assert counters.quarantined["influx"] == SYSTEMATIC_REFUSALS


async def test_unavailable_backs_off_then_delivers_everything_in_order(
    runner: JournalRunner,
) -> None:
    runner.journal.commit_batch(_readings(30), [], 0)
    sink, counters, clock = ScriptedSink(), Counters(), InstantClock()
    sink.down = True
    fwd = InfluxForwarder(
        "influx", runner, sink, [readings_stream("h")], counters, clock, batch_size=7
    )
    task = await _run_until(fwd, lambda: len(clock.sleeps) >= 4)
    assert clock.sleeps[3] > clock.sleeps[0] / 2, "backoff grows"
    sink.down = False
    async with asyncio.timeout(5):
        while fwd.cursor != 30:
            await asyncio.sleep(0.01)
    task.cancel()
    lines = b"\n".join(sink.bodies).split(b"\n")
    assert [int(line.rsplit(b" ", 1)[1]) for line in lines] == list(range(30))


async def test_earlier_streams_drain_first(runner: JournalRunner) -> None:
    runner.journal.commit_batch(_readings(20), [], 0)
    urgent_sent: list[int] = []

    def urgent_fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        if after >= 3:
            return after, 0, b""
        urgent_sent.append(after + 1)
        return after + 1, 1, f'alert,hub=h state="raised" {after}'.encode()

    sink = ScriptedSink()
    fwd = InfluxForwarder(
        "influx",
        runner,
        sink,
        [Stream("alerts", urgent_fetch), readings_stream("h")],
        Counters(),
        InstantClock(),
        batch_size=5,
    )
    task = await _run_until(fwd, lambda: fwd.cursor == 20)
    task.cancel()
    assert [b.startswith(b"alert") for b in sink.bodies[:3]] == [True, True, True]
    assert fwd.cursors["alerts"] == 3
