"""Tasmota: ``tele/<topic>/SENSOR`` telemetry and ``stat/<topic>/STATUS10`` replies.

Layout (https://tasmota.github.io/docs/DS18x20/, JSON-Status-Responses): one object per
message with ``Time`` (the device's **local** time, no offset), one object per sensor
(``DS18B20-1``, ``AM2301``, ``SHT3X``...) holding ``Temperature`` and maybe ``Humidity``
and ``Id``, and ``TempUnit`` (``C`` or ``F``, Tasmota's SetOption8). A ``STATUS10``
reply wraps the same object in ``StatusSNS``.

- **Every sensor object is one reading** (``DS18B20-1..n``, or a DHT11 beside an SHT3X).
  The device id is ``<topic>/<Id>`` when the sensor reports its 1-Wire address (stable:
  Tasmota renumbers ``DS18B20-n`` when probes are added or removed) and
  ``<topic>/<sensor name>`` otherwise; map them with ``sensor_ids``.
- ``TempUnit`` is obeyed (a °F freezer stays right in °C); an unknown unit is refused.
- ``Time`` is read in the subscription's ``time_zone``. Without one the message is
  refused (``bad_timestamp``): guessing the zone would shift a claim's evidence by hours.
- A sensor object with a ``null`` temperature (a probe that did not answer) is counted
  ``no_value``; a message whose sensors have only humidity is ``no_temperature``;
  other topics of the device (``STATE``, ``LWT``, ``RESULT``) are ``ignored``.
"""

from __future__ import annotations

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_TEMPERATURE,
    NO_VALUE,
    FormatDecoder,
    counted,
    iso_to_ns,
    optional_number,
    parse_object,
    sample,
    temp_unit_of,
)
from gateway.core.model import RawSample, Reject


class TasmotaDecoder(FormatDecoder):
    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        kind = topic.rsplit("/", 1)[-1]
        if kind not in ("SENSOR", "STATUS10"):
            return Decoded(
                (), (counted(IGNORED, f"Tasmota {kind} is not telemetry", topic, source),)
            )
        device = self.device_from_topic(topic, 1)
        document = parse_object(payload, self._max)
        wrapped = document.get("StatusSNS")
        if type(wrapped) is dict:
            document = wrapped
        unit = None
        if document.get("TempUnit") is not None:
            unit = temp_unit_of(document["TempUnit"], "TempUnit")
        ts_ns = None
        if document.get("Time") is not None:
            ts_ns = iso_to_ns(document["Time"], "Time", self._zone)
        temp_key = self.mapping.temp_key or "Temperature"
        rh_key = self.mapping.rh_key or "Humidity"
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        for name, values in document.items():
            if type(values) is not dict or (temp_key not in values and rh_key not in values):
                continue
            probe = values.get("Id")
            device_id = f"{device}/{probe if type(probe) is str and probe else name}"
            where = f"{name}.{temp_key}"
            if values.get(temp_key) is None:
                if temp_key in values:
                    rejects.append(counted(NO_VALUE, f"{where} is null", topic, source))
                else:
                    rejects.append(counted(NO_TEMPERATURE, f"{name}: no {temp_key}", topic, source))
                continue
            samples.append(
                sample(
                    self.sensor(device_id),
                    self.celsius(values[temp_key], where, unit),
                    ts_ns,
                    received_ns,
                    source,
                    rh=optional_number(values, rh_key, f"{name}.{rh_key}"),
                )
            )
        if not samples and not rejects:
            rejects.append(counted(NO_TEMPERATURE, "no sensor object", topic, source))
        return Decoded(samples, rejects)


FORMAT = FormatSpec(
    name="tasmota",
    create=TasmotaDecoder,
    topic="tele/+/SENSOR",
    summary="Tasmota SENSOR telemetry: one reading per sensor object, TempUnit, local Time",
)
