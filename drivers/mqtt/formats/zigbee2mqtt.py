"""Zigbee2MQTT: ``zigbee2mqtt/<friendly_name>`` state messages (JSON, one per device).

Layout (https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html): the base
topic (``zigbee2mqtt`` by default) then the device's friendly name, which may itself
contain ``/``. The values are the device's exposes: ``temperature`` (°C), ``humidity``
(%), ``battery`` (**percent**), ``voltage`` (battery **millivolts**), and ``last_seen``
when the bridge is configured to add it (ISO 8601 or epoch milliseconds). Bridge topics
(``zigbee2mqtt/bridge/...``) and the ``/availability``, ``/set``, ``/get`` sub-topics
are not sensor data and are only counted (``ignored``).

A message without ``temperature`` but with humidity or battery (a battery report) is
counted ``no_temperature``, not dead-lettered. ``temp_key`` picks another exposed key
(``local_temperature`` of a thermostat, ``device_temperature``).
"""

from __future__ import annotations

from typing import Final

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_TEMPERATURE,
    FormatDecoder,
    counted,
    epoch_to_ns,
    iso_to_ns,
    optional_number,
    parse_object,
    sample,
)

_NOT_STATE: Final = ("availability", "set", "get")


class Zigbee2MqttDecoder(FormatDecoder):
    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        name = topic.partition("/")[2]
        last = name.rsplit("/", 1)[-1]
        if not name or name.startswith("bridge/") or name == "bridge" or last in _NOT_STATE:
            return Decoded((), (counted(IGNORED, "not a device state topic", topic, source),))
        document = parse_object(payload, self._max)
        temp_key = self.mapping.temp_key or "temperature"
        rh = optional_number(document, self.mapping.rh_key or "humidity", "humidity")
        battery_v, _ = self.battery_of(document.get("voltage"), "voltage", "mV")
        pct_v, battery_pct = self.battery_of(
            document.get(self.mapping.battery_key or "battery"), "battery", "%"
        )
        battery_v = battery_v if battery_v is not None else pct_v
        value = document.get(temp_key)
        if value is None:
            what = "values" if (rh, battery_v, battery_pct) != (None, None, None) else "nothing"
            detail = f"{temp_key} absent ({what} else)"
            return Decoded((), (counted(NO_TEMPERATURE, detail, topic, source),))
        last_seen = document.get("last_seen")
        ts_ns = None
        if type(last_seen) is str:
            ts_ns = iso_to_ns(last_seen, "last_seen", self._zone)
        elif last_seen is not None:
            ts_ns = epoch_to_ns(last_seen, 1_000_000, "last_seen")
        return Decoded(
            (
                sample(
                    self.sensor(name),
                    self.celsius(value, temp_key),
                    ts_ns,
                    received_ns,
                    source,
                    rh=rh,
                    battery_v=battery_v,
                    battery_pct=battery_pct,
                ),
            ),
            (),
        )


FORMAT = FormatSpec(
    name="zigbee2mqtt",
    create=Zigbee2MqttDecoder,
    topic="zigbee2mqtt/#",
    summary="Zigbee2MQTT device state: temperature, humidity, battery %, voltage mV",
)
