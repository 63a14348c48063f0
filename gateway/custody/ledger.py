"""The custody ledger: every custody event recorded, the shipments' state, the hash chain.

The :class:`CustodyLedger` checks an event (``gateway.custody.events``) against the hub's
zones and profiles and the shipment's last accepted event, then records it. Every event is
recorded: accepted ones drive the shipment's state, rejected ones stay as exception rows
with their reason and are raised to the caller as ``CustodyRejected``.

A shipment is *open* (in the hub's custody) after any accepted event except
``handed_to_carrier``. Its custody intervals run from one accepted event to the next, in
the zone the earlier event names; ``handed_to_carrier`` ends the last one.

The ledger uses a connection with ``isolation_level=None`` (the journal's) from one thread;
each method is one ``BEGIN IMMEDIATE`` transaction. Another process (the CLI while the daemon
runs) only writes to the inbox (:meth:`CustodyLedger.submit_to_inbox`); the daemon applies
inbox rows with :meth:`CustodyLedger.process_inbox`. The tables are the state: a new ledger on
the same file rebuilds everything from them.

Each accepted event is also a handoff record (``gateway.custody.chain``): its row gets the hub, the
next per-hub ``seq``, the zone temperature at handoff (``temp_c``, from the caller), the
previous record's hash and its own, in the same transaction as the event. Custody
transactions always commit with ``synchronous=FULL`` (even on a journal opened with
``normal``): a handoff is on disk before the caller acknowledges it. Rejected rows get no
seq or hash. A journal from before the chain is migrated when a ledger opens it: the columns
are added and the accepted rows already there are chained in id order (``temp_c`` unknown).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from gateway.core.clock import NS_PER_S, iso_utc
from gateway.core.errors import JournalError
from gateway.custody.chain import GENESIS_HASH, HandoffRecord, normalize_temp, record_hash
from gateway.custody.events import (
    FIRST_KIND,
    NOTE_MAX_CHARS,
    CustodyEvent,
    CustodyInterval,
    CustodyKind,
    CustodyRecord,
    CustodyRejected,
    InboxStatus,
    RejectReason,
    ShipmentState,
    check_transition,
    from_json,
)
from gateway.journal.tx import immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS custody_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    ts_ns INTEGER,
    shipment TEXT,
    kind TEXT,
    zone TEXT,
    actor TEXT,
    carrier TEXT,
    profile TEXT,
    note TEXT,
    reason TEXT,
    detail TEXT,
    payload TEXT,
    hub TEXT,
    seq INTEGER,
    temp_c REAL,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS custody_events_shipment
    ON custody_events (shipment, accepted, id);
CREATE TABLE IF NOT EXISTS custody_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submitted_ns INTEGER NOT NULL,
    payload BLOB NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    processed_ns INTEGER,
    record_id INTEGER
);
CREATE INDEX IF NOT EXISTS custody_inbox_pending ON custody_inbox (processed, id);
"""

_RECORD_COLUMNS = (
    "id, recorded_ns, source, accepted, ts_ns, shipment, kind, zone, actor, carrier, profile,"
    " note, reason, detail, payload, seq, temp_c, prev_hash, hash, signer"
)

# Added by the hash chain; a journal created before it gets them with ALTER TABLE.
_CHAIN_COLUMNS = (
    ("hub", "TEXT"),
    ("seq", "INTEGER"),
    ("temp_c", "REAL"),
    ("prev_hash", "TEXT"),
    ("hash", "TEXT"),
    # The enrolled key that signed the command (gateway.commands.signed); NULL: unsigned.
    ("signer", "TEXT"),
)
_CHAIN_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS custody_events_seq ON custody_events (seq)"
    " WHERE seq IS NOT NULL"
)
_HANDOFF_COLUMNS = (
    "hub, seq, shipment, kind, zone, actor, carrier, profile, note, ts_ns, temp_c, prev_hash, hash,"
    " signer"
)

TempOf = Callable[[str], float | None]
"""The zone's current temperature (None when unknown), asked when an event is accepted."""


