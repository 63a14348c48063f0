"""Ingest: batches commit before acks; counters see every drop; supervisor reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.core.backoff import Backoff
from gateway.core.clock import ManualClock
from gateway.core.errors import DriverDisconnected
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, RawSample, Reject
from gateway.ingest.batcher import Ingest
from gateway.ingest.normalize import Normalizer
from gateway.journal.store import Journal, JournalRunner
from gateway.runtime.reconnect import supervise

CONFIG = parse_config(
    {
        "hub": {"id": "h"},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "cr1"}],
        "drivers": {
            "mqtt": [
                {
                    "name": "drv",
                    "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    "sensors": ["s1"],
                }
            ]
        },
    }
)


def _samples(n: int, start: int = 0) -> list[RawSample]:
    return [
        RawSample(sensor="s1", temp_c=4.0, ts_ns=i, received_ns=i, source="mqtt:drv", seq=i)
        for i in range(start, start + n)
    ]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JournalRunner]:
    r = JournalRunner(Journal(tmp_path / "j.db"))
    yield r
    r.close()


async def test_ack_happens_only_after_commit(runner: JournalRunner) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock(), commit_interval_s=0.01)
    seen_at_ack: list[int] = []

    def ack() -> None:
        # Runs on the event loop while the journal thread is idle: read directly.
        seen_at_ack.append(runner.journal.count("readings"))

    task = asyncio.create_task(ingest.run())
    await ingest.submit("drv", Delivery(samples=_samples(25), ack=ack))
    await ingest.close()
    await task
    assert seen_at_ack == [25]
    assert counters.committed == 25
    assert counters.received["drv"] == 25


async def test_rejects_are_counted_and_dead_letters_kept(runner: JournalRunner) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock())
    task = asyncio.create_task(ingest.run())
    rejects = [
        Reject("checksum", "serial:a"),
        Reject("checksum", "serial:a"),
        Reject("not_json", "mqtt:n", b"{", "t", "", dead_letter=True),
    ]
    ghost = RawSample(sensor="ghost", temp_c=1.0, ts_ns=1, received_ns=1, source="mqtt:drv")
    await ingest.submit("drv", Delivery(samples=[ghost], rejects=rejects))
    await ingest.close()
    await task
    assert counters.dropped == {"drv:checksum": 2, "drv:not_json": 1, "drv:unknown_sensor": 1}
    assert runner.journal.count("dead_letters") == 2
    assert runner.journal.count("readings") == 0


async def test_many_deliveries_share_a_commit(runner: JournalRunner) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock(), commit_interval_s=0.5)
    batches: list[int] = []
    ingest.on_commit(lambda readings: batches.append(len(readings)))
    for k in range(20):
        await ingest.submit("drv", Delivery(samples=_samples(10, k * 10)))
    task = asyncio.create_task(ingest.run())
    await ingest.close()
    await task
    assert sum(batches) == 200
    assert len(batches) == 1, "queued deliveries must be grouped into one commit"


class FlakyDriver:
    """Yields one delivery per connection, then drops the connection."""

    name = "flaky"

    def __init__(self) -> None:
        self.connects = 0

    async def deliveries(self) -> AsyncIterator[Delivery]:
        self.connects += 1
        yield Delivery(samples=_samples(1, self.connects))
        raise DriverDisconnected("port vanished")

    async def close(self) -> None:
        return None


async def test_supervisor_reconnects_with_backoff_on_the_injected_clock(
    runner: JournalRunner,
) -> None:
    clock = ManualClock()
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, clock)
    driver = FlakyDriver()
    ingest_task = asyncio.create_task(ingest.run())
    sup = asyncio.create_task(
        supervise(driver, ingest, counters, clock, Backoff(initial=1.0, maximum=4.0))
    )
    async with asyncio.timeout(5):
        while driver.connects < 1:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert driver.connects == 1, "no reconnect before the backoff delay passed"
        for _ in range(3):
            clock.advance(4.0)
            before = driver.connects
            while driver.connects == before:
                await asyncio.sleep(0.001)
        # The 4th connection counted itself before its delivery reached the ingest; a
        # cancel in between loses it (cancel is not the graceful stop): wait for it.
        while counters.received["flaky"] < 4:
            await asyncio.sleep(0.001)
    assert counters.reconnects["flaky"] == 3
    assert counters.last_error["flaky"] == "port vanished"
    sup.cancel()
    await ingest.close()
    await ingest_task
    assert counters.committed == 4
