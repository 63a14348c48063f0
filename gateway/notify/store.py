"""The notification outbox and escalation state, in the journal (one thread, sync calls).

Three tables beside the alerts:

- ``notify_escalations``: one row per alert being escalated: its policy, the level due
  next and when (epoch ns from the injected clock). A restart reads it back and goes on
  at the right level; nothing is kept in memory that a SIGKILL could lose.
- ``notify_outbox``: one row per (alert, contact, channel) message to send, with its
  state ``pending -> sending -> sent`` (or ``failed`` after ``give_up_after_s``,
  ``cancelled`` when an ack or clear made it moot before it left, ``uncertain`` when a
  crash interrupted it twice). Rows sent together (a storm grouped into one message per
  contact channel) share a ``message_id`` that never changes once assigned: a retry,
  or the one re-send after a crash, carries the same id for the receiver to de-duplicate.
- ``notify_attempts``: every attempt and its result, per alert: the record ``coldchain
  alerts``, the claim report, InfluxDB (measurement ``notification``) and the planner feed
  read, the last two behind their own cursors.

The store reads alert changes from the alert outbox (``alert_events``) behind the cursor
``("notify", "alert_events")``; each batch of events and the cursor move commit in one
transaction, so an event is turned into escalation state exactly once.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gateway.alerts.store import Alert, AlertEvent, AlertState, AlertStore, EventKind, Severity
from gateway.core.clock import NS_PER_S
from gateway.journal.store import Journal
from gateway.journal.tx import immediate
from gateway.notify.config import NotifyConfig, PolicyConfig
from gateway.notify.policy import ack_code, alert_zone, match_policy, normalise_code, quiet_until

CURSOR_SINK: Final = "notify"
CURSOR_STREAM: Final = "alert_events"
EVENT_BATCH: Final = 200
LEVEL_KINDS: Final = ("raised", "escalated", "repeat")
REACHED_STATES: Final = ("sent", "sending", "uncertain")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_escalations (
    alert_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    base_ns INTEGER NOT NULL,
    next_level INTEGER NOT NULL,
    next_due_ns INTEGER,
    repeats INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_escalations_due ON notify_escalations (next_due_ns)
    WHERE state = 'active';
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    level INTEGER NOT NULL,
    contact TEXT NOT NULL,
    channel INTEGER NOT NULL,
    channel_name TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    not_before_ns INTEGER NOT NULL,
    next_try_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    message_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crash_resends INTEGER NOT NULL DEFAULT 0,
    sent_ns INTEGER,
    last_error TEXT,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_outbox_open ON notify_outbox (state, contact, channel);
CREATE INDEX IF NOT EXISTS notify_outbox_alert ON notify_outbox (alert_id);
CREATE INDEX IF NOT EXISTS notify_outbox_message ON notify_outbox (message_id);
CREATE TABLE IF NOT EXISTS notify_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    outbox_id INTEGER,
    contact TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    level INTEGER NOT NULL,
    message_id TEXT,
    at_ns INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_attempts_alert ON notify_attempts (alert_id);
CREATE TABLE IF NOT EXISTS notify_ack_codes (
    code TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL UNIQUE
);
"""


@dataclass(frozen=True, slots=True)
class OutRow:
    """One message to one contact channel about one alert (a row of the outbox)."""

    id: int
    alert_id: str
    kind: str
    level: int
    contact: str
    channel: int
    channel_name: str
    created_ns: int
    attempts: int
    crash_resends: int
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Group:
    """Rows that leave as one message on one contact channel, under one stable id."""

    message_id: str
    contact: str
    channel: int
    channel_name: str
    rows: tuple[OutRow, ...]
    resend_after_crash: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """One line of an alert's notification record."""

    id: int
    alert_id: str
    contact: str
    channel: str
    kind: str
    level: int
    message_id: str | None
    at_ns: int
    attempt: int
    result: str
    detail: str


