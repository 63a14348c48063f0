"""ESPHome's MQTT state topics: ``<topic_prefix>/sensor/<object_id>/state`` = ``24.50``.

Layout (https://esphome.io/components/mqtt): each sensor publishes its value as plain
text on its state topic; ``nan`` means the sensor has no valid reading (a disconnected
probe) and is counted ``no_value``. The device id is ``<topic_prefix>/<object_id>``
(``freezer-node/probe_1``). The unit is the sensor's ``unit_of_measurement``, which the
state topic does not carry: set ``temp_unit`` if the node reports °F or K.
Subscribe to the temperature sensors' state topics (``+/sensor/+/state`` takes every
sensor of every node, humidity included, which would be read as temperatures).
"""

from __future__ import annotations

from drivers.mqtt.formats import FormatSpec
from drivers.mqtt.formats._plain import PlainStateDecoder


class EsphomeDecoder(PlainStateDecoder):
    no_value_words = frozenset({"nan", "-nan"})
    device_levels = (0, 2)


FORMAT = FormatSpec(
    name="esphome",
    create=EsphomeDecoder,
    topic="+/sensor/+/state",
    summary="ESPHome sensor state topics: the number as text, nan = no value",
)
