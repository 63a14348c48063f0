"""The alarm record: who was told on which channel when, the result, the ack and its note.

Read from any connection to the journal (read-only ones too: the claim report never
writes), so ``coldchain alerts`` and ``coldchain trace`` show the same evidence. A
journal from before notifications existed simply has no attempts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.core.clock import ns_to_datetime
from gateway.notify.store import Attempt, attempts_of

if TYPE_CHECKING:
    from gateway.trace.query import AlarmRecord


@dataclass(frozen=True, slots=True)
class AlarmLog:
    """One alert's notification record and acknowledgement note."""

    alert_id: str
    ack_note: str | None = None
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)


def ack_notes(db: sqlite3.Connection, alert_ids: Sequence[str]) -> dict[str, str]:
    """The note given with each alert's acknowledgement (from the alert outbox)."""
    ids = list(alert_ids)
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    try:
        rows = db.execute(
            "SELECT alert_id, payload FROM alert_events WHERE kind = 'acknowledged'"
            f" AND alert_id IN ({marks}) ORDER BY id",
            ids,
        ).fetchall()
    except sqlite3.OperationalError:  # no alert table in this journal
        return {}
    out: dict[str, str] = {}
    for alert_id, payload in rows:
        note = json.loads(payload).get("note") or ""
        out.setdefault(str(alert_id), str(note))
    return out


def alarm_logs(db: sqlite3.Connection, alert_ids: Sequence[str]) -> dict[str, AlarmLog]:
    """Record per alert id (every id given gets one, possibly empty)."""
    attempts = attempts_of(db, alert_ids)
    notes = ack_notes(db, alert_ids)
    return {aid: AlarmLog(aid, notes.get(aid), tuple(attempts.get(aid, []))) for aid in alert_ids}


RESULT_WORDS = {
    "sent": "delivered",
    "failed": "failed (will retry)",
    "gave_up": "FAILED, given up",
    "cancelled": "not sent",
    "interrupted": "interrupted by a crash, re-sent",
    "uncertain": "UNCERTAIN (crash twice)",
    "held": "held",
    "unrouted": "no policy",
}


def local_time(ns: int, timezone: str) -> str:
    """Hub-local wall time for people reading the record."""
    return ns_to_datetime(ns).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def attempt_text(a: Attempt, timezone: str) -> str:
    """One attempt as a line: when, who, channel, what, result, detail."""
    who = f"{a.contact} via {a.channel}" if a.contact else "-"
    what = f"{a.kind} L{a.level}" if a.level else (a.kind or "")
    result = RESULT_WORDS.get(a.result, a.result)
    return f"{local_time(a.at_ns, timezone)}  {who:<24} {what:<14} {result}: {a.detail}"


def with_notifications(
    records: Sequence[AlarmRecord], logs: dict[str, AlarmLog]
) -> list[AlarmRecord]:
    """The trace's alarm records with their note and notification attempts attached."""
    out = []
    for record in records:
        log = logs.get(record.alert_id)
        if log is None:
            out.append(record)
            continue
        out.append(
            replace(
                record,
                ack_note=log.ack_note if log.ack_note is not None else record.ack_note,
                notifications=log.attempts,
            )
        )
    return out


def influx_attempts(
    run: Callable[[str], list[dict[str, Any]]],
    hub: str,
    alert_ids: Sequence[str],
    source: str = '"notification"',
) -> dict[str, AlarmLog]:
    """Attempts per alert from the InfluxDB ``notification`` measurement (values escaped)."""
    from gateway.influxql.client import quote_literal

    ids = sorted(set(alert_ids))
    if not ids:
        return {}
    any_alert = " OR ".join(f'"alert_id" = {quote_literal(a)}' for a in ids)
    query = (
        'SELECT "kind", "level", "result", "attempt", "detail", "message_id", "seq"'
        f' FROM {source} WHERE "hub" = {quote_literal(hub)} AND ({any_alert})'
        ' GROUP BY "alert_id", "contact", "channel"'
    )
    found: dict[str, list[Attempt]] = {}
    for series in run(query):
        tags = series.get("tags", {})
        cols = series["columns"]
        for values in series.get("values", []):
            row = dict(zip(cols, values, strict=True))
            aid = str(tags.get("alert_id", ""))
            contact = str(tags.get("contact", ""))
            channel = str(tags.get("channel", ""))
            found.setdefault(aid, []).append(
                Attempt(
                    id=int(row.get("seq") or 0),
                    alert_id=aid,
                    contact="" if contact == "-" else contact,
                    channel="" if channel == "-" else channel,
                    kind="" if row.get("kind") == "-" else str(row.get("kind") or ""),
                    level=int(row.get("level") or 0),
                    message_id=row.get("message_id") or None,
                    at_ns=int(row["time"]),
                    attempt=int(row.get("attempt") or 0),
                    result=str(row.get("result") or ""),
                    detail=str(row.get("detail") or ""),
                )
            )
    return {
        aid: AlarmLog(aid, None, tuple(sorted(rows, key=lambda a: (a.at_ns, a.id))))
        for aid, rows in found.items()
    }
