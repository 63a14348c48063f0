"""What the two LoRaWAN network servers share: a decoded object from the device's codec.

The temperature is ``temp_key`` inside the decoded object (default ``temperature``; a
dotted path such as ``temperatureSensor.1`` for CayenneLPP in ChirpStack). An uplink with
no decoded object (no payload formatter / codec configured) is a ``missing_field`` dead
letter; one whose object lacks the key is ``no_temperature``, unless the object has a key
that looks like a temperature, which is a dead letter naming it (``temp_key`` is
probably needed), so a misconfiguration cannot hide behind a counter.
"""

from __future__ import annotations

from drivers.mqtt.formats import Decoded
from drivers.mqtt.formats._common import (
    NO_TEMPERATURE,
    FormatDecoder,
    Invalid,
    counted,
    lookup,
    number,
    sample,
)
from drivers.mqtt.payload import MISSING_FIELD


class DecodedObjectDecoder(FormatDecoder):
    object_name = ""

    def reading(
        self,
        device: str,
        decoded: object,
        ts_ns: int | None,
        seq: int | None,
        topic: str,
        received_ns: int,
        source: str,
    ) -> Decoded:
        if type(decoded) is not dict:
            raise Invalid(
                MISSING_FIELD,
                f"{self.object_name}: absent; configure a payload formatter/codec for the device",
            )
        temp_key = self.mapping.temp_key or "temperature"
        value = lookup(decoded, temp_key)
        if value is None:
            hints = sorted(k for k in decoded if "temp" in k.lower())
            if hints:
                raise Invalid(
                    MISSING_FIELD,
                    f"{self.object_name}.{temp_key} absent but {', '.join(hints)[:100]} present:"
                    " set temp_key",
                )
            return Decoded((), (counted(NO_TEMPERATURE, f"no {temp_key}", topic, source),))
        rh_key = self.mapping.rh_key or "humidity"
        rh_value = lookup(decoded, rh_key)
        rh = None if rh_value is None else number(rh_value, f"{self.object_name}.{rh_key}")
        battery_v = battery_pct = None
        if self.mapping.battery_key is not None:
            battery_v, battery_pct = self.battery_of(
                lookup(decoded, self.mapping.battery_key), self.mapping.battery_key, "V"
            )
        return Decoded(
            (
                sample(
                    self.sensor(device),
                    self.celsius(value, f"{self.object_name}.{temp_key}"),
                    ts_ns,
                    received_ns,
                    source,
                    rh=rh,
                    battery_v=battery_v,
                    battery_pct=battery_pct,
                    seq=seq,
                ),
            ),
            (),
        )
