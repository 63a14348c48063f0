"""Home Assistant state topics (MQTT Statestream): ``homeassistant/sensor/<id>/state``.

Layout (https://www.home-assistant.io/integrations/mqtt_statestream/): the entity's
state as plain text, ``4.25``; ``unavailable`` and ``unknown`` are Home Assistant's
"no value" states and are counted ``no_value``. The device id is the entity's object id
(``sensor.freezer_temperature`` -> ``freezer_temperature``). The unit is the entity's
``unit_of_measurement`` attribute, published on a topic of its own: set ``temp_unit``
if the entity is in °F or K.
"""

from __future__ import annotations

from drivers.mqtt.formats import FormatSpec
from drivers.mqtt.formats._plain import PlainStateDecoder


class HomeAssistantDecoder(PlainStateDecoder):
    no_value_words = frozenset({"unavailable", "unknown", "none", "nan"})
    device_levels = (2,)


FORMAT = FormatSpec(
    name="homeassistant",
    create=HomeAssistantDecoder,
    topic="homeassistant/sensor/+/state",
    summary="Home Assistant statestream: the state as text, unavailable/unknown = no value",
)
