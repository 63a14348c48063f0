"""Custody events: the wire model, its parsing and the allowed transitions.

A custody event (scanner or WMS JSON over MQTT, or ``coldchain handoff``) names a
shipment, what happened (:class:`CustodyKind`), the zone, the actor and the time.
:func:`check_transition` says whether it may follow the shipment's last accepted event
(:data:`TRANSITIONS`); the ledger (``gateway.custody.ledger``) records it. Pure: no I/O.

Allowed transitions (the first event of a shipment must be ``received``)::

    received          -> put_away | staged | returned
    put_away          -> put_away | picked | returned        (put_away again: moved store)
    picked            -> packed | put_away                   (put_away: pick cancelled)
    packed            -> staged | handed_to_carrier | put_away
    staged            -> handed_to_carrier | put_away        (put_away: re-stowed)
    handed_to_carrier -> returned                            (custody ended; a return reopens it)
    returned          -> put_away | staged
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.clock import NS_PER_S, datetime_to_ns, iso_utc
from gateway.core.errors import GatewayError
from gateway.core.model import IDENTIFIER_PATTERN
from gateway.core.text import text_problem

SHIPMENT_ID_PATTERN = IDENTIFIER_PATTERN
NOTE_MAX_CHARS = 500

# Event times outside [2000-01-01, 2100-01-01) are refused: they are almost always a
# seconds/milliseconds/nanoseconds mix-up, and a wrong time would corrupt the custody timeline.
MIN_TS_NS = 946_684_800 * NS_PER_S
MAX_TS_NS = 4_102_444_800 * NS_PER_S

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
AT_PATTERN = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
"""RFC 3339 date-time, the form docs/schemas/custody-event.schema.json also requires."""


class CustodyKind(StrEnum):
    """What happened to a shipment at the hub."""

    RECEIVED = "received"
    PUT_AWAY = "put_away"
    PICKED = "picked"
    PACKED = "packed"
    STAGED = "staged"
    HANDED_TO_CARRIER = "handed_to_carrier"
    RETURNED = "returned"


K = CustodyKind

TRANSITIONS: Mapping[CustodyKind, frozenset[CustodyKind]] = {
    K.RECEIVED: frozenset({K.PUT_AWAY, K.STAGED, K.RETURNED}),
    K.PUT_AWAY: frozenset({K.PUT_AWAY, K.PICKED, K.RETURNED}),
    K.PICKED: frozenset({K.PACKED, K.PUT_AWAY}),
    K.PACKED: frozenset({K.STAGED, K.HANDED_TO_CARRIER, K.PUT_AWAY}),
    K.STAGED: frozenset({K.HANDED_TO_CARRIER, K.PUT_AWAY}),
    K.HANDED_TO_CARRIER: frozenset({K.RETURNED}),
    K.RETURNED: frozenset({K.PUT_AWAY, K.STAGED}),
}
"""Allowed next kinds after each accepted kind; a new shipment starts with ``received``."""

FIRST_KIND = K.RECEIVED

RejectReason = Literal[
    "malformed",
    "unknown_zone",
    "unknown_profile",
    "unknown_shipment",
    "invalid_transition",
    "profile_conflict",
    "future_time",
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)


class CustodyRejected(GatewayError):
    """A custody event that was refused; it is recorded as an exception row all the same."""

    def __init__(
        self,
        reason: RejectReason,
        detail: str,
        *,
        event: CustodyEvent | None = None,
        record_id: int | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail
        self.event = event
        self.record_id = record_id


Text = Annotated[str, Field(min_length=1, max_length=128)]


class CustodyEvent(BaseModel):
    """One custody event, validated; times are epoch nanoseconds UTC.

    Input accepts the wire names too: ``event`` for ``kind``, and exactly one of ``ts_ns``,
    ``ts_ms`` or ``at`` (ISO 8601 with a time zone, e.g. ``2026-01-01T08:00:00Z``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shipment: Annotated[str, Field(pattern=SHIPMENT_ID_PATTERN)]
    kind: CustodyKind
    zone: Annotated[str, Field(pattern=SHIPMENT_ID_PATTERN)]
    actor: Text
    ts_ns: Annotated[int, Field(strict=True, ge=MIN_TS_NS, lt=MAX_TS_NS)]
    carrier: Text | None = None
    profile: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    note: Annotated[str, Field(max_length=NOTE_MAX_CHARS)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _wire_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        if "event" in out:
            if "kind" in out:
                msg = "give either event or kind, not both"
                raise ValueError(msg)
            out["kind"] = out.pop("event")
        times = [k for k in ("ts_ns", "ts_ms", "at") if k in out]
        if len(times) != 1:
            msg = "give exactly one of at (ISO 8601 with time zone), ts_ms or ts_ns"
            raise ValueError(msg)
        if "at" in out:
            out["ts_ns"] = _parse_at(out.pop("at"))
        elif "ts_ms" in out:
            ms = out.pop("ts_ms")
            if not isinstance(ms, int) or isinstance(ms, bool):
                msg = "ts_ms must be an integer (epoch milliseconds)"
                raise ValueError(msg)
            out["ts_ns"] = ms * 1_000_000
        return out

    @model_validator(mode="after")
    def _printable(self) -> CustodyEvent:
        for name in ("actor", "carrier", "profile"):
            value = getattr(self, name)
            if value is not None and (_CONTROL_CHARS.search(value) or value != value.strip()):
                msg = f"{name} must not have control characters or surrounding spaces"
                raise ValueError(msg)
        if self.note is not None and "\x00" in self.note:
            msg = "note must not contain NUL"
            raise ValueError(msg)
        return self

    @classmethod
    def from_json(cls, payload: bytes | str) -> CustodyEvent:
        """Parse a scanner/WMS/CLI JSON payload; raises CustodyRejected("malformed")."""
        return from_json(payload)

    def to_payload(self) -> dict[str, object]:
        """The wire form (docs/schemas/custody-event.schema.json), lossless (ts_ns)."""
        out: dict[str, object] = {
            "shipment": self.shipment,
            "event": self.kind.value,
            "zone": self.zone,
            "actor": self.actor,
            "ts_ns": self.ts_ns,
        }
        for name in ("carrier", "profile", "note"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> bytes:
        """The wire form as UTF-8 JSON bytes."""
        return json.dumps(self.to_payload(), ensure_ascii=False).encode("utf-8")


def _parse_at(value: Any) -> int:
    if not isinstance(value, str):
        msg = "at must be an ISO 8601 string with a time zone"
        raise ValueError(msg)  # pydantic turns ValueError (not TypeError) into a clean message
    match = AT_PATTERN.fullmatch(value)
    if match is None:
        msg = (
            "at must look like 2026-01-01T08:00:00Z or 2026-01-01T09:00:00.250+01:00,"
            f" got {value!r}"
        )
        raise ValueError(msg)
    whole, fraction, offset = match.groups()
    try:
        parsed = datetime.fromisoformat(whole + offset.replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"at is not a valid date and time: {value!r}"
        raise ValueError(msg) from exc
    # fromisoformat stops at microseconds; the fraction is added here to keep nanoseconds.
    return datetime_to_ns(parsed) + int((fraction or "").ljust(9, "0"))


def from_json(payload: bytes | str) -> CustodyEvent:
    """Parse a custody JSON payload; raises CustodyRejected("malformed", detail)."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CustodyRejected("malformed", f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CustodyRejected("malformed", "payload must be a JSON object")
    try:
        event = CustodyEvent.model_validate(data)
    except ValidationError as exc:
        raise CustodyRejected("malformed", _validation_detail(exc)) from exc
    # Free text from outside is checked here, at input (gateway.core.text): records
    # already in a journal stay readable whatever an older version let in.
    for name in ("actor", "carrier", "note"):
        value = getattr(event, name)
        problem = text_problem(value) if value else None
        if problem is not None:
            raise CustodyRejected("malformed", f"{name}: {problem}")
    return event


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ShipmentState:
    """Where a shipment is now, from its last accepted custody event."""

    shipment: str
    zone: str
    kind: CustodyKind
    since_ns: int
    profile: str | None
    carrier: str | None
    first_ns: int
    event_id: int
    duplicate: bool = False

    @property
    def open(self) -> bool:
        """True while the hub holds the shipment (not handed to a carrier)."""
        return self.kind is not CustodyKind.HANDED_TO_CARRIER


class CustodyInterval(NamedTuple):
    """A span the shipment spent in one zone; ``end_ns`` None while it is still there."""

    zone: str
    start_ns: int
    end_ns: int | None


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    """One row of ``custody_events``: an accepted event or a rejected one with its reason."""

    id: int
    recorded_ns: int
    source: str
    accepted: bool
    ts_ns: int | None
    shipment: str | None
    kind: str | None
    zone: str | None
    actor: str | None
    carrier: str | None
    profile: str | None
    note: str | None
    reason: str | None
    detail: str | None
    payload: str | None
    seq: int | None = None
    temp_c: float | None = None
    prev_hash: str | None = None
    hash: str | None = None
    signer: str | None = None

    def to_event(self) -> CustodyEvent:
        """The accepted event this row records; ValueError for a rejected row."""
        if not self.accepted:
            msg = f"custody record {self.id} was rejected ({self.reason}); it has no event"
            raise ValueError(msg)
        return CustodyEvent.model_validate(
            {
                "shipment": self.shipment,
                "kind": self.kind,
                "zone": self.zone,
                "actor": self.actor,
                "ts_ns": self.ts_ns,
                "carrier": self.carrier,
                "profile": self.profile,
                "note": self.note,
            }
        )


@dataclass(frozen=True, slots=True)
class InboxStatus:
    """What became of an inbox row: pending, or the custody record it produced."""

    id: int
    submitted_ns: int
    processed: bool
    record: CustodyRecord | None


def check_transition(before: ShipmentState, event: CustodyEvent) -> tuple[RejectReason, str] | None:
    """Why ``event`` may not follow ``before`` (reason, detail), or None when it may."""
    if event.ts_ns < before.since_ns:
        return (
            "invalid_transition",
            f"{event.kind.value} at {iso_utc(event.ts_ns)} is older than the last accepted"
            f" event ({before.kind.value} at {iso_utc(before.since_ns)})",
        )
    if event.kind not in TRANSITIONS[before.kind]:
        allowed = ", ".join(sorted(k.value for k in TRANSITIONS[before.kind]))
        return (
            "invalid_transition",
            f"{before.kind.value} -> {event.kind.value} is not allowed (next: {allowed})",
        )
    if event.profile is not None and before.profile not in (None, event.profile):
        return (
            "profile_conflict",
            f"shipment {event.shipment!r} has profile {before.profile!r},"
            f" event says {event.profile!r}",
        )
    return None
