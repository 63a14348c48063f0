"""Every numeric field of every driver's samples, checked at the ingest boundary.

Drivers decode their wire formats (and may check what their format knows); this is the
one place that knows what the rest of the gateway can hold, whatever driver or payload
format a sample came from. A number outside its range here would otherwise fail much
later, and far from its cause: an integer beyond 64 bits raises ``OverflowError`` at the
journal write (the commit fails, nothing is acknowledged, the broker redelivers it on
every start and the readings behind it never arrive), a NaN poisons every MKT and
average it enters, a timestamp past 2262 cannot be an InfluxDB time.

The ranges (docs/architecture.md, "Input bounds", lists them for users):

=============  ======  ==============================  ====================================
field          type    range                           why
=============  ======  ==============================  ====================================
temp_c         float   -273.15 .. 1000 °C, finite      below absolute zero is not a
                                                       temperature; no cold-chain probe
                                                       reads above 1000 °C (values outside
                                                       the sensor's own min/max_valid_c
                                                       are kept, flagged IMPOSSIBLE)
rh             float   0 .. 100 %, finite              relative humidity
battery_v      float   0 .. 100 V, finite              any battery or supply a node has
battery_pct    float   0 .. 100 %, finite              state of charge
seq            int     -2**63 .. 2**63-1               SQLite INTEGER (signed 64-bit)
ts_ns          int     0 .. 2**63-1 ns (1970..2262)    SQLite INTEGER, InfluxDB time
received_ns    int     0 .. 2**63-1 ns                 as ts_ns
=============  ======  ==============================  ====================================

``None`` is always allowed for the optional fields (the driver did not get one). A
numeric field not in the table (a driver adding one before this module knows it) gets
the widest rule: an int within SQLite's signed 64 bits, a float finite.

A sample outside its bounds becomes a dead-lettered :class:`Reject` (reason
``out_of_range``, ``non_finite`` or ``bad_type``) with the raw bytes it came from when the
driver handed them over (``Delivery.origins``), else the sample's repr; the message is
acknowledged, because it is kept in the dead letters and redelivering it cannot help.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from gateway.core.model import RawSample, Reject

OUT_OF_RANGE: Final = "out_of_range"
NON_FINITE: Final = "non_finite"
BAD_TYPE: Final = "bad_type"

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# field -> (integer field?, lowest, highest). Floats are also checked to be finite.
BOUNDS: Final[dict[str, tuple[bool, float, float]]] = {
    "temp_c": (False, -273.15, 1000.0),
    "rh": (False, 0.0, 100.0),
    "battery_v": (False, 0.0, 100.0),
    "battery_pct": (False, 0.0, 100.0),
    "seq": (True, INT64_MIN, INT64_MAX),
    "ts_ns": (True, 0, INT64_MAX),
    "received_ns": (True, 0, INT64_MAX),
}
_NOT_NUMERIC: Final = frozenset({"sensor", "source"})
_REQUIRED: Final = frozenset({"temp_c", "received_ns"})
_FIELDS: Final[tuple[tuple[str, bool, float, float], ...]] = tuple(
    (name, *BOUNDS.get(name, (False, -math.inf, math.inf)))
    for name in RawSample.__slots__
    if name not in _NOT_NUMERIC
)

Origin = tuple[str, bytes]  # (topic or port, raw bytes) a sample was decoded from


def problem(sample: RawSample) -> tuple[str, str] | None:
    """(reason, detail) when a field of the sample is outside its bounds, else None."""
    for name, integer, low, high in _FIELDS:
        value = getattr(sample, name)
        if value is None:
            if name in _REQUIRED:
                return BAD_TYPE, f"{name}: missing"
            continue
        found = _check(name, value, integer, low, high)
        if found is not None:
            return found
    return None


def _check(
    name: str, value: object, integer: bool, low: float, high: float
) -> tuple[str, str] | None:
    """The problem of one field's value, or None."""
    kind = type(value)
    found: tuple[str, str] | None = None
    if kind is int:
        number: float = value  # type: ignore[assignment]
        if not integer and not -(2**1023) < number < 2**1023:
            found = NON_FINITE, f"{name}: integer too large for a float"
        elif not INT64_MIN <= number <= INT64_MAX:
            found = OUT_OF_RANGE, f"{name}: {_short(number)} is outside signed 64 bits"
    elif kind is float:
        number = value  # type: ignore[assignment]
        if integer:
            found = BAD_TYPE, f"{name}: expected an integer, got {_short(number)}"
        elif not math.isfinite(number):
            found = NON_FINITE, f"{name}: {number!r} is not a finite number"
    else:
        return BAD_TYPE, f"{name}: expected a number, got {kind.__name__}"
    if found is None and not low <= number <= high:
        found = OUT_OF_RANGE, f"{name}: {_short(number)} is outside {low:g}..{high:g}"
    return found


def screen(
    samples: Sequence[RawSample], origins: Sequence[Origin] = ()
) -> tuple[Sequence[RawSample], list[Reject]]:
    """The samples within bounds, and a dead-letter reject for each one outside.

    ``origins`` (when given) runs parallel to ``samples``: where each came from, so the
    dead letter keeps the raw bytes. The common case, nothing out of bounds, returns
    ``samples`` itself (no copy).
    """
    bad: list[int] | None = None
    for i, sample in enumerate(samples):
        if problem(sample) is not None:
            if bad is None:
                bad = []
            bad.append(i)
    if bad is None:
        return samples, []
    rejects: list[Reject] = []
    for i in bad:
        sample = samples[i]
        found = problem(sample)
        assert found is not None
        topic, raw = origins[i] if i < len(origins) else ("", repr(sample).encode())
        rejects.append(
            Reject(
                reason=found[0],
                source=sample.source,
                raw=raw,
                topic=topic,
                detail=f"sensor {str(sample.sensor)[:64]!r}: {found[1]}",
                dead_letter=True,
            )
        )
    skip = set(bad)
    return [s for i, s in enumerate(samples) if i not in skip], rejects


def _short(value: float) -> str:
    """A number for a reject detail: 2**200 must not become a 60-digit log line."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"
