"""Handoff records: accepted custody events chained by SHA-256, and their InfluxDB form.

Every accepted custody event becomes a :class:`HandoffRecord` with a per-hub sequence
number (1, 2, 3, ... without gaps, across all shipments), the zone temperature at the
handoff and the hash of the previous record. ``hash`` is SHA-256 over the record's
canonical JSON (:func:`canonical_bytes`), which includes ``prev_hash``; changing, removing
or reordering any record breaks the chain from that record on (``gateway.verify``).

The canonical form is documented for third parties in docs/custody-records.md; change it
only together with that document (every stored hash depends on it).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.forwarder import Stream
from gateway.journal import Journal
from gateway.lineprotocol import FieldValue, line

if TYPE_CHECKING:
    from gateway.custody import CustodyLedger

GENESIS_HASH = "0" * 64
"""``prev_hash`` of seq 1."""

MEASUREMENT = "custody"
STREAM_CUSTODY = "custody"

HASHED_FIELDS: tuple[str, ...] = (
    "hub",
    "seq",
    "shipment",
    "event",
    "zone",
    "actor",
    "carrier",
    "profile",
    "note",
    "ts_ns",
    "temp_c",
    "prev_hash",
)
"""The fields the hash covers, all of them always present (None as JSON null)."""


class HandoffLike(Protocol):
    """Anything with the hashed fields and ``hash`` (a HandoffRecord, a row from InfluxDB)."""

    @property
    def hub(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def shipment(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def zone(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def carrier(self) -> str | None: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def note(self) -> str | None: ...
    @property
    def ts_ns(self) -> int: ...
    @property
    def temp_c(self) -> float | None: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """One link of the hub's custody chain (an accepted custody event)."""

    hub: str
    seq: int
    shipment: str
    event: str
    zone: str
    actor: str
    carrier: str | None
    profile: str | None
    note: str | None
    ts_ns: int
    temp_c: float | None
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, object]:
        """The hashed fields by name (everything but ``hash``)."""
        return hashed_fields(self)


def normalize_temp(temp_c: float | None) -> float | None:
    """The temperature as stored and hashed: a finite float, or None when unknown."""
    if temp_c is None:
        return None
    value = float(temp_c)
    return value if math.isfinite(value) else None


def hashed_fields(record: HandoffLike) -> dict[str, object]:
    """The values the hash covers, read from any handoff-like record."""
    return {name: getattr(record, name) for name in HASHED_FIELDS}


def canonical_bytes(fields: Mapping[str, object]) -> bytes:
    """Canonical JSON of the hashed fields: sorted keys, no whitespace, UTF-8.

    Integers stay integers, floats are written as Python's ``repr`` (shortest text that
    reads back to the same double), None is ``null``; non-ASCII text is kept as UTF-8,
    control characters, ``"`` and ``\\`` use JSON escapes.
    """
    missing = [name for name in HASHED_FIELDS if name not in fields]
    if missing:
        msg = f"handoff record lacks {', '.join(missing)}"
        raise ValueError(msg)
    data = {name: fields[name] for name in HASHED_FIELDS}
    for name in ("seq", "ts_ns"):
        value = data[name]
        if not isinstance(value, int) or isinstance(value, bool):
            msg = f"{name} must be an integer, got {value!r}"
            raise ValueError(msg)
    temp = data["temp_c"]
    if temp is not None and (isinstance(temp, bool) or not isinstance(temp, float)):
        msg = f"temp_c must be a float or None, got {temp!r}"
        raise ValueError(msg)
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def record_hash(fields: Mapping[str, object]) -> str:
    """Hex SHA-256 of the canonical form."""
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def custody_line(record: HandoffRecord) -> str:
    """The record as line protocol, measurement ``custody`` at the event's time.

    Tags hub, shipment, event, zone (DESIGN.md); fields actor, carrier, temp_c, seq,
    prev_hash, hash, note, profile, the optional ones left out when None. A point's
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
    tags = {
        "hub": record.hub,
        "shipment": record.shipment,
        "event": record.event,
        "zone": record.zone,
    }
    return line(MEASUREMENT, tags, fields, record.ts_ns)


def custody_stream(ledger: CustodyLedger) -> Stream:
    """Handoff records as line protocol for the InfluxDB forwarder; the cursor is ``seq``."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        records = ledger.handoff_records_after(after, limit)
        if not records:
            return after, 0, b""
        body = "\n".join(custody_line(r) for r in records).encode("utf-8")
        return records[-1].seq, len(records), body

    return Stream(STREAM_CUSTODY, fetch)
