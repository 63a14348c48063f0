"""JSON payloads of sensor nodes to RawSamples, by the topic mapping of the config.

This is the MQTT hot path: one ``json.loads`` per message, field paths split once when
the mapper is built, no regular expressions. A payload that cannot become a sample is
returned as a dead-letter :class:`~gateway.core.model.Reject`, never raised.

Reject reasons (exact strings, they become counter labels):

``too_large``     payload longer than ``max_payload_bytes`` (checked before parsing)
``not_json``      not decodable JSON (bad encoding, syntax, nesting too deep)
``not_object``    the document is not a JSON object
``missing_field`` a required field (sensor, temperature) is absent or null
``bad_type``      a field has the wrong JSON type (a string temperature, a bool, ...)
``bad_timestamp`` the timestamp has the wrong type, does not parse, is naive or out of range
``non_finite``    NaN, Infinity or a number too large for a float
``identity_mismatch`` the payload's sensor id differs from the device its topic names
                  (``device_topic_segment``): a client reporting for another device
``no_mapping``    the topic matches no configured subscription (a persistent session
                  keeps subscriptions of an older config until the broker drops them)
``decoder_error`` a payload format raised (a bug): the payload is kept as a dead letter
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from drivers.mqtt.config import TopicMapping
from drivers.mqtt.formats import Decoded, PayloadDecoder, format_spec, reject
from drivers.mqtt.topics import filter_matches, split_filter
from gateway.core.clock import NS_PER_S, datetime_to_ns
from gateway.core.model import RawSample, Reject

TOO_LARGE: Final = "too_large"
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
BAD_TYPE: Final = "bad_type"
BAD_TIMESTAMP: Final = "bad_timestamp"
NON_FINITE: Final = "non_finite"
NO_MAPPING: Final = "no_mapping"
DECODER_ERROR: Final = "decoder_error"
IDENTITY_MISMATCH: Final = "identity_mismatch"

REJECT_REASONS: Final = (
    TOO_LARGE,
    NOT_JSON,
    NOT_OBJECT,
    MISSING_FIELD,
    BAD_TYPE,
    BAD_TIMESTAMP,
    NON_FINITE,
    NO_MAPPING,
    DECODER_ERROR,
    IDENTITY_MISMATCH,
)

# Timestamps are stored as signed 64-bit nanoseconds (SQLite INTEGER, InfluxDB): a device
# time outside 1970..2262 cannot be represented and is almost always a unit mix-up
# (milliseconds sent where seconds were configured).
_MAX_TS_NS: Final = 2**63 - 1

_MISSING: Final = object()

# One step of a field path: the dict key, and the list index when the step is all digits.
_Step = tuple[str, int | None]


class _Invalid(Exception):
    """Internal: a field could not be decoded; carries the reject reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _compile_path(path: str) -> tuple[_Step, ...]:
    """Split a dotted field path (``data.temp``, ``probes.0.t``) into lookup steps."""
    return tuple((part, int(part) if part.isdigit() else None) for part in path.split("."))


def _compile_optional(path: str | None) -> tuple[_Step, ...] | None:
    """Compiled steps of an optional path; None when the mapping does not use the field."""
    return None if path is None else _compile_path(path)


