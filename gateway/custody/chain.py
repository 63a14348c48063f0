"""Handoff records: accepted custody events chained by SHA-256 (pure: hashlib and json).

Every accepted custody event becomes a :class:`HandoffRecord` with a per-hub sequence
number (1, 2, 3, ... without gaps, across all shipments), the zone temperature at the
handoff and the hash of the previous record. ``hash`` is SHA-256 over the record's
canonical JSON (:func:`canonical_bytes`), which includes ``prev_hash``; changing, removing
or reordering any record breaks the chain from that record on (``gateway.custody.verify``).

The canonical form is documented for third parties in docs/custody-records.md; change it
only together with that document (every stored hash depends on it).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

GENESIS_HASH = "0" * 64
"""``prev_hash`` of seq 1."""


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

OPTIONAL_HASHED_FIELDS: tuple[str, ...] = ("signer",)
"""Covered by the hash only when set, so records from before them keep their hashes."""


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
    signer: str | None = None  # the enrolled key that signed the command; None: unsigned

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
    fields = {name: getattr(record, name) for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


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
    for name in OPTIONAL_HASHED_FIELDS:
        if fields.get(name) is not None:
            data[name] = fields[name]
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
