"""Domain records that flow from drivers through the journal to the sinks."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""Hub, zone, sensor and shipment ids: 1-64 letters, digits and ``_ . : -``, starting
with a letter or digit. Safe in topics, tags, file names and query literals."""

IDENTIFIER_RULE = "1-64 characters: letters, digits and _ . : -, starting with a letter or digit"
"""The pattern in words, for error messages."""


class Quality(enum.IntFlag):
    """Bit flags stored with every reading (``quality`` field in InfluxDB).

    A flagged reading is kept (nothing is lost) but the SOP rules ignore it.
    """

    GOOD = 0
    SENTINEL = 1  # a known sensor sentinel: DS18B20 85.0 (power-on) or -127 (disconnected)
    IMPOSSIBLE = 2  # outside the sensor's physical range
    CLOCK_SKEW = 4  # device clock and gateway receive time disagree beyond the bound
    SPIKE = 8  # rate of change beyond the sensor's limit
    FROZEN = 16  # value unchanged for too long
    NO_DEVICE_TIME = 32  # the device sent no timestamp; the gateway's receive time is used

    @property
    def usable(self) -> bool:
        """True when the SOP rules may evaluate a reading with these flags."""
        return not (self & UNUSABLE_MASK)


UNUSABLE_MASK = int(Quality.SENTINEL | Quality.IMPOSSIBLE | Quality.SPIKE)
"""Readings with any of these flags are kept but never evaluated (rules, trace, dashboards)."""


@dataclass(slots=True, frozen=True)
class Reading:
    """One sensor sample, normalised and calibrated.

    ``ts_ns`` is the device's own timestamp (or the receive time when the device has
    no clock, flagged NO_DEVICE_TIME); it is never rewritten downstream.
    """

    sensor: str
    ts_ns: int
    received_ns: int
    temp_c: float
    source: str
    zone: str = ""
    rh: float | None = None
    battery_v: float | None = None
    quality: int = 0
    seq: int | None = None
    battery_pct: float | None = None  # state of charge, for sensors that report % not volts


@dataclass(slots=True, frozen=True)
class RawSample:
    """What a driver decoded from the wire, before sensor mapping and calibration."""

    sensor: str
    temp_c: float
    ts_ns: int | None
    received_ns: int
    source: str
    rh: float | None = None
    battery_v: float | None = None
    seq: int | None = None
    battery_pct: float | None = None


@dataclass(slots=True, frozen=True)
class Reject:
    """Input that could not become a reading, with the reason.

    ``dead_letter`` rejects are journaled with their raw payload so a user can see what
    arrived (an MQTT payload, a serial line, a Modbus frame, a w1 file); the others are
    only counted.
    """

    reason: str
    source: str
    raw: bytes = b""
    topic: str = ""
    detail: str = ""
    dead_letter: bool = False


def _no_ack() -> None:
    return None


@dataclass(slots=True)
class Delivery:
    """A unit of driver output: samples, rejects and the upstream acknowledgement.

    The supervisor calls ``ack`` only after the journal committed everything in the
    delivery; for MQTT that sends the PUBACK. ``origins``, when a driver gives it, runs
    parallel to ``samples``: (topic or port, raw bytes) each sample was decoded from, so
    a sample refused at the ingest boundary is dead-lettered with its bytes
    (gateway/ingest/bounds.py).
    """

    samples: Sequence[RawSample] = ()
    rejects: Sequence[Reject] = ()
    ack: Callable[[], None] = field(default=_no_ack)
    origins: Sequence[tuple[str, bytes]] = ()
