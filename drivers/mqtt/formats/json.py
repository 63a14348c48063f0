"""The generic JSON mapping (``format = "json"``, the default): field paths from config.

One JSON object per message, one reading per object, each field found by a dotted path
of the subscription (``temp_path``, ``sensor_path`` or ``sensor_topic_segment``, ...).
The mapping itself is ``drivers.mqtt.payload.PayloadMapper``; this module only plugs it
into the decoder seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.mqtt.formats import Decoded, FormatSpec
from drivers.mqtt.payload import PayloadMapper
from gateway.core.model import RawSample

if TYPE_CHECKING:
    from drivers.mqtt.config import TopicMapping

_NOTHING = ()


class JsonDecoder:
    """PayloadMapper behind the PayloadDecoder protocol: one sample or one reject."""

    __slots__ = ("_map", "mapper")

    def __init__(self, mapper: PayloadMapper) -> None:
        self.mapper = mapper
        self._map = mapper.map

    def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        result = self._map(topic, payload, received_ns, source)
        if type(result) is RawSample:
            return Decoded((result,), _NOTHING)
        return Decoded(_NOTHING, (result,))  # type: ignore[arg-type]


def create(
    mapping: TopicMapping, sensor_ids: Mapping[str, str], max_payload_bytes: int
) -> JsonDecoder:
    return JsonDecoder(PayloadMapper(mapping, sensor_ids, max_payload_bytes))


FORMAT = FormatSpec(
    name="json",
    create=create,
    topic="sensors/+/telemetry",
    summary="one JSON object per message, fields by configured paths",
    needs_sensor_source=True,
)
