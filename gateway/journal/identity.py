"""The identity of a reading, (sensor, ts_ns): a redelivery is journaled once.

A broker redelivers every message it has not seen acknowledged: after an ack lost with
a dropped connection, after a SIGTERM or a kill between the commit and the PUBACK. The
journal keeps the first copy; an identical second one is skipped and counted
(``duplicates``). A second reading for a (sensor, ts_ns) already journaled with a
*different* value is not a redelivery: either a node's clock repeats (a firmware bug) or
someone forges readings for a sensor not theirs. It is refused, dead-lettered as
``conflicting_duplicate`` and never forwarded; the first reading stands.

"Identical" compares what the device said and who delivered it: temperature, humidity,
battery, seq and source. The quality flags are not compared (clock skew is judged
against the receive time, which differs on a redelivery).

The check must not cost the write path a lookup per reading (it runs for every delivery
as it joins a batch, before the SOP engine observes it). Per sensor it keeps the
newest ts_ns journaled (the high-water mark); a reading newer than its sensor's mark
cannot be a copy and is written at once. Only a reading at or behind the mark (a
redelivery, an out-of-order backfill) is looked up, one indexed query each. At start
the marks come from the newest ``WINDOW_ROWS`` readings: a redelivered message was
unacknowledged, so its first copy is among the last commits (an MQTT inflight window or
an ingest queue is far smaller). A sensor absent from that window starts unmarked and
its first reading is taken as new. Readings without a device clock (NO_DEVICE_TIME)
carry the receive time, so their redeliveries cannot be recognised; InfluxDB still
overwrites them (same series and time).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.core.model import Reading, Reject

CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"
WINDOW_ROWS: Final = 100_000

_Value = tuple[float, float | None, float | None, int | None, str]


def _value(r: Reading) -> _Value:
    return (r.temp_c, r.rh, r.battery_v, r.seq, r.source)


@dataclass(slots=True)
class Screened:
    """One delivery sorted by identity: new readings, skipped copies, refused conflicts."""

    fresh: Sequence[Reading]
    duplicates: list[Reading] = field(default_factory=list)
    conflicts: list[Reject] = field(default_factory=list)
    conflicting: list[Reading] = field(default_factory=list)


class ReadingIdentity:
    """Per-sensor high-water marks, and the lookups for readings behind them.

    Owned by the ingest (the single writer). ``behind`` runs on the event loop, for every
    delivery as it joins a batch (before the SOP engine observes it: a copy must not be
    evaluated twice); ``load`` and ``resolve`` query the journal and run on the journal
    thread. Readings of the batch being built are not journaled yet, so ``resolve`` also
    compares against them (``taken``), and ``committed`` forgets them after the commit.
    """

    def __init__(self) -> None:
        self._marks: dict[str, int] = {}
        self._taken: list[Sequence[Reading]] = []  # fresh readings of the open batch

    def load(self, db: sqlite3.Connection) -> None:
        """Marks from the newest WINDOW_ROWS readings (at start, on the journal thread)."""
        top = db.execute("SELECT COALESCE(MAX(id), 0) FROM readings").fetchone()[0]
        rows = db.execute(
            "SELECT sensor, MAX(ts_ns) FROM readings WHERE id > ? GROUP BY sensor",
            (int(top) - WINDOW_ROWS,),
        ).fetchall()
        self._marks = {str(sensor): int(ts) for sensor, ts in rows}

    def behind(self, readings: Sequence[Reading]) -> list[int] | None:
        """Advance the marks; the indexes of readings at or behind theirs (None: none).

        None is the common case, and then the readings are new and taken as they are.
        """
        marks = self._marks
        found: list[int] | None = None
        for i, r in enumerate(readings):
            mark = marks.get(r.sensor)
            if mark is None or r.ts_ns > mark:
                marks[r.sensor] = r.ts_ns
            else:
                if found is None:
                    found = []
                found.append(i)
        if found is None:
            self._taken.append(readings)
        return found

    def resolve(
        self, db: sqlite3.Connection, readings: Sequence[Reading], behind: list[int]
    ) -> Screened:
        """Sort a delivery with readings behind their marks (on the journal thread)."""
        out = Screened([])
        fresh: list[Reading] = []
        in_batch: dict[tuple[str, int], Reading] = {
            (r.sensor, r.ts_ns): r for taken in self._taken for r in taken
        }
        check = set(behind)
        for i, r in enumerate(readings):
            key = (r.sensor, r.ts_ns)
            first = in_batch.get(key)
            stored: _Value | None
            if first is not None:
                stored = _value(first)
            elif i in check:
                row = db.execute(
                    "SELECT temp_c, rh, battery_v, seq, source FROM readings"
                    " WHERE ts_ns = ? AND sensor = ? ORDER BY id LIMIT 1",
                    (r.ts_ns, r.sensor),
                ).fetchone()
                stored = tuple(row) if row else None
            else:
                stored = None
            if stored is None:
                in_batch[key] = r
                fresh.append(r)
            elif stored == _value(r):
                out.duplicates.append(r)
            else:
                out.conflicting.append(r)
                out.conflicts.append(_conflict(r, stored))
        out.fresh = fresh
        self._taken.append(fresh)
        return out

    def committed(self) -> None:
        """The open batch is journaled: its readings are found by lookup from now on."""
        self._taken = []


def _conflict(r: Reading, stored: _Value) -> Reject:
    """The dead letter of a refused reading: what came, and what the journal holds."""
    names = ("temp_c", "rh", "battery_v", "seq", "source")
    new = _value(r)
    differs = ", ".join(
        f"{name} {old!r} -> {value!r}"
        for name, old, value in zip(names, stored, new, strict=True)
        if old != value
    )
    raw = json.dumps(
        {
            "sensor": r.sensor,
            "ts_ns": r.ts_ns,
            "received_ns": r.received_ns,
            **dict(zip(names, new, strict=True)),
        }
    ).encode()
    return Reject(
        reason=CONFLICTING_DUPLICATE,
        source=r.source,
        raw=raw,
        detail=f"sensor {r.sensor!r} at ts_ns {r.ts_ns} already journaled; {differs}"[:500],
        dead_letter=True,
    )
