"""Reading identity (sensor, ts_ns): redeliveries skipped, conflicting copies refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import parse_config
from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, RawSample, Reading
from gateway.ingest.batcher import Ingest
from gateway.ingest.normalize import Normalizer
from gateway.journal.identity import CONFLICTING_DUPLICATE, WINDOW_ROWS, ReadingIdentity, Screened
from gateway.journal.store import Journal, JournalRunner

T0 = 1_767_225_600 * 10**9


def _reading(i: int, temp: float = 4.0, sensor: str = "s1", source: str = "mqtt:n") -> Reading:
    return Reading(
        sensor=sensor,
        ts_ns=T0 + i * 10**9,
        received_ns=T0 + i * 10**9 + 5,
        temp_c=temp,
        source=source,
        zone="cr1",
        seq=i,
    )


class Writer:
    """The ingest's use of the identity, synchronously: screen, commit, forget the batch."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)
        self.identity = ReadingIdentity()
        self.identity.load(self.journal.connection)

    def commit_readings(self, readings: list[Reading]) -> Screened:
        behind = self.identity.behind(readings)
        screened = (
            Screened(readings)
            if behind is None
            else self.identity.resolve(self.journal.connection, readings, behind)
        )
        self.journal.commit_batch(screened.fresh, screened.conflicts, T0)
        self.identity.committed()
        return screened

    def count(self, table: str) -> int:
        return self.journal.count(table)

    def close(self) -> None:
        self.journal.close()


def test_a_redelivered_batch_is_skipped_and_reported(tmp_path: Path) -> None:
    j = Writer(tmp_path / "j.db")
    batch = [_reading(i) for i in range(10)]
    first = j.commit_readings(batch)
    assert list(first.fresh) == batch and not first.duplicates
    # The same batch again, received later (a redelivery after a lost PUBACK).
    again = [Reading(**{**_fields(r), "received_ns": r.received_ns + 10**9}) for r in batch]
    second = j.commit_readings(again)
    assert list(second.fresh) == [] and second.duplicates == again and not second.conflicts
    assert j.count("readings") == 10
    j.close()


def test_redelivery_after_a_restart_is_still_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Writer(path)
    j.commit_readings([_reading(i) for i in range(100)])
    j.close()
    j = Writer(path)  # a new process: the marks come from the journal
    # Redelivered: the last 20 (unacknowledged) and then new ones.
    screened = j.commit_readings([_reading(i) for i in range(80, 120)])
    assert len(screened.duplicates) == 20
    assert [r.seq for r in screened.fresh] == list(range(100, 120))
    assert j.count("readings") == 120
    j.close()


def test_a_different_value_for_a_journaled_identity_is_refused(tmp_path: Path) -> None:
    j = Writer(tmp_path / "j.db")
    j.commit_readings([_reading(i) for i in range(5)])
    forged = [_reading(2, temp=-20.0), _reading(3, source="mqtt:other")]
    screened = j.commit_readings(forged)
    assert screened.conflicting == forged and not screened.fresh
    letters = j.journal.dead_letters()
    assert [d.reason for d in letters] == [CONFLICTING_DUPLICATE] * 2
    assert "temp_c 4.0 -> -20.0" in letters[1].detail
    assert "source 'mqtt:n' -> 'mqtt:other'" in letters[0].detail
    assert b'"temp_c": -20.0' in letters[1].payload
    stored = [r for _, r in j.journal.readings_after(0, 100)]
    assert [r.temp_c for r in stored] == [4.0] * 5  # the first reading stands
    j.close()


def test_copies_within_one_batch_and_old_backfill(tmp_path: Path) -> None:
    j = Writer(tmp_path / "j.db")
    j.commit_readings([_reading(i) for i in (10, 11)])
    # A backfill behind the mark (never journaled) is written; copies inside the batch
    # are resolved against each other.
    batch = [_reading(3), _reading(3), _reading(4), _reading(4, temp=9.0), _reading(11)]
    screened = j.commit_readings(batch)
    assert [r.seq for r in screened.fresh] == [3, 4]
    assert [r.seq for r in screened.duplicates] == [3, 11]
    assert [r.temp_c for r in screened.conflicting] == [9.0]
    # Same time on another sensor is another identity.
    other = j.commit_readings([_reading(3, sensor="s2")])
    assert len(other.fresh) == 1
    assert j.count("readings") == 5
    j.close()


def test_the_window_of_marks_is_the_newest_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Writer(path)
    j.commit_readings([_reading(0, sensor="old")])
    j.commit_readings([_reading(i) for i in range(1, WINDOW_ROWS + 1)])
    j.close()
    j = Writer(path)
    # "old" is outside the window: taken as new without a lookup (documented limit);
    # "s1" is inside: its redelivery is recognised.
    screened = j.commit_readings([_reading(0, sensor="old"), _reading(WINDOW_ROWS)])
    assert [r.sensor for r in screened.fresh] == ["old"]
    assert [r.sensor for r in screened.duplicates] == ["s1"]
    j.close()


def _fields(r: Reading) -> dict[str, object]:
    return {name: getattr(r, name) for name in Reading.__slots__}


CONFIG = parse_config(
    {
        "hub": {"id": "h"},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "cr1"}],
        "drivers": {
            "mqtt": [
                {
                    "name": "nodes",
                    "sensors": ["s1"],
                    "subscriptions": [{"topic": "sensors/+/telemetry", "sensor_topic_segment": 1}],
                }
            ]
        },
    }
)


async def test_ingest_counts_redeliveries_and_listeners_see_only_new_readings(
    tmp_path: Path,
) -> None:
    runner = JournalRunner(Journal(tmp_path / "j.db"))
    counters = Counters()
    ingest = Ingest(runner, Normalizer(CONFIG), counters, ManualClock())
    seen: list[int | None] = []
    ingest.on_commit(lambda rs: seen.extend(r.seq for r in rs))
    task = asyncio.create_task(ingest.run())

    def samples(seqs: range, temp: float = 4.0) -> list[RawSample]:
        return [
            RawSample("s1", temp, T0 + i * 10**9, T0 + i * 10**9, "mqtt:nodes", seq=i) for i in seqs
        ]

    def failing_ack() -> None:
        raise ConnectionError("socket closed")

    await ingest.submit("nodes", Delivery(samples(range(10)), ack=failing_ack))
    # The broker redelivers all ten, then the node goes on; one forged copy among them.
    await ingest.submit("nodes", Delivery([*samples(range(15)), *samples(range(7, 8), 30.0)]))
    await ingest.close()
    await task
    await asyncio.to_thread(runner.close)
    assert seen == list(range(15))
    assert counters.duplicates == {"nodes": 10}
    assert counters.dropped == {"nodes:conflicting_duplicate": 1}
    assert counters.committed == 15
    assert counters.dead_lettered == 1
    assert "ack failed" in counters.last_error["nodes"]
