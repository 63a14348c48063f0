"""State topics whose payload is the value itself as text (ESPHome, Home Assistant).

``4.25`` is a reading; the words the ecosystem uses for "no value right now" are counted
``no_value`` (not errors); anything else that is not a number is a ``bad_type`` dead
letter. The unit is the subscription's ``temp_unit`` (the state topic carries none).
"""

from __future__ import annotations

import math

from drivers.mqtt.formats import Decoded
from drivers.mqtt.formats._common import (
    IGNORED,
    NO_VALUE,
    FormatDecoder,
    Invalid,
    counted,
    sample,
)
from drivers.mqtt.payload import BAD_TYPE, NOT_JSON, TOO_LARGE

# Longest plausible number text; anything longer is not a state value.
_MAX_STATE_BYTES = 64


class PlainStateDecoder(FormatDecoder):
    """One number per message on ``.../<name>/state``; device id from the topic."""

    no_value_words: frozenset[str] = frozenset()
    device_levels: tuple[int, ...] = ()

    def _decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        levels = topic.split("/")
        if levels[-1] != "state":
            return Decoded((), (counted(IGNORED, "not a state topic", topic, source),))
        if len(payload) > _MAX_STATE_BYTES:
            raise Invalid(TOO_LARGE, f"{len(payload)} bytes is not a state value")
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise Invalid(NOT_JSON, "state payload is not UTF-8 text") from None
        if text.lower() in self.no_value_words:
            return Decoded((), (counted(NO_VALUE, f"state {text!r}", topic, source),))
        try:
            value = float(text)
        except ValueError:
            raise Invalid(BAD_TYPE, f"state {text[:32]!r} is not a number") from None
        if not math.isfinite(value):
            return Decoded((), (counted(NO_VALUE, f"state {text!r}", topic, source),))
        if self._segment is not None:
            device = self.device_from_topic(topic, self._segment)
        else:
            device = "/".join(levels[i] for i in self.device_levels if i < len(levels))
        return Decoded(
            (sample(self.sensor(device), self.celsius(value, "state"), None, received_ns, source),),
            (),
        )
