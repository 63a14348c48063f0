"""InfluxDB line protocol: ``measurement,tag=v,... field=v,... timestamp_ns``.

Escaping follows the InfluxDB reference, checked against a real influxd 1.6:

- measurement: ``,`` and space are backslash-escaped (a leading ``#`` would make a
  comment line and is refused);
- tag keys, tag values and field keys: ``,``, ``=`` and space are backslash-escaped;
- string field values: ``"`` and ``\\`` are backslash-escaped; newlines are kept (a
  quoted newline is accepted by InfluxDB 1.x and 2.x);
- integers get a trailing ``i``; floats are written with ``repr`` (shortest text that
  round-trips); booleans as ``true``/``false``; timestamps are integer nanoseconds.

What line protocol cannot carry in names and tag values, and what this module does:

- a newline or carriage return ends the line whatever the escaping: each is replaced by
  a space;
- a backslash at the end of a value, or right before a character that must be escaped,
  merges with the escape (``a\\`` followed by ``,`` reads back as ``a\\\\,``): such a
  backslash is replaced by ``/``.

``representable()`` tells whether a name or tag value passes unchanged, so input
validation (scanner ids, custody notes) can refuse it up front instead. Empty tag values
are left out (line protocol has no empty tag). NaN and infinite floats have no line
protocol form: the field is left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from gateway.core.model import Reading

FieldValue = str | int | float | bool

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_NEWLINES = re.compile(r"\r\n|\r|\n")
_BAD_BACKSLASH_KEY = re.compile(r"\\(?=[,= ]|$)")
_BAD_BACKSLASH_MEASUREMENT = re.compile(r"\\(?=[, ]|$)")


class LineProtocolError(ValueError):
    """A value that line protocol cannot express at all (empty name, int beyond int64)."""


def _needs_work(s: str) -> bool:
    # substring tests run in C and beat a regex on the common clean value
    return "," in s or "=" in s or " " in s or "\\" in s or "\n" in s or "\r" in s


def escape_measurement(name: str) -> str:
    """Escape a measurement name; LineProtocolError if empty or starting with ``#``."""
    if not name or name.startswith("#"):
        msg = f"invalid measurement name {name!r}"
        raise LineProtocolError(msg)
    if not _needs_work(name):
        return name
    name = _NEWLINES.sub(" ", name)
    name = _BAD_BACKSLASH_MEASUREMENT.sub("/", name)
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(value: str) -> str:
    """Escape a tag key, tag value or field key (see the module docstring for the limits)."""
    if not _needs_work(value):
        return value
    value = _NEWLINES.sub(" ", value)
    value = _BAD_BACKSLASH_KEY.sub("/", value)
    return value.translate(_KEY_ESCAPES)


def escape_string(value: str) -> str:
    """A string field value, quoted and escaped."""
    if "\\" in value or '"' in value:
        value = value.translate(_STRING_ESCAPES)
    return f'"{value}"'


def representable(value: str) -> bool:
    """True when a measurement, tag key or tag value reads back exactly as written."""
    return not ("\n" in value or "\r" in value or _BAD_BACKSLASH_KEY.search(value))


def format_field(value: FieldValue) -> str | None:
    """One field value in line protocol form; None for NaN and infinities (not storable)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    if isinstance(value, int):  # also IntFlag (Quality) and IntEnum
        return _format_int(int(value))
    if isinstance(value, str):
        return escape_string(str(value))
    msg = f"unsupported field value type {type(value).__name__}"
    raise LineProtocolError(msg)


def _format_int(value: int) -> str:
    if not _INT64_MIN <= value <= _INT64_MAX:
        msg = f"integer {value} does not fit InfluxDB's int64"
        raise LineProtocolError(msg)
    return f"{value}i"


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int,
) -> str:
    """One point: tags sorted by key, empty tags left out; LineProtocolError if no field."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        tag_value = tags[key]
        if tag_value:
            if not key:
                msg = "empty tag key"
                raise LineProtocolError(msg)
            parts.append(f"{escape_key(key)}={escape_key(tag_value)}")
    field_parts: list[str] = []
    for key, value in fields.items():
        if not key:
            msg = "empty field key"
            raise LineProtocolError(msg)
        text = format_field(value)
        if text is not None:
            field_parts.append(f"{escape_key(key)}={text}")
    if not field_parts:
        msg = f"{measurement}: no storable field in {dict(fields)!r}"
        raise LineProtocolError(msg)
    return f"{','.join(parts)} {','.join(field_parts)} {int(ts_ns)}"


# Tag sets repeat (a hub has tens of sensors): cache the escaped series key per sensor.
_READING_KEYS: dict[tuple[str, str, str, str], str] = {}
_READING_KEYS_MAX = 65536


def _reading_key(hub: str, zone: str, sensor: str, source: str) -> str:
    cache_key = (hub, zone, sensor, source)
    key = _READING_KEYS.get(cache_key)
    if key is None:
        tags = {"hub": hub, "sensor": sensor, "source": source, "zone": zone}
        key = "reading"
        for name in sorted(tags):
            if tags[name]:
                key += f",{name}={escape_key(tags[name])}"
        if len(_READING_KEYS) >= _READING_KEYS_MAX:
            _READING_KEYS.clear()
        _READING_KEYS[cache_key] = key
    return key


def reading_line(hub: str, r: Reading) -> str:
    """A reading as ``reading,hub,sensor,source,zone temp_c,rh,battery_v,quality,seq ts``."""
    key = _reading_key(hub, r.zone, r.sensor, r.source)
    temp = r.temp_c
    # the common case (finite float temperature, nothing else odd) stays on one f-string
    fields = f"temp_c={float(temp)!r}," if math.isfinite(temp) else ""
    if r.rh is not None and math.isfinite(r.rh):
        fields += f"rh={float(r.rh)!r},"
    if r.battery_v is not None and math.isfinite(r.battery_v):
        fields += f"battery_v={float(r.battery_v)!r},"
    if r.battery_pct is not None and math.isfinite(r.battery_pct):
        fields += f"battery_pct={float(r.battery_pct)!r},"
    fields += f"quality={int(r.quality)}i"
    if r.seq is not None:
        fields += f",seq={_format_int(int(r.seq))}"
    return f"{key} {fields} {r.ts_ns}"


def encode(lines: Iterable[str]) -> bytes:
    """A write request body: lines joined by newlines, UTF-8."""
    return "\n".join(lines).encode("utf-8")
