"""Wire payloads of the planner feed (JSON; each has a schema under docs/schemas/).

``schema`` names the payload version; tests validate real messages against the schemas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum

from gateway.alerts.store import Alert, EventKind, finite_or_none
from gateway.core.clock import iso_utc
from gateway.custody.events import CustodyRecord

PAYLOAD_SCHEMA_VERSION = "1"
MAX_COMMAND_ECHO = 1024  # characters of a rejected command echoed back


def _iso_or_none(ns: int | None) -> str | None:
    return None if ns is None else iso_utc(ns)


def _common(alert: Alert) -> dict[str, object]:
    return {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "hub": alert.hub,
        "alert_id": alert.id,
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": str(alert.severity),
        "state": str(alert.state),
        "started_at": iso_utc(alert.started_ns),
        "raised_at": iso_utc(alert.raised_ns),
        "value": finite_or_none(alert.value),
        "limit": finite_or_none(alert.limit),
        "message": alert.message,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": _iso_or_none(alert.acknowledged_ns),
        "details": dict(alert.details),
    }


def event_payload(
    alert: Alert, kind: EventKind | str, at_ns: int, note: str = ""
) -> dict[str, object]:
    """JSON body for ``{prefix}/events``: type ``alert.<kind>`` plus the alert's state."""
    k = EventKind(kind)
    payload: dict[str, object] = {"type": f"alert.{k}", **_common(alert)}
    payload["cleared_at"] = _iso_or_none(alert.cleared_ns)
    payload["at"] = iso_utc(at_ns)
    if note:
        payload["note"] = note
    return payload


def retained_payload(alert: Alert) -> dict[str, object]:
    """JSON body for retained ``{prefix}/alerts/{id}``; ValueError for a cleared alert.

    A cleared alert is published as an empty retained message, which removes the topic.
    """
    if not alert.active:
        msg = f"alert {alert.id} is cleared: publish an empty retained message instead"
        raise ValueError(msg)
    return _common(alert)


class HubState(StrEnum):
    """Hub status on the retained ``status`` topic."""

    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


def status_payload(
    hub: str, state: HubState | str, at_ns: int, reasons: Sequence[str] = ()
) -> dict[str, object]:
    """JSON body for retained ``{prefix}/status`` (also the Will, with state offline)."""
    return {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "hub": hub,
        "state": str(HubState(state)),
        "at": iso_utc(at_ns),
        "reasons": list(reasons),
    }


def json_bytes(payload: dict[str, object]) -> bytes:
    """Compact JSON, no NaN."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def rejected_payload(
    hub: str,
    at_ns: int,
    topic: str,
    reason: str,
    raw: bytes,
    code: str | None = None,
    envelope: dict[str, object] | None = None,
) -> dict[str, object]:
    """JSON body of a ``command.rejected`` event (docs/schemas/command-rejected.schema.json).

    ``code`` is the machine-readable refusal (``replayed``, ``bad_signature``, ...); a
    signed command's ``key`` and ``nonce`` are echoed so its sender can match the reply.
    """
    out: dict[str, object] = {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "type": "command.rejected",
        "hub": hub,
        "at": iso_utc(at_ns),
        "topic": topic,
        "reason": reason[:MAX_COMMAND_ECHO],
        "command": raw[: 4 * MAX_COMMAND_ECHO].decode("utf-8", errors="replace")[:MAX_COMMAND_ECHO],
    }
    if code is not None:
        out["code"] = code
    if envelope is not None:
        for name in ("key", "nonce"):
            value = envelope.get(name)
            if isinstance(value, str) and len(value) <= 64:
                out[name] = value
    return out


def custody_rejected_payload(hub: str, record: CustodyRecord) -> dict[str, object]:
    """JSON body of a ``custody.rejected`` event (docs/schemas/custody-rejected.schema.json)."""
    return {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "type": "custody.rejected",
        "hub": hub,
        "at": iso_utc(record.recorded_ns),
        "record_id": record.id,
        "source": record.source,
        "reason": record.reason or "unknown",
        "detail": record.detail or "",
        "shipment": record.shipment,
        "event": record.kind,
        "zone": record.zone,
    }
