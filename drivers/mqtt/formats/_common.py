"""What the ecosystem formats share: JSON parsing with limits, units, times, reject reasons.

Units are converted here, once: temperatures to °C (from °C, °F or K), batteries to volts
(from V or mV) or to a state of charge in % (``battery_pct``). A unit the gateway does not
know is refused (``bad_unit``), never stored as if it were °C.

Reject reasons added by the formats (beside those of drivers/mqtt/payload.py):

``no_temperature``  a sensor message with values but no temperature (humidity or battery
                    only): counted, not an error, not dead-lettered
``no_value``        the device says it has no value right now (ESPHome ``nan``, Home
                    Assistant ``unavailable`` / ``unknown``, Shelly ``tC: null``,
                    Sparkplug ``is_null``): counted, not an error
``ignored``         a message of the ecosystem that is not sensor data (bridge state,
                    availability, switch status, Sparkplug STATE/commands): counted only
``bad_unit``        the payload names a unit the gateway cannot convert: dead letter
``unknown_alias``   Sparkplug data for an alias no birth certificate defined: dead letter
``seq_gap``         Sparkplug sequence number jumped: messages were lost upstream
                    (counted; the data itself is still read)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal
from zoneinfo import ZoneInfo

from drivers.mqtt.formats import Decoded, reject
from drivers.mqtt.payload import (
    BAD_TIMESTAMP,
    BAD_TYPE,
    MISSING_FIELD,
    NON_FINITE,
    NOT_JSON,
    NOT_OBJECT,
    TOO_LARGE,
    json_type,
)
from gateway.core.clock import NS_PER_S
from gateway.core.model import RawSample, Reject

if TYPE_CHECKING:
    from drivers.mqtt.config import TopicMapping

NO_TEMPERATURE: Final = "no_temperature"
NO_VALUE: Final = "no_value"
IGNORED: Final = "ignored"
BAD_UNIT: Final = "bad_unit"
UNKNOWN_ALIAS: Final = "unknown_alias"
SEQ_GAP: Final = "seq_gap"

FORMAT_REJECT_REASONS: Final = (
    NO_TEMPERATURE,
    NO_VALUE,
    IGNORED,
    BAD_UNIT,
    UNKNOWN_ALIAS,
    SEQ_GAP,
)

TempUnit = Literal["C", "F", "K"]
BatteryUnit = Literal["V", "mV", "%"]

_MAX_TS_NS: Final = 2**63 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Invalid(Exception):
    """A field of one message could not be read; becomes a dead-letter reject."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def parse_object(payload: bytes, max_bytes: int) -> dict[str, object]:
    """The JSON object of a payload, or Invalid (too_large, not_json, not_object)."""
    if len(payload) > max_bytes:
        raise Invalid(TOO_LARGE, f"{len(payload)} bytes, limit {max_bytes} (raw truncated)")
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise Invalid(NOT_JSON, str(exc)[:200]) from None
    if type(document) is not dict:
        raise Invalid(NOT_OBJECT, f"top level is {json_type(document)}, expected an object")
    return document


def dead(exc: Invalid, topic: str, payload: bytes, source: str, max_bytes: int) -> Decoded:
    """The dead letter of one unreadable message (raw kept, truncated if oversized)."""
    raw = payload[:max_bytes] if exc.reason == TOO_LARGE else payload
    return Decoded((), (reject(exc.reason, exc.detail, topic, raw, source),))


def counted(reason: str, detail: str, topic: str, source: str) -> Reject:
    """A reject that is only counted (no_temperature, no_value, ignored, seq_gap)."""
    return reject(reason, detail, topic, b"", source, dead_letter=False)


def number(value: object, where: str) -> float:
    """A JSON number as a finite float; strings and bools are bad_type, NaN non_finite."""
    kind = type(value)
    if kind is float or kind is int:
        try:
            result = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise Invalid(NON_FINITE, f"{where}: number too large for a float") from None
        if not math.isfinite(result):
            raise Invalid(NON_FINITE, f"{where}: {result!r} is not a finite number")
        return result
    raise Invalid(BAD_TYPE, f"{where}: expected a number, got {json_type(value)}")


def optional_number(container: Mapping[str, object], key: str, where: str) -> float | None:
    value = container.get(key)
    return None if value is None else number(value, where)


def lookup(document: object, path: str) -> object:
    """The value at a dotted path (``object.temperatureSensor.1``), or None when absent."""
    current = document
    for part in path.split("."):
        if type(current) is dict:
            current = current.get(part)
        elif type(current) is list and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


# -- units ------------------------------------------------------------------------------------


def to_celsius(value: float, unit: str, where: str) -> float:
    """A temperature in °C from °C, °F or K; any other unit is bad_unit."""
    if unit == "C":
        return value
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "K":
        return value - 273.15
    raise Invalid(BAD_UNIT, f"{where}: temperature unit {unit[:16]!r} is not C, F or K")


def temp_unit_of(text: object, where: str) -> str:
    """A payload's own unit name (``C``, ``°F``, ``K``...) as C, F or K."""
    if type(text) is not str:
        raise Invalid(BAD_UNIT, f"{where}: unit must be a string, got {json_type(text)}")
    name = text.strip().removeprefix("°").upper()
    if name in ("C", "F", "K"):
        return name
    raise Invalid(BAD_UNIT, f"{where}: temperature unit {text[:16]!r} is not C, F or K")


