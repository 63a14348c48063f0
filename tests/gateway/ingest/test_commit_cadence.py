"""Commit cadence: a quiet batch waits out its bound, a batch that changes an alert does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, RawSample, Reading
from gateway.ingest.batcher import Ingest
from gateway.ingest.normalize import Normalizer
from gateway.journal.store import Journal, JournalRunner

CONFIG = parse_config(
    {
        "hub": {"id": "h"},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "cr1"}],
        # s1 is accepted from the driver that lists it (source "mqtt:drv").
        "drivers": {
            "mqtt": [
                {
                    "name": "drv",
                    "sensors": ["s1"],
                    "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                }
            ]
        },
    }
)
HOUR = 3600.0  # a commit bound no test run reaches


def _delivery(n: int, start: int = 0) -> Delivery:
    return Delivery(
        samples=[
            RawSample(sensor="s1", temp_c=4.0, ts_ns=i, received_ns=i, source="mqtt:drv", seq=i)
            for i in range(start, start + n)
        ]
    )


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JournalRunner]:
    r = JournalRunner(Journal(tmp_path / "j.db"))
    yield r
    r.close()


async def _turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_urgent_batch_commits_at_once_and_observers_run_before_it(
    runner: JournalRunner,
) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock(), commit_interval_s=HOUR)
    rows_seen_by_observer: list[int] = []
    rows_seen_at_commit: list[int] = []

    def observer(readings: Sequence[Reading]) -> bool:
        # Runs on the event loop while the journal thread is idle: read directly.
        rows_seen_by_observer.append(runner.journal.count("readings"))
        return True  # e.g. an excursion starts: its alert waits on this batch

    ingest.on_observe(observer)
    ingest.on_commit(lambda _: rows_seen_at_commit.append(runner.journal.count("readings")))
    task = asyncio.create_task(ingest.run())
    await ingest.submit("drv", _delivery(3))
    async with asyncio.timeout(5):
        while counters.committed < 3:
            await asyncio.sleep(0.01)
    assert rows_seen_by_observer == [0], "observers see readings before they are committed"
    assert rows_seen_at_commit == [3], "commit listeners (alerts) run after the commit"
    await ingest.close()
    await task


async def test_a_quiet_batch_waits_for_its_bound(runner: JournalRunner) -> None:
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock(), commit_interval_s=HOUR)
    observed: list[int] = []

    def observer(readings: Sequence[Reading]) -> bool:
        observed.append(len(readings))
        return False

    ingest.on_observe(observer)
    task = asyncio.create_task(ingest.run())
    await ingest.submit("drv", _delivery(3))
    await ingest.submit("drv", _delivery(2, 3))
    async with asyncio.timeout(5):
        while len(observed) < 2:
            await asyncio.sleep(0.01)
    await _turns()
    assert counters.committed == 0, "nothing urgent: the batch keeps collecting"
    await ingest.close()  # stop commits what is pending
    await task
    assert counters.committed == 5
    assert observed == [3, 2]