@dataclass(slots=True)
class StartReport:
    """What :meth:`NotifyStore.start` found (logged by the service)."""

    first_start: bool = False
    adopted: list[str] = field(default_factory=list)  # active alerts taken on at first start
    resent: int = 0  # rows interrupted by a crash, sent once more with their id
    uncertain: int = 0  # rows interrupted twice: not sent again


def _item(alert: Alert, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": str(alert.severity),
        "state": str(alert.state),
        "message": alert.message,
        "started_ns": alert.started_ns,
        "raised_ns": alert.raised_ns,
        "value": alert.value,
        "limit": alert.limit,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_ns": alert.acknowledged_ns,
        "cleared_ns": alert.cleared_ns,
        "ack_code": code,
        **extra,
    }


class NotifyStore:
    """Escalation state and the notification outbox; every method is one transaction."""

    def __init__(
        self,
        journal: Journal,
        alerts: AlertStore,
        config: NotifyConfig,
        timezone: str,
        sensor_zones: Mapping[str, str],
        zones: set[str],
        rng: random.Random | None = None,
    ) -> None:
        self._journal = journal
        self._db: sqlite3.Connection = journal.connection
        self._alerts = alerts
        self.hub = alerts.hub
        self.config = config
        self.timezone = timezone
        self._sensor_zones = dict(sensor_zones)
        self._zones = set(zones)
        self._rng = rng or random.Random()
        self._db.executescript(_SCHEMA)

    # -- plumbing ----------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with immediate(self._db) as cur:
            yield cur

    def _policy(self, name: str) -> PolicyConfig | None:
        return next((p for p in self.config.policies if p.name == name), None)

    def _match(self, alert: Alert) -> PolicyConfig | None:
        zone = alert_zone(alert, self._sensor_zones, self._zones)
        return match_policy(self.config.policies, alert, zone)

    def _code(self, cur: sqlite3.Cursor, alert_id: str) -> str:
        row = cur.execute(
            "SELECT code FROM notify_ack_codes WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        if row:
            return str(row[0])
        attempt = 0
        while True:
            code = ack_code(alert_id, attempt)
            taken = cur.execute("SELECT 1 FROM notify_ack_codes WHERE code = ?", (code,)).fetchone()
            if not taken:
                cur.execute(
                    "INSERT INTO notify_ack_codes (code, alert_id) VALUES (?, ?)", (code, alert_id)
                )
                return code
            attempt += 1

    @staticmethod
    def _log(
        cur: sqlite3.Cursor,
        alert_id: str,
        at_ns: int,
        result: str,
        detail: str,
        *,
        row: OutRow | None = None,
        message_id: str | None = None,
        contact: str = "",
        channel: str = "",
        kind: str = "",
        level: int = 0,
    ) -> None:
        cur.execute(
            "INSERT INTO notify_attempts (alert_id, outbox_id, contact, channel, kind, level,"
            " message_id, at_ns, attempt, result, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (
                alert_id,
                row.id if row else None,
                row.contact if row else contact,
                row.channel_name if row else channel,
                row.kind if row else kind,
                row.level if row else level,
                message_id,
                int(at_ns),
                row.attempts if row else 0,
                result,
                detail[:1000],
            ),
        )

    def _quiet(self, policy: PolicyConfig | None, severity: str, at_ns: int) -> int | None:
        """End of quiet hours if this message must wait for them (warnings and info only)."""
        if policy is None or severity == str(Severity.CRITICAL):
            return None
        return quiet_until(policy.quiet_hours, self.timezone, at_ns)

    def _enqueue(
        self,
        cur: sqlite3.Cursor,
        alert: Alert,
        kind: str,
        level: int,
        targets: Sequence[tuple[str, int]],
        now_ns: int,
        not_before_ns: int,
        extra: Mapping[str, Any],
        policy: PolicyConfig | None,
    ) -> int:
        code = self._code(cur, alert.id)
        held = self._quiet(policy, str(alert.severity), not_before_ns)
        if held is not None:
            not_before_ns = max(not_before_ns, held)
        item = json.dumps(_item(alert, code, kind=kind, level=level, **extra), allow_nan=False)
        n = 0
        for contact_name, channel in targets:
            contact = self.config.contact(contact_name)
            if contact is None or channel >= len(contact.channels):
                continue
            cur.execute(
                "INSERT INTO notify_outbox (alert_id, kind, level, contact, channel,"
                " channel_name, created_ns, not_before_ns, next_try_ns, state, item) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    alert.id,
                    kind,
                    level,
                    contact_name,
                    channel,
                    contact.channels[channel].name,
                    now_ns,
                    not_before_ns,
                    not_before_ns,
                    item,
                ),
            )
            n += 1
        return n

    def _level_targets(self, policy: PolicyConfig, level: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for name in policy.levels[level].contacts:
            contact = self.config.contact(name)
            if contact is not None:
                out.extend((name, i) for i in range(len(contact.channels)))
        return out

    def _reached(self, cur: sqlite3.Cursor, alert_id: str) -> list[tuple[str, int]]:
        """Contact channels that got (or may have got) a level message of this alert."""
        marks = ",".join("?" for _ in REACHED_STATES)
        kinds = ",".join("?" for _ in LEVEL_KINDS)
        rows = cur.execute(
            "SELECT DISTINCT contact, channel FROM notify_outbox WHERE alert_id = ?"
            f" AND state IN ({marks}) AND kind IN ({kinds}) ORDER BY contact, channel",
            (alert_id, *REACHED_STATES, *LEVEL_KINDS),
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def _cancel_pending_levels(
        self, cur: sqlite3.Cursor, alert_id: str, why: str, now: int
    ) -> None:
        kinds = ",".join("?" for _ in LEVEL_KINDS)
        for row in self._rows(
            cur,
            f"alert_id = ? AND state = 'pending' AND kind IN ({kinds})",
            (alert_id, *LEVEL_KINDS),
        ):
            cur.execute("UPDATE notify_outbox SET state = 'cancelled' WHERE id = ?", (row.id,))
            self._log(cur, alert_id, now, "cancelled", why, row=row)

    @staticmethod
    def _rows(cur: sqlite3.Cursor, where: str, params: Sequence[object]) -> list[OutRow]:
        rows = cur.execute(
            "SELECT id, alert_id, kind, level, contact, channel, channel_name, created_ns,"
            f" attempts, crash_resends, item FROM notify_outbox WHERE {where} ORDER BY id",
            tuple(params),
        ).fetchall()
        return [
            OutRow(
                id=int(r[0]),
                alert_id=str(r[1]),
                kind=str(r[2]),
                level=int(r[3]),
                contact=str(r[4]),
                channel=int(r[5]),
                channel_name=str(r[6]),
                created_ns=int(r[7]),
                attempts=int(r[8]),
                crash_resends=int(r[9]),
                item=json.loads(r[10]),
            )
            for r in rows
        ]

    def _start_escalation(
        self, cur: sqlite3.Cursor, alert: Alert, base_ns: int, now_ns: int
    ) -> None:
        policy = self._match(alert)
        if policy is None:
            self._log(
                cur,
                alert.id,
                now_ns,
                "unrouted",
                f"no notify policy takes {alert.severity} {alert.rule} alerts on {alert.subject}",
            )
            return
        self._code(cur, alert.id)
        cur.execute(
            "INSERT INTO notify_escalations (alert_id, policy, base_ns, next_level, next_due_ns,"
            " repeats, state) VALUES (?, ?, ?, 0, ?, 0, 'active') ON CONFLICT (alert_id) DO"
            " UPDATE SET policy = excluded.policy, base_ns = excluded.base_ns, next_level = 0,"
            " next_due_ns = excluded.next_due_ns, repeats = 0, state = 'active'",
            (alert.id, policy.name, base_ns, base_ns + _ns(policy.levels[0].delay_s)),
        )

    def _stop_escalation(self, cur: sqlite3.Cursor, alert_id: str, state: str) -> str | None:
        row = cur.execute(
            "SELECT policy FROM notify_escalations WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        cur.execute(
            "UPDATE notify_escalations SET state = ?, next_due_ns = NULL WHERE alert_id = ?",
            (state, alert_id),
        )
        return str(row[0]) if row else None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, now_ns: int) -> StartReport:
        """At startup: adopt active alerts on a first start; recover crash-interrupted sends.

        A first start (no cursor yet: notifications newly configured, or a new journal)
        does not replay history: the cursor is set to the newest alert event and the
        active, unacknowledged alerts are escalated from now. A row still ``sending``
        was interrupted by a crash and may have gone out: it is sent once more with its
        message id (the receiver can de-duplicate); interrupted a second time, it is
        marked ``uncertain`` and not sent again.
        """
        report = StartReport()
        with self._tx() as cur:
            known = cur.execute(
                "SELECT 1 FROM cursors WHERE sink = ? AND stream = ?", (CURSOR_SINK, CURSOR_STREAM)
            ).fetchone()
            if not known:
                report.first_start = True
                self._journal.set_cursor(
                    CURSOR_SINK, CURSOR_STREAM, self._alerts.last_event_id(), now_ns
                )
                for alert in self._alerts.active():
                    if alert.state is AlertState.RAISED:
                        exists = cur.execute(
                            "SELECT 1 FROM notify_escalations WHERE alert_id = ?", (alert.id,)
                        ).fetchone()
                        if not exists:
                            self._start_escalation(cur, alert, now_ns, now_ns)
                            report.adopted.append(alert.id)
            for row in self._rows(cur, "state = 'sending'", ()):
                message_id = cur.execute(
                    "SELECT message_id FROM notify_outbox WHERE id = ?", (row.id,)
                ).fetchone()[0]
                if row.crash_resends == 0:
                    cur.execute(
                        "UPDATE notify_outbox SET state = 'pending', crash_resends = 1,"
                        " next_try_ns = ? WHERE id = ?",
                        (now_ns, row.id),
                    )
                    self._log(
                        cur,
                        row.alert_id,
                        now_ns,
                        "interrupted",
                        "a crash interrupted this send; it may have gone out: sending once"
                        " more with the same message id",
                        row=row,
                        message_id=message_id,
                    )
                    report.resent += 1
                else:
                    cur.execute(
                        "UPDATE notify_outbox SET state = 'uncertain' WHERE id = ?", (row.id,)
                    )
                    self._log(
                        cur,
                        row.alert_id,
                        now_ns,
                        "uncertain",
                        "interrupted by a crash twice; not sent again (it may have arrived)",
                        row=row,
                        message_id=message_id,
                    )
                    report.uncertain += 1
        return report

    def step(self, now_ns: int, max_events: int = 10 * EVENT_BATCH) -> tuple[int, list[Group]]:
        """One notifier round in one transaction: events in, due levels, due messages.

        (events read, messages claimed). One commit (one fsync) stands between an alert
        and its message leaving, instead of one per stage.
        """
        with self._tx() as cur:
            read = 0
            while read < max_events:
                n = self._ingest(cur, now_ns, EVENT_BATCH)
                read += n
                if n < EVENT_BATCH:
                    break
            self._fire_due(cur, now_ns)
            return read, self._claim(cur, now_ns)

    def ingest_events(self, now_ns: int, limit: int = EVENT_BATCH) -> int:
        """Turn alert events after the cursor into escalation state; returns how many."""
        with self._tx() as cur:
            return self._ingest(cur, now_ns, limit)

    def _ingest(self, cur: sqlite3.Cursor, now_ns: int, limit: int) -> int:
        position = self._journal.cursor(CURSOR_SINK, CURSOR_STREAM)
        batch = self._alerts.events_after(position, limit)
        for event_id, event in batch:
            self._apply(cur, event, now_ns)
            position = event_id
        if batch:
            self._journal.set_cursor(CURSOR_SINK, CURSOR_STREAM, position, now_ns)
        return len(batch)

    def _apply(self, cur: sqlite3.Cursor, event: AlertEvent, now_ns: int) -> None:
        alert = event.alert
        gw = _ns(self.config.group_wait_s)
        # Deadlines run on the injected (wall) clock from when the event is read, not
        # from the event's own time: a reading's device time may be hours old (backfill).
        if event.kind is EventKind.RAISED:
            self._start_escalation(cur, alert, now_ns, now_ns)
        elif event.kind is EventKind.ESCALATED:
            if alert.state is AlertState.RAISED:
                # A new severity may mean another policy: escalate afresh from now.
                self._start_escalation(cur, alert, now_ns, now_ns)
        elif event.kind in (EventKind.ACKNOWLEDGED, EventKind.CLEARED):
            acked = event.kind is EventKind.ACKNOWLEDGED
            name = self._stop_escalation(cur, alert.id, "acknowledged" if acked else "cleared")
            policy = self._policy(name) if name else None
            why = (
                f"acknowledged by {alert.acknowledged_by} before it was sent"
                if acked
                else "the alert cleared before it was sent"
            )
            self._cancel_pending_levels(cur, alert.id, why, now_ns)
            targets = self._reached(cur, alert.id)
            kind = "acknowledged" if acked else "cleared"
            extra: dict[str, Any] = {"at_ns": event.at_ns}
            if acked:
                extra.update(by=alert.acknowledged_by, note=event.note)
            self._enqueue(cur, alert, kind, 0, targets, now_ns, now_ns + gw, extra, policy)

    def fire_due(self, now_ns: int) -> int:
        """Send the levels whose deadline passed; returns how many levels fired.

        When one deadline is due, those due within the next ``group_wait_s`` fire with it,
        so level 2 of a storm goes out as one message per contact too.
        """
        with self._tx() as cur:
            return self._fire_due(cur, now_ns)

    def _fire_due(self, cur: sqlite3.Cursor, now_ns: int) -> int:
        gw = _ns(self.config.group_wait_s)
        first = cur.execute(
            "SELECT MIN(next_due_ns) FROM notify_escalations WHERE state = 'active'"
        ).fetchone()[0]
        if first is None or first > now_ns:
            return 0
        due = cur.execute(
            "SELECT alert_id, policy, base_ns, next_level, next_due_ns, repeats FROM"
            " notify_escalations WHERE state = 'active' AND next_due_ns <= ?"
            " ORDER BY next_due_ns, alert_id",
            (now_ns + gw,),
        ).fetchall()
        fired = 0
        for alert_id, policy_name, base_ns, level, due_ns, repeats in due:
            fired += self._fire(
                cur, str(alert_id), str(policy_name), int(base_ns), int(level), int(due_ns),
                int(repeats), now_ns,
            )  # fmt: skip
        return fired

    def _fire(
        self,
        cur: sqlite3.Cursor,
        alert_id: str,
        policy_name: str,
        base_ns: int,
        level: int,
        due_ns: int,
        repeats: int,
        now_ns: int,
    ) -> int:
        alert = self._alerts.get(alert_id)
        if alert is None or alert.state is not AlertState.RAISED:
            self._stop_escalation(cur, alert_id, "done")
            return 0
        policy = self._policy(policy_name) or self._match(alert)
        if policy is None:
            self._stop_escalation(cur, alert_id, "done")
            self._log(cur, alert_id, now_ns, "unrouted", f"policy {policy_name!r} is gone")
            return 0
        level = min(level, len(policy.levels) - 1)
        held = self._quiet(policy, str(alert.severity), max(due_ns, now_ns))
        if held is not None:
            # Warnings wait for the end of quiet hours; the later levels keep their spacing.
            shift = held - due_ns
            cur.execute(
                "UPDATE notify_escalations SET base_ns = ?, next_due_ns = ? WHERE alert_id = ?",
                (base_ns + shift, held, alert_id),
            )
            self._log(
                cur,
                alert_id,
                now_ns,
                "held",
                f"quiet hours: level {level + 1} waits until {_local(held, self.timezone)}",
                level=level + 1,
            )
            return 0
        kind = "repeat" if repeats else ("escalated" if level else "raised")
        # A level due at the raise waits group_wait_s for the rest of a storm to arrive.
        not_before = due_ns + _ns(self.config.group_wait_s) if due_ns == base_ns else due_ns
        self._enqueue(
            cur,
            alert,
            kind,
            level + 1,
            self._level_targets(policy, level),
            now_ns,
            not_before,
            {"policy": policy.name},
            None,  # quiet hours were applied to the level as a whole above
        )
        if level + 1 < len(policy.levels):
            next_due = base_ns + _ns(policy.levels[level + 1].delay_s)
            cur.execute(
                "UPDATE notify_escalations SET next_level = ?, next_due_ns = ? WHERE alert_id = ?",
                (level + 1, next_due, alert_id),
            )
        elif policy.repeat_s is not None:
            cur.execute(
                "UPDATE notify_escalations SET next_due_ns = ?, repeats = repeats + 1"
                " WHERE alert_id = ?",
                (due_ns + _ns(policy.repeat_s), alert_id),
            )
        else:
            cur.execute(
                "UPDATE notify_escalations SET state = 'done', next_due_ns = NULL"
                " WHERE alert_id = ?",
                (alert_id,),
            )
        return 1

    # -- sending -----------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        """When something is next due (a level, a message or a retry), epoch ns."""
        row = self._db.execute(
            "SELECT MIN(t) FROM (SELECT MIN(next_due_ns) AS t FROM notify_escalations WHERE"
            " state = 'active' UNION ALL SELECT MIN(MAX(not_before_ns, next_try_ns)) FROM"
            " notify_outbox WHERE state = 'pending')"
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def claim(self, now_ns: int) -> list[Group]:
        """Messages due now, marked ``sending`` (committed) before anything goes out."""
        with self._tx() as cur:
            return self._claim(cur, now_ns)

    def _claim(self, cur: sqlite3.Cursor, now_ns: int) -> list[Group]:
        gw = _ns(self.config.group_wait_s)
        groups: list[Group] = []
        # Retries and crash re-sends keep their group and id.
        retry_ids = cur.execute(
            "SELECT DISTINCT message_id FROM notify_outbox WHERE state = 'pending' AND"
            " message_id IS NOT NULL AND next_try_ns <= ? ORDER BY message_id",
            (now_ns,),
        ).fetchall()
        for (message_id,) in retry_ids:
            rows = self._rows(cur, "state = 'pending' AND message_id = ?", (message_id,))
            if rows:
                groups.append(self._group(cur, str(message_id), rows))
        heads = cur.execute(
            "SELECT contact, channel FROM notify_outbox WHERE state = 'pending' AND"
            " message_id IS NULL GROUP BY contact, channel HAVING MIN(not_before_ns) <= ?",
            (now_ns,),
        ).fetchall()
        for contact, channel in heads:
            rows = self._rows(
                cur,
                "state = 'pending' AND message_id IS NULL AND contact = ? AND channel = ?"
                " AND not_before_ns <= ?",
                (contact, channel, now_ns + gw),
            )
            message_id = f"{self.hub}-n{rows[0].id}"
            groups.append(self._group(cur, message_id, rows))
        return groups

    def _group(self, cur: sqlite3.Cursor, message_id: str, rows: list[OutRow]) -> Group:
        ids = [r.id for r in rows]
        marks = ",".join("?" for _ in ids)
        cur.execute(
            f"UPDATE notify_outbox SET state = 'sending', message_id = ?, attempts = attempts + 1"
            f" WHERE id IN ({marks})",
            (message_id, *ids),
        )
        bumped = tuple(replace(r, attempts=r.attempts + 1) for r in rows)
        return Group(
            message_id=message_id,
            contact=rows[0].contact,
            channel=rows[0].channel,
            channel_name=rows[0].channel_name,
            rows=bumped,
            resend_after_crash=any(r.crash_resends for r in rows),
        )

    def settle(self, group: Group, ok: bool, detail: str, now_ns: int) -> str:
        """Record a send's result for every row; returns the rows' new state."""
        with self._tx() as cur:
            if ok:
                state = "sent"
            else:
                first = min(r.created_ns for r in group.rows)
                gave_up = now_ns - first >= _ns(self.config.give_up_after_s)
                state = "failed" if gave_up else "pending"
            attempts = max(r.attempts for r in group.rows)
            delay = min(self.config.retry_max_s, self.config.retry_initial_s * 2 ** (attempts - 1))
            next_try = now_ns + _ns(self._rng.uniform(delay / 2, delay))
            for row in group.rows:
                cur.execute(
                    "UPDATE notify_outbox SET state = ?, sent_ns = ?, last_error = ?,"
                    " next_try_ns = ? WHERE id = ?",
                    (
                        state,
                        now_ns if ok else None,
                        None if ok else detail[:500],
                        next_try,
                        row.id,
                    ),
                )
                result = {"sent": "sent", "failed": "gave_up", "pending": "failed"}[state]
                self._log(cur, row.alert_id, now_ns, result, detail, row=row,
                          message_id=group.message_id)  # fmt: skip
        return state

    # -- reading -----------------------------------------------------------------------
    def history(self, alert_id: str) -> list[Attempt]:
        """Every attempt recorded against an alert, oldest first."""
        return attempts_of(self._db, [alert_id]).get(alert_id, [])

    def attempts_after(self, position: int, limit: int) -> list[Attempt]:
        """Attempts with id > position (the InfluxDB and planner streams)."""
        rows = self._db.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM notify_attempts WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        ).fetchall()
        return [_attempt(r) for r in rows]

    def resolve_code(self, text: str) -> str | None:
        """The alert id of an ack code (planner cmd/ack, CLI), or None."""
        return resolve_ack_code(self._db, text)

    def code_for(self, alert_id: str) -> str | None:
        """The ack code given to an alert, if it has one."""
        row = self._db.execute(
            "SELECT code FROM notify_ack_codes WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        """Outbox rows by state (status file)."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM notify_outbox GROUP BY state")
        return {str(s): int(n) for s, n in rows.fetchall()}


_ATTEMPT_COLUMNS = (
    "id, alert_id, contact, channel, kind, level, message_id, at_ns, attempt, result, detail"
)


def _attempt(r: Sequence[Any]) -> Attempt:
    return Attempt(
        id=int(r[0]),
        alert_id=str(r[1]),
        contact=str(r[2]),
        channel=str(r[3]),
        kind=str(r[4]),
        level=int(r[5]),
        message_id=r[6],
        at_ns=int(r[7]),
        attempt=int(r[8]),
        result=str(r[9]),
        detail=str(r[10]),
    )


def attempts_of(db: sqlite3.Connection, alert_ids: Sequence[str]) -> dict[str, list[Attempt]]:
    """Attempts per alert id from any connection (read-only ones too); {} without the table."""
    ids = list(alert_ids)
    if not ids:
        return {}
    has = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notify_attempts'"
    ).fetchone()
    if not has:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = db.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM notify_attempts WHERE alert_id IN ({marks}) ORDER BY id",
        ids,
    ).fetchall()
    out: dict[str, list[Attempt]] = {}
    for r in rows:
        a = _attempt(r)
        out.setdefault(a.alert_id, []).append(a)
    return out


def resolve_ack_code(db: sqlite3.Connection, text: str) -> str | None:
    """The alert id an ack code stands for, or None (no table, or no such code)."""
    has = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notify_ack_codes'"
    ).fetchone()
    if not has:
        return None
    row = db.execute(
        "SELECT alert_id FROM notify_ack_codes WHERE code = ?", (normalise_code(text),)
    ).fetchone()
    return None if row is None else str(row[0])


def code_of(db: sqlite3.Connection, alert_id: str) -> str | None:
    """The ack code of an alert from any connection, or None."""
    has = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notify_ack_codes'"
    ).fetchone()
    if not has:
        return None
    row = db.execute("SELECT code FROM notify_ack_codes WHERE alert_id = ?", (alert_id,)).fetchone()
    return None if row is None else str(row[0])


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


def _local(ns: int, timezone: str) -> str:
    from zoneinfo import ZoneInfo

    from gateway.core.clock import ns_to_datetime

    return ns_to_datetime(ns).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")