def battery(value: float, unit: str) -> tuple[float | None, float | None]:
    """(battery_v, battery_pct) of one battery value in V, mV or %."""
    if unit == "V":
        return value, None
    if unit == "mV":
        return value / 1000.0, None
    return None, value


# -- time -------------------------------------------------------------------------------------

_FRACTION = re.compile(r"\.(\d+)")


def zone_of(name: str | None) -> ZoneInfo | None:
    return None if name is None else ZoneInfo(name)


def iso_to_ns(value: object, where: str, zone: ZoneInfo | None) -> int:
    """An ISO 8601 time as epoch ns, fractions to the nanosecond (TTN, ChirpStack send 9 digits).

    A time without offset is read in ``zone`` (the subscription's ``time_zone``); without a
    zone it is refused, as is a local time that a DST change makes ambiguous or skips.
    """
    if type(value) is not str:
        raise Invalid(
            BAD_TIMESTAMP, f"{where}: expected an ISO 8601 string, got {json_type(value)}"
        )
    text = value
    nanos = 0
    match = _FRACTION.search(text)
    if match is not None:
        digits = match.group(1)
        nanos = int((digits + "000000000")[:9])
        text = text[: match.start()] + text[match.end() :]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(BAD_TIMESTAMP, f"{where}: {value[:64]!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        if zone is None:
            raise Invalid(
                BAD_TIMESTAMP,
                f"{where}: {value[:64]!r} has no UTC offset; set time_zone on the subscription"
                " to read device-local times",
            )
        early = moment.replace(tzinfo=zone, fold=0)
        late = moment.replace(tzinfo=zone, fold=1)
        if early.utcoffset() != late.utcoffset():
            raise Invalid(
                BAD_TIMESTAMP,
                f"{where}: {value[:64]!r} is ambiguous or skipped in {zone.key} (DST change)",
            )
        moment = early
    delta = moment - _EPOCH
    ts_ns = (delta // timedelta(seconds=1)) * NS_PER_S + nanos
    return checked_ns(ts_ns, value, where)


def epoch_to_ns(value: object, scale_ns: int, where: str) -> int:
    """Epoch seconds (scale 1e9) or milliseconds (1e6) as ns, to the microsecond."""
    kind = type(value)
    if kind is int:
        return checked_ns(value * scale_ns, value, where)  # type: ignore[operator]
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise Invalid(NON_FINITE, f"{where}: {value!r} is not a finite timestamp")
        micros = value * (scale_ns // 1000)  # type: ignore[operator]
        ts_ns = round(micros) * 1000 if -1.0 < micros < _MAX_TS_NS / 1000 else -1
        return checked_ns(ts_ns, value, where)
    raise Invalid(
        BAD_TIMESTAMP, f"{where}: epoch timestamp must be a number, got {json_type(value)}"
    )


def checked_ns(ts_ns: int, value: object, where: str) -> int:
    if not 0 <= ts_ns <= _MAX_TS_NS:
        raise Invalid(BAD_TIMESTAMP, f"{where}: {value!r} is outside 1970..2262")
    return int(ts_ns)


def sample(
    sensor: str,
    temp_c: float,
    ts_ns: int | None,
    received_ns: int,
    source: str,
    *,
    rh: float | None = None,
    battery_v: float | None = None,
    battery_pct: float | None = None,
    seq: int | None = None,
) -> RawSample:
    return RawSample(
        sensor=sensor,
        temp_c=temp_c,
        ts_ns=ts_ns,
        received_ns=received_ns,
        source=source,
        rh=rh,
        battery_v=battery_v,
        battery_pct=battery_pct,
        seq=seq,
    )


class FormatDecoder:
    """Base of the ecosystem decoders: config, sensor-id mapping, Invalid -> dead letter.

    Subclasses implement ``_decode``; they raise Invalid for an unreadable message (the
    whole message becomes one dead letter with its raw payload) or return a Decoded.
    """

    def __init__(
        self, mapping: TopicMapping, sensor_ids: Mapping[str, str], max_payload_bytes: int
    ) -> None:
        self.mapping = mapping
        self._ids = sensor_ids
        self._max = max_payload_bytes
        self._zone = zone_of(mapping.time_zone)
        self._segment = mapping.sensor_topic_segment

    def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        try:
            return self._decode(topic, payload, received_ns, source)
        except Invalid as exc:
            return dead(exc, topic, payload, source, self._max)

    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        raise NotImplementedError

    def sensor(self, device: str) -> str:
        """The configured sensor id of a device id (sensor_ids), or the device id itself."""
        return self._ids.get(device, device)

    def device_from_topic(self, topic: str, default_level: int) -> str:
        """The device id at a topic level (sensor_topic_segment overrides the format's)."""
        level = default_level if self._segment is None else self._segment
        levels = topic.split("/")
        device = levels[level] if level < len(levels) else ""
        if not device:
            raise Invalid(MISSING_FIELD, f"topic level {level} of {topic[:100]!r} is empty")
        return device

    def celsius(self, value: object, where: str, payload_unit: str | None = None) -> float:
        """A temperature value in °C: the payload's own unit wins, then config, then °C."""
        unit = payload_unit or self.mapping.temp_unit or "C"
        return to_celsius(number(value, where), unit, where)

    def battery_of(
        self, value: object, where: str, default_unit: BatteryUnit
    ) -> tuple[float | None, float | None]:
        """(battery_v, battery_pct) of a battery field; config unit wins over the format's."""
        if value is None:
            return None, None
        return battery(number(value, where), self.mapping.battery_unit or default_unit)
