"""Payload formats of the MQTT driver: the ``PayloadDecoder`` seam.

A format turns the messages of one subscription into raw samples and rejects. It is a
module ``drivers/mqtt/formats/<name>.py`` that defines ``FORMAT = FormatSpec(...)`` and
one line in ``FORMATS`` below; ``format = "<name>"`` on a subscription selects it
(``json``, the generic field-path mapping, is the default). Modules are imported only
when a subscription uses them, so a format's dependencies (protobuf for Sparkplug B)
cost nothing to a gateway that does not.

The contract (see drivers/mqtt/README.md, "Payload formats, and writing one"):

- ``FormatSpec.create(mapping, sensor_ids, max_payload_bytes)`` is called once per
  subscription **per connection**: a decoder may keep per-connection state (Sparkplug
  B's alias tables and sequence numbers) and loses it with the connection, as the
  protocol wants (a new session starts from a fresh birth).
- ``decode(topic, payload, received_ns, source) -> Decoded``: one message may yield any
  number of samples (Tasmota's ``DS18B20-1..n``, Sparkplug metrics) and rejects. It must
  not raise; the router still turns an exception into a ``decoder_error`` dead letter
  so a format bug can never stop the driver or lose the payload.
- Values are converted to the gateway's units (°C, V, %) by the format: a reading whose
  unit is unknown or cannot be converted is refused visibly, never stored as read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from gateway.core.model import RawSample, Reject

if TYPE_CHECKING:
    from drivers.mqtt.config import TopicMapping

# name -> module (imported on first use); each module defines FORMAT: FormatSpec.
FORMATS: Final[Mapping[str, str]] = {
    "json": "drivers.mqtt.formats.json",
    "zigbee2mqtt": "drivers.mqtt.formats.zigbee2mqtt",
    "tasmota": "drivers.mqtt.formats.tasmota",
    "shelly": "drivers.mqtt.formats.shelly",
    "esphome": "drivers.mqtt.formats.esphome",
    "homeassistant": "drivers.mqtt.formats.homeassistant",
    "ttn": "drivers.mqtt.formats.ttn",
    "chirpstack": "drivers.mqtt.formats.chirpstack",
    "sparkplug_b": "drivers.mqtt.formats.sparkplug_b",
}

DEFAULT_FORMAT: Final = "json"


class Decoded:
    """What one message became: any number of samples and rejects.

    A plain slotted class (not a dataclass): it is built once per message on the MQTT
    hot path, and this is the cheapest object with named fields.
    """

    __slots__ = ("rejects", "samples")

    def __init__(self, samples: Sequence[RawSample] = (), rejects: Sequence[Reject] = ()) -> None:
        self.samples = samples
        self.rejects = rejects

    def __repr__(self) -> str:
        return f"Decoded(samples={self.samples!r}, rejects={self.rejects!r})"


class PayloadDecoder(Protocol):
    """Decodes the messages of one subscription on one connection."""

    def decode(self, topic: str, payload: bytes, received_ns: int, source: str) -> Decoded:
        """Samples and rejects of one message; never raises."""
        ...


DecoderFactory = Callable[["TopicMapping", Mapping[str, str], int], PayloadDecoder]


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """A payload format: how to build its decoder, and what it expects on the wire.

    ``topic`` is the filter the ecosystem publishes on by default (for docs, discovery
    and check-config); ``needs_sensor_source`` says whether the subscription must name
    where the sensor id is (the generic JSON mapping), or the format knows its layout.
    """

    name: str
    create: DecoderFactory
    topic: str
    summary: str
    needs_sensor_source: bool = False


class UnknownFormat(ValueError):
    """A subscription names a format that is not in FORMATS."""


def format_spec(name: str) -> FormatSpec:
    """The spec of a registered format (its module imported on first use)."""
    module_name = FORMATS.get(name)
    if module_name is None:
        known = ", ".join(sorted(FORMATS))
        msg = f"unknown payload format {name!r} (known: {known})"
        raise UnknownFormat(msg)
    spec: FormatSpec = importlib.import_module(module_name).FORMAT
    return spec


def reject(
    reason: str, detail: str, topic: str, payload: bytes, source: str, *, dead_letter: bool = True
) -> Reject:
    """A reject of one message; dead letters keep the raw payload for the journal."""
    return Reject(
        reason=reason,
        source=source,
        raw=payload if dead_letter else b"",
        topic=topic,
        detail=detail,
        dead_letter=dead_letter,
    )
