"""ChirpStack v4: ``application/<application id>/device/<dev eui>/event/up`` (JSON).

Layout (https://www.chirpstack.io/docs/chirpstack/integrations/events.html): the uplink
event has ``deviceInfo.devEui``, ``time`` (ISO 8601, nanoseconds), ``fCnt`` and
``object``, the output of the device profile's codec. The device id is the DevEUI (the
device name can be edited; the EUI cannot). The ``status`` event carries
``batteryLevel`` (%) without a temperature and is counted ``no_temperature``; the other
events (join, ack, txack, log, location, integration) are ``ignored``.
"""

from __future__ import annotations

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_TEMPERATURE,
    Invalid,
    counted,
    iso_to_ns,
    parse_object,
)
from drivers.mqtt.formats._lorawan import DecodedObjectDecoder
from drivers.mqtt.payload import BAD_TYPE, MISSING_FIELD


class ChirpStackDecoder(DecodedObjectDecoder):
    object_name = "object"

    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        event = topic.rsplit("/", 1)[-1]
        if event == "status":
            return Decoded((), (counted(NO_TEMPERATURE, "status event", topic, source),))
        if event != "up":
            return Decoded((), (counted(IGNORED, f"{event[:20]} event", topic, source),))
        document = parse_object(payload, self._max)
        info = document.get("deviceInfo")
        device = info.get("devEui") if type(info) is dict else None
        if type(device) is not str or not device:
            raise Invalid(MISSING_FIELD, "deviceInfo.devEui: missing")
        when = document.get("time")
        ts_ns = None if when is None else iso_to_ns(when, "time", self._zone)
        f_cnt = document.get("fCnt")
        if f_cnt is not None and type(f_cnt) is not int:
            raise Invalid(BAD_TYPE, "fCnt: expected an integer")
        return self.reading(
            device, document.get("object"), ts_ns, f_cnt, topic, received_ns, source
        )


FORMAT = FormatSpec(
    name="chirpstack",
    create=ChirpStackDecoder,
    topic="application/+/device/+/event/+",
    summary="ChirpStack v4 uplink events: codec object, time, fCnt, DevEUI",
)