def _lookup(document: object, steps: Sequence[_Step]) -> object:
    """The value at a compiled path, or ``_MISSING`` when absent."""
    current = document
    for key, index in steps:
        if type(current) is dict:
            current = current.get(key, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif type(current) is list and index is not None and index < len(current):
            current = current[index]
        else:
            return _MISSING
    return current


def _finite(value: object, path: str) -> float:
    """A JSON number as a finite float; bools and strings are bad_type."""
    kind = type(value)
    if kind is float:
        number: float = value  # type: ignore[assignment]
    elif kind is int:
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise _Invalid(NON_FINITE, f"{path}: integer too large for a float") from None
    else:
        raise _Invalid(BAD_TYPE, f"{path}: expected a number, got {json_type(value)}")
    if not math.isfinite(number):
        raise _Invalid(NON_FINITE, f"{path}: {number!r} is not a finite number")
    return number


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for reject details."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) is str:
        return "string"
    if type(value) is dict:
        return "object"
    if type(value) is list:
        return "array"
    return "number"


class PayloadMapper:
    """Decodes the JSON payloads of one topic mapping into RawSamples or dead-letter Rejects."""

    __slots__ = (
        "_battery",
        "_battery_path",
        "_battery_unit",
        "_max_bytes",
        "_rh",
        "_rh_path",
        "_segment",
        "_sensor",
        "_sensor_ids",
        "_sensor_path",
        "_seq",
        "_seq_path",
        "_temp",
        "_temp_path",
        "_temp_unit",
        "_ts",
        "_ts_format",
        "_ts_path",
        "_zone",
        "mapping",
    )

    def __init__(
        self,
        mapping: TopicMapping,
        sensor_ids: Mapping[str, str] | None = None,
        max_payload_bytes: int = 16_384,
    ) -> None:
        self.mapping = mapping
        self._sensor_ids: Mapping[str, str] = dict(sensor_ids or {})
        self._max_bytes = max_payload_bytes
        self._sensor_path = mapping.sensor_path or ""
        self._sensor = _compile_optional(mapping.sensor_path)
        self._segment = mapping.sensor_topic_segment
        self._temp_path = mapping.temp_path
        self._temp = _compile_path(mapping.temp_path)
        self._ts_path = mapping.ts_path or ""
        self._ts = _compile_optional(mapping.ts_path)
        self._ts_format = mapping.ts_format
        self._rh_path = mapping.rh_path or ""
        self._rh = _compile_optional(mapping.rh_path)
        self._battery_path = mapping.battery_path or ""
        self._battery = _compile_optional(mapping.battery_path)
        self._seq_path = mapping.seq_path or ""
        self._seq = _compile_optional(mapping.seq_path)
        # None on the common path (°C, volts, offsets in the timestamps): no extra work.
        self._temp_unit = mapping.temp_unit if mapping.temp_unit not in (None, "C") else None
        self._battery_unit = mapping.battery_unit if mapping.battery_unit != "V" else None
        self._zone = ZoneInfo(mapping.time_zone) if mapping.time_zone else None

    def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        """The PayloadDecoder of format ``json``: one sample or one dead-letter reject."""
        result = self.map(topic, payload, received_ns, source)
        if type(result) is RawSample:
            return Decoded((result,), ())
        return Decoded((), (result,))  # type: ignore[arg-type]

    def map(self, topic: str, payload: bytes, received_ns: int, source: str) -> RawSample | Reject:
        """Decode one message; every failure is a dead-letter Reject, nothing raises.

        Also the decoder's ``decode_one`` (the router's single-result fast path): the MQTT
        hot path, where a Decoded per message was measured to cost ~10 % of the step.
        """
        if len(payload) > self._max_bytes:
            # The dead-letter journal keeps only the first max_payload_bytes: an oversized
            # message must not be able to fill the disk through the reject path.
            return Reject(
                reason=TOO_LARGE,
                source=source,
                raw=payload[: self._max_bytes],
                topic=topic,
                detail=f"{len(payload)} bytes, limit {self._max_bytes} (raw truncated)",
                dead_letter=True,
            )
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and UnicodeDecodeError.
            return self._reject(NOT_JSON, str(exc)[:200], topic, payload, source)
        if type(document) is not dict:
            detail = f"top level is {json_type(document)}, expected an object"
            return self._reject(NOT_OBJECT, detail, topic, payload, source)
        try:
            battery_v = self._optional_number(document, self._battery, self._battery_path)
            battery_pct = None
            if self._battery_unit is not None and battery_v is not None:
                if self._battery_unit == "mV":
                    battery_v /= 1000.0
                else:
                    battery_v, battery_pct = None, battery_v
            return RawSample(
                sensor=self._sensor_id(document, topic),
                temp_c=self._temperature(document),
                ts_ns=self._timestamp(document),
                received_ns=received_ns,
                source=source,
                rh=self._optional_number(document, self._rh, self._rh_path),
                battery_v=battery_v,
                seq=self._sequence(document),
                battery_pct=battery_pct,
            )
        except _Invalid as exc:
            return self._reject(exc.reason, exc.detail, topic, payload, source)

    decode_one = map

    @staticmethod
    def _reject(reason: str, detail: str, topic: str, payload: bytes, source: str) -> Reject:
        return Reject(
            reason=reason, source=source, raw=payload, topic=topic, detail=detail, dead_letter=True
        )

    def _sensor_id(self, document: dict[str, object], topic: str) -> str:
        if self._sensor is not None:
            value = _lookup(document, self._sensor)
            if value is _MISSING or value is None:
                raise _Invalid(MISSING_FIELD, f"{self._sensor_path}: sensor id is missing")
            if type(value) is str:
                device = value
            elif type(value) is int:
                device = str(value)
            else:
                raise _Invalid(
                    BAD_TYPE,
                    f"{self._sensor_path}: sensor id must be a string or an integer, "
                    f"got {json_type(value)}",
                )
            where = self._sensor_path
            segment = self.mapping.device_topic_segment
            if segment is not None:
                levels = topic.split("/")
                publisher = levels[segment] if segment < len(levels) else ""
                if device != publisher:
                    raise _Invalid(
                        IDENTITY_MISMATCH,
                        f"{where}: sensor id {device[:64]!r} is not the device"
                        f" {publisher[:64]!r} named by topic level {segment}",
                    )
        else:
            assert self._segment is not None
            levels = topic.split("/")
            device = levels[self._segment] if self._segment < len(levels) else ""
            where = f"topic segment {self._segment}"
        if not device:
            raise _Invalid(MISSING_FIELD, f"{where}: sensor id is empty")
        return self._sensor_ids.get(device, device)

    def _temperature(self, document: dict[str, object]) -> float:
        value = _lookup(document, self._temp)
        if value is _MISSING or value is None:
            raise _Invalid(MISSING_FIELD, f"{self._temp_path}: temperature is missing")
        number = _finite(value, self._temp_path)
        if self._temp_unit is None:
            return number
        if self._temp_unit == "F":
            return (number - 32.0) * 5.0 / 9.0
        return number - 273.15  # K

    def _timestamp(self, document: dict[str, object]) -> int | None:
        if self._ts is None:
            return None
        value = _lookup(document, self._ts)
        if value is _MISSING or value is None:
            # The device has no clock (or did not send it): the gateway flags NO_DEVICE_TIME.
            return None
        path = self._ts_path
        if self._ts_format == "iso8601":
            ts_ns = self._iso8601(value, path, self._zone)
        else:
            kind = type(value)
            if kind is not int and kind is not float:
                raise _Invalid(
                    BAD_TIMESTAMP,
                    f"{path}: {self._ts_format} timestamp must be a number, got {json_type(value)}",
                )
            if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
                raise _Invalid(NON_FINITE, f"{path}: {value!r} is not a finite timestamp")
            scale = NS_PER_S if self._ts_format == "epoch_s" else 1_000_000
            if kind is int:
                ts_ns = value * scale  # type: ignore[operator]
            else:
                # Round to whole microseconds: float seconds carry ~0.2 us of noise today.
                micros = value * (scale // 1000)  # type: ignore[operator]
                ts_ns = round(micros) * 1000 if -1.0 < micros < _MAX_TS_NS / 1000 else -1
        if not 0 <= ts_ns <= _MAX_TS_NS:
            raise _Invalid(
                BAD_TIMESTAMP,
                f"{path}: {value!r} is outside 1970..2262 as {self._ts_format}",
            )
        return int(ts_ns)

    @staticmethod
    def _iso8601(value: object, path: str, zone: ZoneInfo | None) -> int:
        if type(value) is not str:
            raise _Invalid(
                BAD_TIMESTAMP,
                f"{path}: iso8601 timestamp must be a string, got {json_type(value)}",
            )
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(BAD_TIMESTAMP, f"{path}: {value[:64]!r} is not ISO 8601") from None
        if (moment.tzinfo is None or moment.utcoffset() is None) and zone is not None:
            early = moment.replace(tzinfo=zone, fold=0)
            if early.utcoffset() != moment.replace(tzinfo=zone, fold=1).utcoffset():
                raise _Invalid(
                    BAD_TIMESTAMP,
                    f"{path}: {value[:64]!r} is ambiguous or skipped in {zone.key} (DST change)",
                )
            moment = early
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise _Invalid(
                BAD_TIMESTAMP,
                f"{path}: {value[:64]!r} has no UTC offset (add Z or +hh:mm, or set time_zone)",
            )
        try:
            return datetime_to_ns(moment)
        except OverflowError:
            raise _Invalid(BAD_TIMESTAMP, f"{path}: {value[:64]!r} is out of range") from None

    @staticmethod
    def _optional_number(
        document: dict[str, object], steps: tuple[_Step, ...] | None, path: str
    ) -> float | None:
        if steps is None:
            return None
        value = _lookup(document, steps)
        if value is _MISSING or value is None:
            return None
        return _finite(value, path)

    def _sequence(self, document: dict[str, object]) -> int | None:
        if self._seq is None:
            return None
        value = _lookup(document, self._seq)
        if value is _MISSING or value is None:
            return None
        if type(value) is int:
            return value
        if type(value) is float and value.is_integer():
            return int(value)
        raise _Invalid(BAD_TYPE, f"{self._seq_path}: sequence must be an integer")


_UNSEEN: Final[PayloadDecoder] = object()  # type: ignore[assignment]
_NO_SINK: Final[Callable[..., object]] = object()  # type: ignore[assignment]


class TopicRouter:
    """Picks the decoder of the first subscription whose topic filter matches a topic.

    Built once per connection: each subscription's format creates a fresh decoder, so
    per-connection decoder state (Sparkplug B alias tables) starts empty on every
    connection.
    """

    # Sensor topics are a bounded set (tens to hundreds per hub); the cap only guards
    # against a misbehaving publisher inventing topics.
    _CACHE_LIMIT: Final = 10_000

    def __init__(
        self,
        mappings: Sequence[TopicMapping],
        sensor_ids: Mapping[str, str] | None = None,
        max_payload_bytes: int = 16_384,
    ) -> None:
        ids = dict(sensor_ids or {})
        self._routes: list[tuple[tuple[str, ...], PayloadDecoder]] = [
            (split_filter(m.topic), format_spec(m.format).create(m, ids, max_payload_bytes))
            for m in mappings
        ]
        self._cache: dict[str, PayloadDecoder | None] = {}
        self._sinks: dict[str, Callable[..., object] | None] = {}

    @property
    def decoders(self) -> list[PayloadDecoder]:
        """Every decoder, in subscription order."""
        return [decoder for _, decoder in self._routes]

    def decoder_for(self, topic: str) -> PayloadDecoder | None:
        """The decoder of the first matching subscription, or None when none matches."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next(
            (decoder for levels, decoder in self._routes if filter_matches(levels, topic)), None
        )
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        """Decode one message with the decoder of its topic; never raises.

        No matching subscription is a ``no_mapping`` dead letter; a decoder that raises
        (a bug in a format) is a ``decoder_error`` dead letter with the raw payload.
        """
        decoder = self._cache.get(topic, _UNSEEN)
        if decoder is _UNSEEN:
            decoder = self.decoder_for(topic)
        if decoder is None:
            return Decoded(
                (),
                (
                    Reject(
                        reason=NO_MAPPING,
                        source=source,
                        raw=payload,
                        topic=topic,
                        detail="no configured subscription matches this topic",
                        dead_letter=True,
                    ),
                ),
            )
        try:
            return decoder.decode(topic, payload, received_ns, source)
        except Exception as exc:  # a format bug must not stop the driver or lose input
            detail = f"{type(exc).__name__}: {exc}"[:200]
            return Decoded((), (reject(DECODER_ERROR, detail, topic, payload, source),))

    def decode_into(
        self,
        topic: str,
        payload: bytes,
        received_ns: int,
        source: str,
        samples: list[RawSample],
        rejects: list[Reject],
    ) -> None:
        """``decode``, appending to the caller's lists: the driver's per-message step.

        A decoder that always gives exactly one result may offer ``decode_one(topic,
        payload, received_ns, source) -> RawSample | Reject`` (the JSON mapping does); it
        is called without building a Decoded. Same results and errors as ``decode``.
        """
        one = self._sinks.get(topic, _NO_SINK)
        if one is _NO_SINK:
            decoder = self.decoder_for(topic)
            one = getattr(decoder, "decode_one", None) if decoder is not None else None
            if len(self._sinks) >= self._CACHE_LIMIT:
                self._sinks.clear()
            self._sinks[topic] = one
        if one is not None:
            try:
                result = one(topic, payload, received_ns, source)
            except Exception as exc:  # as in decode: a bug is a dead letter
                detail = f"{type(exc).__name__}: {exc}"[:200]
                rejects.append(reject(DECODER_ERROR, detail, topic, payload, source))
                return
            if type(result) is RawSample:
                samples.append(result)
            else:
                rejects.append(result)  # type: ignore[arg-type]
            return
        decoded = self.decode(topic, payload, received_ns, source)
        samples.extend(decoded.samples)
        rejects.extend(decoded.rejects)
