"""The journal streams each sink drains behind its own cursor, as line protocol.

One place for every stream adapter: a :class:`Stream` is a name (its cursor key) and a
``fetch`` that runs on the journal thread and encodes the records after the cursor.
Readings, gateway_health, alerts and custody each have one here; the forwarder
(``gateway.outbox.forwarder``) drains them in a fixed priority order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.alerts.store import Alert, AlertStore
from gateway.custody.chain import HandoffRecord
from gateway.journal.store import Journal
from gateway.outbox.lineprotocol import FieldValue, line, reading_line

STREAM_READINGS = "readings"
STREAM_CUSTODY = "custody"
MEASUREMENT_CUSTODY = "custody"


class HandoffSource(Protocol):
    """Where custody handoff records come from (the custody ledger)."""

    def handoff_records_after(self, after: int, limit: int) -> list[HandoffRecord]:
        """Records with seq > after, in seq order, at most limit."""
        ...


Fetch = Callable[[Journal, int, int], tuple[int, int, bytes]]


@dataclass(frozen=True, slots=True)
class Stream:
    """One journal stream a sink drains: a name (its cursor key) and how to encode it.

    ``fetch(journal, after, limit)`` runs on the journal thread and returns
    ``(last id, record count, line-protocol body)`` for records after the cursor.
    """

    name: str
    fetch: Fetch


def readings_stream(hub: str) -> Stream:
    """The readings table as line protocol (measurement ``reading``)."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        rows = journal.readings_after(after, limit)
        if not rows:
            return after, 0, b""
        body = "\n".join([reading_line(hub, r) for _, r in rows]).encode()
        return rows[-1][0], len(rows), body

    return Stream(STREAM_READINGS, fetch)


def health_stream(hub: str) -> Stream:
    """Gateway self-metrics snapshots as line protocol (measurement ``gateway_health``)."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        rows = journal.health_after(after, limit)
        if not rows:
            return after, 0, b""
        body = "\n".join(line("gateway_health", {"hub": hub}, f, ts) for _, ts, f in rows)
        return rows[-1][0], len(rows), body.encode()

    return Stream("gateway_health", fetch)


def alerts_stream(store: AlertStore) -> Stream:
    """Alert transitions as line protocol (measurement ``alert``), drained before readings."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        rows = store.events_after(after, limit)
        if not rows:
            return after, 0, b""
        body = "\n".join(
            alert_line(event.alert, event.at_ns, event.note) for _, event in rows
        ).encode()
        return rows[-1][0], len(rows), body

    return Stream("alerts", fetch)


def alert_line(alert: Alert, at_ns: int, note: str = "") -> str:
    """InfluxDB point for measurement ``alert`` at at_ns (one point per state change).

    ``note`` is the event's note (an acknowledgement's), kept for the claim report.
    """
    fields: dict[str, FieldValue] = {
        "state": str(alert.state),
        "started_at": int(alert.started_ns),
        "alert_id": alert.id,
    }
    if alert.value is not None:
        fields["value"] = float(alert.value)
    if alert.limit is not None:
        fields["limit"] = float(alert.limit)
    if alert.acknowledged_by is not None:
        fields["acknowledged_by"] = alert.acknowledged_by
    if note:
        fields["note"] = note
    tags = {
        "hub": alert.hub,
        "rule": alert.rule,
        "severity": str(alert.severity),
        "subject": alert.subject,
    }
    return line("alert", tags, fields, at_ns)


def custody_line(record: HandoffRecord) -> str:
    """The record as line protocol, measurement ``custody`` at the event's time.

    Tags hub, shipment, event, zone (DESIGN.md); fields actor, carrier, temp_c, seq,
    prev_hash, hash, note, profile, signer, the optional ones left out when None. A point's
    identity is measurement + tags + time: two handoffs of one shipment with the same
    event kind, zone and nanosecond would overwrite each other (see docs/custody-records.md).
    """
    fields: dict[str, FieldValue] = {"actor": record.actor}
    if record.carrier is not None:
        fields["carrier"] = record.carrier
    if record.temp_c is not None:
        fields["temp_c"] = float(record.temp_c)
    fields["seq"] = record.seq
    fields["prev_hash"] = record.prev_hash
    fields["hash"] = record.hash
    if record.note is not None:
        fields["note"] = record.note
    if record.profile is not None:
        fields["profile"] = record.profile
    if record.signer is not None:
        fields["signer"] = record.signer
    tags = {
        "hub": record.hub,
        "shipment": record.shipment,
        "event": record.event,
        "zone": record.zone,
    }
    return line(MEASUREMENT_CUSTODY, tags, fields, record.ts_ns)


def custody_stream(ledger: HandoffSource) -> Stream:
    """Handoff records as line protocol for the InfluxDB forwarder; the cursor is ``seq``."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        records = ledger.handoff_records_after(after, limit)
        if not records:
            return after, 0, b""
        body = "\n".join(custody_line(r) for r in records).encode("utf-8")
        return records[-1].seq, len(records), body

    return Stream(STREAM_CUSTODY, fetch)