def _handoff(row: Iterable[Any]) -> HandoffRecord:
    r = list(row)
    return HandoffRecord(
        hub=r[0],
        seq=int(r[1]),
        shipment=r[2],
        event=r[3],
        zone=r[4],
        actor=r[5],
        carrier=r[6],
        profile=r[7],
        note=r[8],
        ts_ns=int(r[9]),
        temp_c=None if r[10] is None else float(r[10]),
        prev_hash=r[11],
        hash=r[12],
        signer=r[13],
    )


def _record(row: Iterable[Any]) -> CustodyRecord:
    r = list(row)
    r[3] = bool(r[3])
    return CustodyRecord(*r)


class CustodyLedger:
    """Validates and records custody events; the shipment state is rebuilt from its tables."""

    def __init__(
        self,
        db: sqlite3.Connection,
        hub: str,
        zones: Collection[str],
        profiles: Collection[str],
        *,
        readonly: bool = False,
        max_future_s: float | None = None,
    ) -> None:
        if db.isolation_level is not None:
            msg = "CustodyLedger needs a connection opened with isolation_level=None"
            raise ValueError(msg)
        self._db = db
        self.hub = hub
        self.zones = frozenset(zones)
        self.profiles = frozenset(profiles)
        # An event dated further than this after the receive time is refused future_time
        # (a "received" dated 2099 would lock the shipment against every real handoff).
        self._max_future_ns = None if max_future_s is None else int(max_future_s * NS_PER_S)
        if not readonly:  # a read-only reader (verify, trace) finds the tables as they are
            self._db.executescript(_SCHEMA)
            self._migrate()
        self._open: dict[str, ShipmentState] = {}
        try:
            self.reload()
            if readonly:
                self.handoff_records_after(0, 1)  # the chain's columns are there
        except sqlite3.OperationalError as exc:
            if not readonly:
                raise
            msg = (
                f"the journal has no custody chain this version can read ({exc}): it was"
                " written by an older gateway; the running daemon migrates it on start"
            )
            raise JournalError(msg) from exc

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        try:
            # A journal opened with synchronous=normal is raised to FULL for the custody
            # transaction only: a handoff is on disk before the caller acknowledges it.
            with immediate(self._db, durable=True) as cur:
                yield cur
        except sqlite3.Error as exc:
            msg = f"custody ledger write failed: {exc}"
            raise JournalError(msg) from exc

    def _migrate(self) -> None:
        """Add the chain columns to an older journal and chain its accepted rows."""
        with self._tx() as cur:
            have = {row[1] for row in cur.execute("PRAGMA table_info(custody_events)")}
            missing = [(n, t) for n, t in _CHAIN_COLUMNS if n not in have]
            for name, sql_type in missing:
                cur.execute(f"ALTER TABLE custody_events ADD COLUMN {name} {sql_type}")
            cur.execute(_CHAIN_INDEX)
            if not missing:
                return
            # Rows from before the chain: link them in the order they were recorded. Only
            # done when the columns are new, so a row whose seq is erased later stays a gap.
            rows = cur.execute(
                "SELECT id, shipment, kind, zone, actor, carrier, profile, note, ts_ns"
                " FROM custody_events WHERE accepted = 1 AND seq IS NULL ORDER BY id"
            ).fetchall()
            for row in rows:
                self._chain(cur, row[0], *row[1:], temp_c=None)

    def reload(self) -> None:
        """Rebuild the in-memory index of open shipments from the tables."""
        rows = self._db.execute(
            "SELECT e.shipment FROM custody_events e JOIN (SELECT max(id) AS id"
            " FROM custody_events WHERE accepted = 1 GROUP BY shipment) m ON e.id = m.id"
            " WHERE e.kind != ?",
            (CustodyKind.HANDED_TO_CARRIER.value,),
        ).fetchall()
        cur = self._db.cursor()
        self._open = {}
        for (shipment,) in rows:
            state = self._state_from_db(cur, shipment)
            if state is not None and state.open:
                self._open[shipment] = state

    # -- applying events ---------------------------------------------------------------

    def apply(
        self,
        event: CustodyEvent,
        *,
        now_ns: int | None = None,
        source: str = "mqtt",
        temp_c: float | None = None,
    ) -> ShipmentState:
        """Validate and record an event; returns the new state or raises CustodyRejected.

        A rejected event is committed as an exception row before the error is raised.
        ``now_ns`` (the gateway's receive time) defaults to the event time; ``temp_c`` is
        the zone temperature at the handoff (None: unknown), kept in the handoff record.
        """
        recorded_ns = event.ts_ns if now_ns is None else now_ns
        with self._tx() as cur:
            outcome = self._apply_in_tx(cur, event, recorded_ns, source, None, _fixed(temp_c))
        return self._finish(outcome)

    def apply_payload(
        self,
        payload: bytes | str,
        *,
        now_ns: int,
        source: str = "mqtt",
        temp_c: float | None = None,
        signer: str | None = None,
    ) -> ShipmentState:
        """Parse and apply a wire payload; a malformed one is recorded with its raw text too.

        ``signer`` is the enrolled key that signed the command (None: unsigned), recorded
        beside the self-declared ``actor`` and covered by the record's hash.
        """
        with self._tx() as cur:
            outcome = self._apply_payload_in_tx(
                cur, payload, now_ns, source, _fixed(temp_c), signer
            )
        return self._finish(outcome)

    def _apply_payload_in_tx(
        self,
        cur: sqlite3.Cursor,
        payload: bytes | str,
        now_ns: int,
        source: str,
        temp_of: TempOf,
        signer: str | None = None,
    ) -> ShipmentState | CustodyRejected:
        raw = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        try:
            event = from_json(payload)
        except CustodyRejected as exc:
            exc.record_id = self._insert(
                cur,
                None,
                now_ns,
                source,
                exc.reason,
                exc.detail,
                raw,
                data=_loose(raw),
                signer=signer,
            )
            return exc
        return self._apply_in_tx(cur, event, now_ns, source, raw, temp_of, signer)

    def _finish(self, outcome: ShipmentState | CustodyRejected) -> ShipmentState:
        if isinstance(outcome, CustodyRejected):
            raise outcome
        if outcome.open:
            self._open[outcome.shipment] = outcome
        else:
            self._open.pop(outcome.shipment, None)
        return outcome

    def _apply_in_tx(
        self,
        cur: sqlite3.Cursor,
        event: CustodyEvent,
        recorded_ns: int,
        source: str,
        raw: str | None,
        temp_of: TempOf,
        signer: str | None = None,
    ) -> ShipmentState | CustodyRejected:
        before = self._state_from_db(cur, event.shipment)
        if before is not None and self._is_redelivery(cur, before, event):
            return replace(before, duplicate=True)
        problem = self._future(event, recorded_ns) or self._check(before, event)
        if problem is not None:
            reason, detail = problem
            record_id = self._insert(
                cur, event, recorded_ns, source, reason, detail, raw, signer=signer
            )
            return CustodyRejected(reason, detail, event=event, record_id=record_id)
        record_id = self._insert(cur, event, recorded_ns, source, None, None, raw, signer=signer)
        self._chain(
            cur,
            record_id,
            event.shipment,
            event.kind.value,
            event.zone,
            event.actor,
            event.carrier,
            event.profile,
            event.note,
            event.ts_ns,
            temp_c=temp_of(event.zone),
            signer=signer,
        )
        return ShipmentState(
            shipment=event.shipment,
            zone=event.zone,
            kind=event.kind,
            since_ns=event.ts_ns,
            profile=event.profile or (before.profile if before else None),
            carrier=event.carrier or (before.carrier if before else None),
            first_ns=before.first_ns if before else event.ts_ns,
            event_id=record_id,
        )

    def _future(self, event: CustodyEvent, now_ns: int) -> tuple[RejectReason, str] | None:
        limit = self._max_future_ns
        if limit is None or event.ts_ns <= now_ns + limit:
            return None
        ahead_s = (event.ts_ns - now_ns) / NS_PER_S
        return (
            "future_time",
            f"event time {iso_utc(event.ts_ns)} is {ahead_s:.0f} s after the hub's clock"
            f" (at most {limit // NS_PER_S} s allowed)",
        )

    def _check(
        self, before: ShipmentState | None, event: CustodyEvent
    ) -> tuple[RejectReason, str] | None:
        if event.zone not in self.zones:
            return "unknown_zone", f"zone {event.zone!r} is not configured at hub {self.hub}"
        if event.profile is not None and event.profile not in self.profiles:
            return "unknown_profile", f"profile {event.profile!r} is not configured"
        if before is None:
            if event.kind is FIRST_KIND:
                return None
            return (
                "unknown_shipment",
                f"shipment {event.shipment!r} has no accepted events; the first must be"
                f" {FIRST_KIND.value}, got {event.kind.value}",
            )
        return check_transition(before, event)

    def _is_redelivery(
        self, cur: sqlite3.Cursor, before: ShipmentState, event: CustodyEvent
    ) -> bool:
        # A QoS 1 redelivery or a replayed inbox row repeats the last event exactly; it is
        # already recorded and must not turn into an invalid_transition exception.
        if event.kind is not before.kind or event.ts_ns != before.since_ns:
            return False
        row = cur.execute(
            "SELECT zone, actor, carrier, profile, note FROM custody_events WHERE id = ?",
            (before.event_id,),
        ).fetchone()
        return tuple(row) == (event.zone, event.actor, event.carrier, event.profile, event.note)

    def _insert(
        self,
        cur: sqlite3.Cursor,
        event: CustodyEvent | None,
        recorded_ns: int,
        source: str,
        reason: str | None,
        detail: str | None,
        raw: str | None,
        data: Mapping[str, Any] | None = None,
        *,
        signer: str | None = None,
    ) -> int:
        if event is not None:
            values: tuple[Any, ...] = (
                event.ts_ns,
                event.shipment,
                event.kind.value,
                event.zone,
                event.actor,
                event.carrier,
                event.profile,
                event.note,
            )
        else:
            # Keep what can be read of a malformed payload for the exception report;
            # only plain strings, truncated, never trusted.
            d = data or {}
            values = (
                None,
                _str_or_none(d.get("shipment"), 64),
                _str_or_none(d.get("event", d.get("kind")), 32),
                _str_or_none(d.get("zone"), 64),
                _str_or_none(d.get("actor"), 128),
                _str_or_none(d.get("carrier"), 128),
                _str_or_none(d.get("profile"), 64),
                _str_or_none(d.get("note"), NOTE_MAX_CHARS),
            )
        cur.execute(
            "INSERT INTO custody_events (recorded_ns, source, accepted, ts_ns, shipment, kind,"
            " zone, actor, carrier, profile, note, reason, detail, payload, signer)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (recorded_ns, source, int(reason is None), *values, reason, detail, raw, signer),
        )
        return int(cur.lastrowid or 0)

    def _chain(
        self,
        cur: sqlite3.Cursor,
        record_id: int,
        shipment: str,
        kind: str,
        zone: str,
        actor: str,
        carrier: str | None,
        profile: str | None,
        note: str | None,
        ts_ns: int,
        *,
        temp_c: float | None,
        signer: str | None = None,
    ) -> HandoffRecord:
        """Make an accepted row the next handoff record (inside the caller's transaction)."""
        last = cur.execute(
            "SELECT seq, hash FROM custody_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        record = HandoffRecord(
            hub=self.hub,
            seq=seq,
            shipment=shipment,
            event=kind,
            zone=zone,
            actor=actor,
            carrier=carrier,
            profile=profile,
            note=note,
            ts_ns=int(ts_ns),
            temp_c=normalize_temp(temp_c),
            prev_hash=prev_hash,
            hash="",
            signer=signer,
        )
        record = replace(record, hash=record_hash(record.fields()))
        cur.execute(
            "UPDATE custody_events SET hub = ?, seq = ?, temp_c = ?, prev_hash = ?, hash = ?"
            " WHERE id = ?",
            (self.hub, seq, record.temp_c, prev_hash, record.hash, record_id),
        )
        return record

    def _records(self, where: str, params: tuple[object, ...]) -> list[CustodyRecord]:
        """Rows of custody_events matching ``where`` (with its ORDER/LIMIT), as records."""
        rows = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM custody_events WHERE {where}", params
        ).fetchall()
        return [_record(r) for r in rows]

    # -- handoff records (the hash chain) ----------------------------------------------

    def handoff_records_after(self, position: int, limit: int = 1000) -> list[HandoffRecord]:
        """Handoff records with seq > position, by seq (the InfluxDB stream, verification)."""
        rows = self._db.execute(
            f"SELECT {_HANDOFF_COLUMNS} FROM custody_events WHERE seq > ? ORDER BY seq LIMIT ?",
            (position, limit),
        ).fetchall()
        return [_handoff(r) for r in rows]

    def handoff_record(self, seq: int) -> HandoffRecord | None:
        """The handoff record with this seq, or None."""
        row = self._db.execute(
            f"SELECT {_HANDOFF_COLUMNS} FROM custody_events WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else _handoff(row)

    def last_seq(self) -> int:
        """The newest handoff record's seq (0 while the chain is empty)."""
        row = self._db.execute("SELECT max(seq) FROM custody_events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def unchained(self, limit: int = 100) -> list[CustodyRecord]:
        """Accepted rows without a handoff record (only ever seen after tampering)."""
        return self._records(
            "accepted = 1 AND seq IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )

    # -- reading state -----------------------------------------------------------------

    def _state_from_db(self, cur: sqlite3.Cursor, shipment: str) -> ShipmentState | None:
        rows = cur.execute(
            "SELECT id, ts_ns, kind, zone, carrier, profile FROM custody_events"
            " WHERE shipment = ? AND accepted = 1 ORDER BY id",
            (shipment,),
        ).fetchall()
        if not rows:
            return None
        profile = next((r[5] for r in rows if r[5] is not None), None)
        carrier = next((r[4] for r in reversed(rows) if r[4] is not None), None)
        last = rows[-1]
        return ShipmentState(
            shipment=shipment,
            zone=last[3],
            kind=CustodyKind(last[2]),
            since_ns=last[1],
            profile=profile,
            carrier=carrier,
            first_ns=rows[0][1],
            event_id=last[0],
        )

    def shipment(self, shipment_id: str) -> ShipmentState | None:
        """The shipment's current state, or None if it has no accepted event."""
        cached = self._open.get(shipment_id)
        if cached is not None:
            return cached
        return self._state_from_db(self._db.cursor(), shipment_id)

    def open_shipments(self) -> list[ShipmentState]:
        """Shipments the hub holds now, by shipment id."""
        return [self._open[s] for s in sorted(self._open)]

    def in_zone(self, zone: str) -> list[str]:
        """Ids of the open shipments whose last event puts them in this zone."""
        return sorted(s.shipment for s in self._open.values() if s.zone == zone)

    def history(self, shipment_id: str, *, include_rejected: bool = False) -> list[CustodyRecord]:
        """The shipment's records in the order they were recorded."""
        accepted = "" if include_rejected else " AND accepted = 1"
        return self._records(
            f"shipment = ?{accepted} ORDER BY id",
            (shipment_id,),
        )

    def intervals(self, shipment_id: str) -> list[CustodyInterval]:
        """Custody intervals (zone, start, end or None), consecutive same-zone spans merged."""
        out: list[CustodyInterval] = []
        for rec in self.history(shipment_id):
            assert rec.ts_ns is not None and rec.zone is not None
            if out and out[-1].end_ns is None:
                last = out[-1]
                if rec.kind != CustodyKind.HANDED_TO_CARRIER and rec.zone == last.zone:
                    continue
                out[-1] = last._replace(end_ns=rec.ts_ns)
            if rec.kind != CustodyKind.HANDED_TO_CARRIER:
                out.append(CustodyInterval(rec.zone, rec.ts_ns, None))
        return out

    def records_after(self, position: int, limit: int = 1000) -> list[CustodyRecord]:
        """Accepted and rejected records with id > position, oldest first (outbox readers)."""
        return self._records("id > ? ORDER BY id LIMIT ?", (position, limit))

    def rejected_after(self, position: int, limit: int = 100) -> list[CustodyRecord]:
        """Exception rows with id > position, oldest first (the planner's outbox)."""
        return self._records(
            "accepted = 0 AND id > ? ORDER BY id LIMIT ?",
            (position, limit),
        )

    def rejected(self, limit: int = 100) -> list[CustodyRecord]:
        """The most recent exception rows, newest first."""
        return self._records(
            "accepted = 0 ORDER BY id DESC LIMIT ?",
            (limit,),
        )

    # -- the inbox (CLI -> daemon) -----------------------------------------------------

    def submit_to_inbox(self, payload: bytes, now_ns: int) -> int:
        """Queue a raw payload for the daemon (any process); returns the inbox id."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO custody_inbox (submitted_ns, payload) VALUES (?, ?)",
                (now_ns, bytes(payload)),
            )
            return int(cur.lastrowid or 0)

    def take_inbox(self, limit: int = 100) -> list[tuple[int, bytes]]:
        """Unprocessed inbox rows, oldest first."""
        rows = self._db.execute(
            "SELECT id, payload FROM custody_inbox WHERE processed = 0 ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(i), bytes(p)) for i, p in rows]

    def mark_processed(self, ids: Iterable[int], now_ns: int | None = None) -> None:
        """Mark inbox rows done (when the caller applied them itself)."""
        with self._tx() as cur:
            cur.executemany(
                "UPDATE custody_inbox SET processed = 1, processed_ns = ? WHERE id = ?",
                [(now_ns, i) for i in ids],
            )

    def process_inbox(
        self, now_ns: int, limit: int = 100, *, temp_of: TempOf | None = None
    ) -> list[tuple[int, ShipmentState | CustodyRejected]]:
        """Apply pending inbox rows, each with its processed mark in one transaction.

        ``temp_of(zone)`` gives the zone temperature for each accepted handoff record.
        """
        resolve = temp_of if temp_of is not None else _fixed(None)
        results: list[tuple[int, ShipmentState | CustodyRejected]] = []
        for inbox_id, payload in self.take_inbox(limit):
            with self._tx() as cur:
                outcome = self._apply_payload_in_tx(cur, payload, now_ns, "cli", resolve)
                if isinstance(outcome, CustodyRejected):
                    record_id = outcome.record_id
                else:
                    record_id = outcome.event_id
                cur.execute(
                    "UPDATE custody_inbox SET processed = 1, processed_ns = ?, record_id = ?"
                    " WHERE id = ?",
                    (now_ns, record_id, inbox_id),
                )
            if not isinstance(outcome, CustodyRejected):
                self._finish(outcome)
            results.append((inbox_id, outcome))
        return results

    def inbox_status(self, inbox_id: int) -> InboxStatus | None:
        """Whether the daemon has applied an inbox row and with what result (CLI feedback)."""
        row = self._db.execute(
            "SELECT id, submitted_ns, processed, record_id FROM custody_inbox WHERE id = ?",
            (inbox_id,),
        ).fetchone()
        if row is None:
            return None
        record = None
        if row[3] is not None:
            rec = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM custody_events WHERE id = ?", (row[3],)
            ).fetchone()
            record = None if rec is None else _record(rec)
        return InboxStatus(int(row[0]), int(row[1]), bool(row[2]), record)


def _fixed(temp_c: float | None) -> TempOf:
    def temp_of(_zone: str) -> float | None:
        return temp_c

    return temp_of


def _loose(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _str_or_none(value: Any, max_length: int) -> str | None:
    return value[:max_length] if isinstance(value, str) else None
