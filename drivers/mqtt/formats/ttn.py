"""The Things Stack v3 (The Things Network): ``v3/<app>@<tenant>/devices/<device>/up``.

Layout (https://www.thethingsindustries.com/docs/integrations/other-integrations/mqtt/,
.../integrations/data-formats/): the uplink JSON has ``end_device_ids.device_id``,
``received_at`` and ``uplink_message`` with ``f_cnt``, ``decoded_payload`` (what the
device's payload formatter returned) and ``rx_metadata[].time``. The reading's time is
the first gateway's reception time, else the network server's ``received_at``
(nanosecond ISO 8601, UTC). ``f_cnt`` is kept as the reading's sequence number. The other
message types on the device's topics (join, down/..., service/data) are ``ignored``.
"""

from __future__ import annotations

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.formats._common import IGNORED, Invalid, counted, iso_to_ns, parse_object
from drivers.mqtt.formats._lorawan import DecodedObjectDecoder
from drivers.mqtt.payload import BAD_TYPE, MISSING_FIELD


class TtnDecoder(DecodedObjectDecoder):
    object_name = "uplink_message.decoded_payload"

    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        if not topic.endswith("/up"):
            return Decoded((), (counted(IGNORED, "not an uplink", topic, source),))
        document = parse_object(payload, self._max)
        ids = document.get("end_device_ids")
        device = ids.get("device_id") if type(ids) is dict else None
        if type(device) is not str or not device:
            raise Invalid(MISSING_FIELD, "end_device_ids.device_id: missing")
        uplink = document.get("uplink_message")
        if type(uplink) is not dict:
            raise Invalid(MISSING_FIELD, "uplink_message: missing")
        when: object = None
        metadata = uplink.get("rx_metadata")
        if type(metadata) is list and metadata and type(metadata[0]) is dict:
            when = metadata[0].get("time")
        if when is None:
            when = uplink.get("received_at") or document.get("received_at")
        ts_ns = None if when is None else iso_to_ns(when, "received_at", self._zone)
        f_cnt = uplink.get("f_cnt")
        if f_cnt is not None and type(f_cnt) is not int:
            raise Invalid(BAD_TYPE, "uplink_message.f_cnt: expected an integer")
        return self.reading(
            device, uplink.get("decoded_payload"), ts_ns, f_cnt, topic, received_ns, source
        )


FORMAT = FormatSpec(
    name="ttn",
    create=TtnDecoder,
    topic="v3/+/devices/+/up",
    summary="The Things Stack v3 uplinks: decoded_payload, gateway time, f_cnt",
)
