"""battery_pct in the journal: stored, read back, and added to a journal of schema 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.core.model import Reading
from gateway.journal.store import Journal

SCHEMA_1_READINGS = """
CREATE TABLE readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    sensor TEXT NOT NULL,
    zone TEXT NOT NULL,
    source TEXT NOT NULL,
    temp_c REAL NOT NULL,
    rh REAL,
    battery_v REAL,
    quality INTEGER NOT NULL,
    seq INTEGER
);
INSERT INTO readings (ts_ns, received_ns, sensor, zone, source, temp_c, rh, battery_v,
    quality, seq) VALUES (1, 2, 'old', 'z', 'serial0', 4.5, NULL, 3.6, 0, NULL);
"""


def test_battery_pct_round_trips(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    reading = Reading("z1", 10, 11, 4.0, "mqtt:z", "dock", battery_pct=97.0)
    journal.commit_batch([reading], [], 0)
    ((_, stored),) = journal.readings_after(0, 10)
    assert stored == reading


def test_a_schema_1_journal_gets_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1_READINGS)
    journal = Journal(path)
    journal.commit_batch([Reading("new", 20, 21, 5.0, "mqtt:z", "z", battery_pct=50.0)], [], 0)
    rows = [r for _, r in journal.readings_after(0, 10)]
    assert [(r.sensor, r.battery_v, r.battery_pct) for r in rows] == [
        ("old", 3.6, None),
        ("new", None, 50.0),
    ]
