"""Alert lifecycle: deterministic ids, raised -> acknowledged -> cleared, journaled.

An alert is identified by ``(rule, subject)`` plus the time its condition started, so the
same excursion re-detected after a restart gets the same id. At most one alert per
``(hub, rule, subject)`` is active (raised or acknowledged) at a time; a partial unique
index in SQLite enforces it, so a restarted gateway sees its active alerts and does not
raise them again.

Every state change appends a row to ``alert_events``, the outbox that sinks (InfluxDB,
the MQTT planner feed) read behind their own cursors with :meth:`AlertStore.events_after`.
Each event carries a snapshot of the alert as it was right after the change.

The store is synchronous and uses the journal's connection (``isolation_level=None``)
from the journal thread only; every method is one ``BEGIN IMMEDIATE`` transaction.

Payload builders are pure functions: :func:`event_payload` for the ``events`` stream,
:func:`retained_payload` for ``alerts/{id}``, :func:`status_payload` for ``status`` and
:func:`alert_line` for the InfluxDB ``alert`` measurement. Their JSON Schemas live in
``docs/schemas/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from gateway.core.clock import iso_utc
from gateway.core.errors import GatewayError
from gateway.core.text import NAME_MAX_CHARS, NOTE_MAX_CHARS, text_problem
from gateway.journal.tx import immediate


class Severity(StrEnum):
    """How bad an alert is; ordered info < warning < critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the escalation order (info 0, warning 1, critical 2)."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(StrEnum):
    """Lifecycle state: raised -> acknowledged -> cleared (raised -> cleared also allowed)."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class EventKind(StrEnum):
    """What happened to an alert; one outbox event per change."""

    RAISED = "raised"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


ACTIVE_STATES = frozenset({AlertState.RAISED, AlertState.ACKNOWLEDGED})


class AlertError(GatewayError):
    """An alert operation that cannot be done."""


class UnknownAlert(AlertError, KeyError):
    """No alert with this id."""

    def __str__(self) -> str:
        """The plain message (KeyError would quote it)."""
        return str(self.args[0]) if self.args else "unknown alert"


class AlertAlreadyCleared(AlertError):
    """The alert has cleared; it can no longer be acknowledged."""


def alert_id(hub: str, rule: str, subject: str, started_ns: int) -> str:
    """Deterministic id ``{rule}-{16 hex of sha256("hub|rule|subject|started_ns")}``."""
    digest = hashlib.sha256(f"{hub}|{rule}|{subject}|{int(started_ns)}".encode()).hexdigest()
    return f"{rule}-{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as stored: identity, severity, state and the times of each change."""

    id: str
    hub: str
    rule: str
    subject: str
    severity: Severity
    state: AlertState
    started_ns: int
    raised_ns: int
    value: float | None = None
    limit: float | None = None
    message: str = ""
    acknowledged_by: str | None = None
    acknowledged_ns: int | None = None
    cleared_ns: int | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True while raised or acknowledged."""
        return self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One outbox entry: what happened, when, and the alert right after the change."""

    alert_id: str
    kind: EventKind
    at_ns: int
    alert: Alert
    note: str = ""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    hub TEXT NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    raised_ns INTEGER NOT NULL,
    value REAL,
    limit_value REAL,
    message TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_ns INTEGER,
    cleared_ns INTEGER,
    details TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active
    ON alerts (hub, rule, subject) WHERE state IN ('raised', 'acknowledged');
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id);
"""

_COLUMNS = (
    "id, hub, rule, subject, severity, state, started_ns, raised_ns, value, limit_value,"
    " message, acknowledged_by, acknowledged_ns, cleared_ns, details"
)


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _details_json(details: Mapping[str, object] | None) -> str:
    try:
        return json.dumps(dict(details or {}), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        msg = f"alert details must be JSON-serialisable (no NaN): {exc}"
        raise AlertError(msg) from exc


def _row_to_alert(row: Sequence[Any]) -> Alert:
    return Alert(
        id=row[0],
        hub=row[1],
        rule=row[2],
        subject=row[3],
        severity=Severity(row[4]),
        state=AlertState(row[5]),
        started_ns=row[6],
        raised_ns=row[7],
        value=row[8],
        limit=row[9],
        message=row[10],
        acknowledged_by=row[11],
        acknowledged_ns=row[12],
        cleared_ns=row[13],
        details=json.loads(row[14]),
    )


def _alert_to_json(alert: Alert) -> dict[str, object]:
    data = asdict(alert)
    data["severity"] = str(alert.severity)
    data["state"] = str(alert.state)
    return data


def _alert_from_json(data: Mapping[str, Any]) -> Alert:
    return Alert(
        id=data["id"],
        hub=data["hub"],
        rule=data["rule"],
        subject=data["subject"],
        severity=Severity(data["severity"]),
        state=AlertState(data["state"]),
        started_ns=data["started_ns"],
        raised_ns=data["raised_ns"],
        value=data.get("value"),
        limit=data.get("limit"),
        message=data.get("message", ""),
        acknowledged_by=data.get("acknowledged_by"),
        acknowledged_ns=data.get("acknowledged_ns"),
        cleared_ns=data.get("cleared_ns"),
        details=dict(data.get("details") or {}),
    )


class AlertStore:
    """Alerts and their outbox in the journal's SQLite connection; one thread, sync calls."""

    def __init__(self, db: sqlite3.Connection, hub: str) -> None:
        if not hub:
            msg = "AlertStore needs a hub id"
            raise AlertError(msg)
        self._db = db
        self.hub = hub
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        if self._db.in_transaction:  # inside transaction(): a savepoint of it
            cur = self._db.cursor()
            cur.execute("SAVEPOINT alert_store")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK TO alert_store")
                cur.execute("RELEASE alert_store")
                raise
            cur.execute("RELEASE alert_store")
            return
        with immediate(self._db) as cur:
            yield cur

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several store calls into one durable transaction (one fsync for all)."""
        with self._tx():
            yield

    def _select(self, cur: sqlite3.Cursor, where: str, params: Sequence[object]) -> list[Alert]:
        rows = cur.execute(f"SELECT {_COLUMNS} FROM alerts WHERE {where}", params).fetchall()
        return [_row_to_alert(r) for r in rows]

    def _active_for(self, cur: sqlite3.Cursor, rule: str, subject: str) -> Alert | None:
        found = self._select(
            cur,
            "hub = ? AND rule = ? AND subject = ? AND state IN ('raised', 'acknowledged')",
            (self.hub, rule, subject),
        )
        return found[0] if found else None

    def _by_id(self, cur: sqlite3.Cursor, aid: str) -> Alert | None:
        found = self._select(cur, "id = ?", (aid,))
        return found[0] if found else None

    @staticmethod
    def _append(
        cur: sqlite3.Cursor, alert: Alert, kind: EventKind, at_ns: int, note: str = ""
    ) -> None:
        payload = {"alert": _alert_to_json(alert), "note": note}
        cur.execute(
            "INSERT INTO alert_events (alert_id, kind, at_ns, payload) VALUES (?, ?, ?, ?)",
            (alert.id, str(kind), int(at_ns), json.dumps(payload, allow_nan=False)),
        )

    @staticmethod
    def _write(cur: sqlite3.Cursor, alert: Alert, *, insert: bool) -> None:
        values = (
            alert.hub,
            alert.rule,
            alert.subject,
            str(alert.severity),
            str(alert.state),
            alert.started_ns,
            alert.raised_ns,
            alert.value,
            alert.limit,
            alert.message,
            alert.acknowledged_by,
            alert.acknowledged_ns,
            alert.cleared_ns,
            _details_json(alert.details),
        )
        if insert:
            cur.execute(
                f"INSERT INTO alerts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)",
                (alert.id, *values),
            )
        else:
            cur.execute(
                "UPDATE alerts SET hub = ?, rule = ?, subject = ?, severity = ?, state = ?,"
                " started_ns = ?, raised_ns = ?, value = ?, limit_value = ?, message = ?,"
                " acknowledged_by = ?, acknowledged_ns = ?, cleared_ns = ?, details = ?"
                " WHERE id = ?",
                (*values, alert.id),
            )

    def raise_alert(
        self,
        rule: str,
        subject: str,
        severity: Severity,
        started_ns: int,
        raised_ns: int,
        value: float | None = None,
        limit: float | None = None,
        message: str = "",
        details: Mapping[str, object] | None = None,
    ) -> tuple[Alert, bool]:
        """Raise (or escalate) the alert for rule+subject; (alert, True) if an event was added.

        An active alert for the same rule and subject is returned unchanged with False,
        unless ``severity`` is higher: then it is escalated in place (same id) and an
        ``escalated`` event is appended; an acknowledged alert goes back to raised, because
        the acknowledgement was for the lesser alert (someone must own the worse one). A
        cleared alert with the same deterministic id (the same excursion re-detected, e.g.
        on replay) is returned with False.
        """
        sev = Severity(severity)
        details_dict: dict[str, object] = dict(details or {})
        _details_json(details_dict)  # refuse bad details before touching the database
        with self._tx() as cur:
            existing = self._active_for(cur, rule, subject)
            if existing is not None:
                if sev.rank <= existing.severity.rank:
                    return existing, False
                escalated = replace(
                    existing,
                    state=AlertState.RAISED,
                    acknowledged_by=None,
                    acknowledged_ns=None,
                    severity=sev,
                    value=finite_or_none(value),
                    limit=finite_or_none(limit),
                    message=message or existing.message,
                    details={**existing.details, **details_dict},
                )
                self._write(cur, escalated, insert=False)
                self._append(cur, escalated, EventKind.ESCALATED, raised_ns)
                return escalated, True
            aid = alert_id(self.hub, rule, subject, started_ns)
            previous = self._by_id(cur, aid)
            if previous is not None:
                return previous, False
            alert = Alert(
                id=aid,
                hub=self.hub,
                rule=rule,
                subject=subject,
                severity=sev,
                state=AlertState.RAISED,
                started_ns=int(started_ns),
                raised_ns=int(raised_ns),
                value=finite_or_none(value),
                limit=finite_or_none(limit),
                message=message,
                details=details_dict,
            )
            self._write(cur, alert, insert=True)
            self._append(cur, alert, EventKind.RAISED, raised_ns)
            return alert, True

    def acknowledge(
        self, alert_id: str, by: str, at_ns: int, note: str = "", signer: str | None = None
    ) -> Alert:
        """Acknowledge an active alert; idempotent; UnknownAlert / AlertAlreadyCleared.

        ``by`` is who says they acknowledged; ``signer`` the enrolled key that signed the
        command, when it was signed (kept in the alert's details as ``acknowledged_key``).
        """
        if not by:
            msg = "an acknowledgement needs a name (who acknowledged)"
            raise AlertError(msg)
        for field_name, value, limit in (
            ("by", by, NAME_MAX_CHARS),
            ("note", note, NOTE_MAX_CHARS),
        ):
            problem = text_problem(value) if len(value) <= limit else f"over {limit} characters"
            if problem is not None:
                msg = f"{field_name}: {problem}"
                raise AlertError(msg)
        with self._tx() as cur:
            alert = self._by_id(cur, alert_id)
            if alert is None or alert.hub != self.hub:
                msg = f"no alert with id {alert_id!r} on hub {self.hub!r}"
                raise UnknownAlert(msg)
            if alert.state is AlertState.CLEARED:
                msg = f"alert {alert_id} cleared at {iso_utc(alert.cleared_ns or 0)}; cannot ack"
                raise AlertAlreadyCleared(msg)
            if alert.state is AlertState.ACKNOWLEDGED:
                return alert
            details = (
                alert.details if signer is None else {**alert.details, "acknowledged_key": signer}
            )
            acked = replace(
                alert,
                state=AlertState.ACKNOWLEDGED,
                acknowledged_by=by,
                acknowledged_ns=at_ns,
                details=details,
            )
            self._write(cur, acked, insert=False)
            self._append(cur, acked, EventKind.ACKNOWLEDGED, at_ns, note)
            return acked

    def clear(
        self, rule: str, subject: str, at_ns: int, value: float | None = None, note: str = ""
    ) -> Alert | None:
        """Clear the active alert for rule+subject (value: the clearing reading); None if none.

        ``note`` goes on the cleared event, e.g. a dwell alert withdrawn because the step
        was recorded late but happened in time (the details say ``withdrawn`` too).
        """
        with self._tx() as cur:
            alert = self._active_for(cur, rule, subject)
            if alert is None:
                return None
            cleared = replace(
                alert,
                state=AlertState.CLEARED,
                cleared_ns=int(at_ns),
                value=alert.value if value is None else finite_or_none(value),
                details={**alert.details, "withdrawn": note} if note else alert.details,
            )
            self._write(cur, cleared, insert=False)
            self._append(cur, cleared, EventKind.CLEARED, at_ns, note)
            return cleared

    def active(self) -> list[Alert]:
        """Active (raised or acknowledged) alerts of this hub, oldest start first."""
        cur = self._db.cursor()
        return self._select(
            cur,
            "hub = ? AND state IN ('raised', 'acknowledged') ORDER BY started_ns, id",
            (self.hub,),
        )

    def recent_cleared(self, limit: int) -> list[Alert]:
        """The last ``limit`` cleared alerts of this hub, newest clear first."""
        cur = self._db.cursor()
        return self._select(
            cur,
            "hub = ? AND state = 'cleared' ORDER BY cleared_ns DESC, id LIMIT ?",
            (self.hub, int(limit)),
        )

    def get(self, alert_id: str) -> Alert | None:
        """The alert with this id (any state), or None."""
        alert = self._by_id(self._db.cursor(), alert_id)
        return alert if alert is not None and alert.hub == self.hub else None

    def events_after(self, event_id: int, limit: int) -> list[tuple[int, AlertEvent]]:
        """Outbox events with id > event_id, oldest first, at most limit."""
        rows = self._db.execute(
            "SELECT id, alert_id, kind, at_ns, payload FROM alert_events WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (event_id, limit),
        ).fetchall()
        out: list[tuple[int, AlertEvent]] = []
        for eid, aid, kind, at_ns, payload in rows:
            data = json.loads(payload)
            event = AlertEvent(
                alert_id=aid,
                kind=EventKind(kind),
                at_ns=at_ns,
                alert=_alert_from_json(data["alert"]),
                note=data.get("note", ""),
            )
            out.append((int(eid), event))
        return out

    def last_event_id(self) -> int:
        """Id of the newest outbox event (0 when there is none)."""
        row = self._db.execute("SELECT MAX(id) FROM alert_events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
