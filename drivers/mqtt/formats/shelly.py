"""Shelly Gen2+ (Plus, Pro, Gen3, Gen4): RPC notifications and component status topics.

Layout (https://shelly-api-docs.shelly.cloud/gen2/General/Notifications and
.../ComponentsAndServices/Temperature):

- ``<shelly-id>/events/rpc``: JSON-RPC frames. ``NotifyStatus`` and ``NotifyFullStatus``
  carry ``params.ts`` (Unix seconds, UTC) and one object per component, keyed
  ``<type>:<id>``. Each ``temperature:<n>`` component is one reading (``tC``, °C),
  with ``humidity:<n>`` (``rh``) of the same ``n`` and the battery of ``devicepower:0``
  (``battery.V`` volts, ``battery.percent``). ``NotifyEvent`` and components that are
  not sensors (switch, cloud, wifi) are ``ignored``.
- ``<shelly-id>/status/temperature:<n>`` (the device's "generic status update"
  topics): the component's status object itself, with no timestamp.

Device ids are ``<shelly-id>`` for ``temperature:0`` and ``<shelly-id>/temperature:<n>``
for the others (the add-on's extra probes). ``tC: null`` (no valid value) is counted
``no_value``; humidity- or battery-only notifications are ``no_temperature``.
"""

from __future__ import annotations

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_TEMPERATURE,
    NO_VALUE,
    FormatDecoder,
    Invalid,
    counted,
    epoch_to_ns,
    number,
    parse_object,
    sample,
)
from drivers.mqtt.payload import MISSING_FIELD
from gateway.core.model import RawSample, Reject

_STATUS_METHODS = ("NotifyStatus", "NotifyFullStatus")
_VALUE_TYPES = ("temperature", "humidity", "devicepower")


class ShellyDecoder(FormatDecoder):
    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        levels = topic.split("/")
        if len(levels) >= 3 and levels[-2] == "status":
            return self._status(topic, levels, payload, received_ns, source)
        document = parse_object(payload, self._max)
        method = document.get("method")
        if method not in _STATUS_METHODS:
            detail = f"method {str(method)[:40]!r} is not a status notification"
            return Decoded((), (counted(IGNORED, detail, topic, source),))
        params = document.get("params")
        if type(params) is not dict:
            raise Invalid(MISSING_FIELD, "params: missing or not an object")
        device = document.get("src")
        if type(device) is not str or not device:
            device = self.device_from_topic(topic, 0)
        ts_ns = None if params.get("ts") is None else epoch_to_ns(params["ts"], 10**9, "params.ts")
        battery_v, battery_pct = self._battery(params.get("devicepower:0"))
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        for key, status in params.items():
            kind, _, index = key.partition(":")
            if kind != "temperature" or type(status) is not dict:
                continue
            value = status.get("tC")
            if value is None:
                rejects.append(counted(NO_VALUE, f"{key}.tC is null", topic, source))
                continue
            humidity = params.get(f"humidity:{index}")
            rh = None
            if type(humidity) is dict and humidity.get("rh") is not None:
                rh = number(humidity["rh"], f"humidity:{index}.rh")
            samples.append(
                sample(
                    self.sensor(device if index == "0" else f"{device}/{key}"),
                    self.celsius(value, f"{key}.tC"),
                    ts_ns,
                    received_ns,
                    source,
                    rh=rh,
                    battery_v=battery_v,
                    battery_pct=battery_pct,
                )
            )
        if not samples and not rejects:
            kinds = {key.partition(":")[0] for key in params}
            reason = NO_TEMPERATURE if kinds & set(_VALUE_TYPES) else IGNORED
            rejects.append(counted(reason, "no temperature component", topic, source))
        return Decoded(samples, rejects)

    def _status(
        self, topic: str, levels: list[str], payload: bytes, received_ns: int, source: str
    ) -> Decoded:
        key = levels[-1]
        kind, _, index = key.partition(":")
        if kind != "temperature":
            reason = NO_TEMPERATURE if kind in _VALUE_TYPES else IGNORED
            return Decoded((), (counted(reason, f"{key} is not a temperature", topic, source),))
        device = self.device_from_topic(topic, 0)
        status = parse_object(payload, self._max)
        value = status.get("tC")
        if value is None:
            return Decoded((), (counted(NO_VALUE, f"{key}.tC is null", topic, source),))
        sensor = self.sensor(device if index == "0" else f"{device}/{key}")
        return Decoded((sample(sensor, self.celsius(value, "tC"), None, received_ns, source),), ())

    def _battery(self, power: object) -> tuple[float | None, float | None]:
        if type(power) is not dict or type(power.get("battery")) is not dict:
            return None, None
        battery: dict[str, object] = power["battery"]
        volts = battery.get("V")
        percent = battery.get("percent")
        return (
            None if volts is None else number(volts, "devicepower:0.battery.V"),
            None if percent is None else number(percent, "devicepower:0.battery.percent"),
        )


FORMAT = FormatSpec(
    name="shelly",
    create=ShellyDecoder,
    topic="+/events/rpc",
    summary="Shelly Gen2+ NotifyStatus / NotifyFullStatus and status/temperature:<n> topics",
)
