"""The generic JSON mapping (``format = "json"``, the default): field paths from config.

One JSON object per message, one reading per object, each field found by a dotted path
of the subscription (``temp_path``, ``sensor_path`` or ``sensor_topic_segment``, ...).
The mapping itself is ``drivers.mqtt.payload.PayloadMapper``; this module only plugs it
into the decoder seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.mqtt.formats import FormatSpec
from drivers.mqtt.payload import PayloadMapper

if TYPE_CHECKING:
    from drivers.mqtt.config import TopicMapping


def create(
    mapping: TopicMapping, sensor_ids: Mapping[str, str], max_payload_bytes: int
) -> PayloadMapper:
    """PayloadMapper is the decoder itself (``decode``): no wrapper on the hot path."""
    return PayloadMapper(mapping, sensor_ids, max_payload_bytes)


FORMAT = FormatSpec(
    name="json",
    create=create,
    topic="sensors/+/telemetry",
    summary="one JSON object per message, fields by configured paths",
    needs_sensor_source=True,
)
