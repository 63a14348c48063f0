"""Config block of the MQTT sensor-node driver: ``[[drivers.mqtt]]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.base import DriverConfig
from drivers.mqtt.formats import DEFAULT_FORMAT, FORMATS
from drivers.mqtt.topics import filters_overlap
from gateway.core.tls import MqttConnectionConfig

# Fields of the generic JSON mapping only: a named format knows its own layout.
_JSON_ONLY_FIELDS: Final = (
    "sensor_path",
    "temp_path",
    "ts_path",
    "ts_format",
    "rh_path",
    "battery_path",
    "seq_path",
)
_FORMAT_ONLY_FIELDS: Final = ("temp_key", "rh_key", "battery_key")


class TopicMapping(BaseModel):
    """How the payloads on one topic filter become readings.

    ``format`` names the payload format (drivers/mqtt/formats/); the default ``json`` is
    the generic mapping, where field paths are dotted paths into the JSON document
    (``data.temp``, ``probes.0.t``) and the sensor id comes from a payload path or from
    a topic segment (0-based).
    With a payload ``sensor_path``, ``device_topic_segment`` names the topic level that
    identifies the publishing device (``sensors/+/telemetry``: 1); a payload id that
    differs from it is refused ``identity_mismatch``, so with the broker's
    ``pattern write sensors/%u/telemetry`` a node can only report for itself
    (docs/security.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(min_length=1, description="MQTT topic filter, wildcards allowed")
    format: str = Field(default=DEFAULT_FORMAT, description="payload format, see FORMATS")
    sensor_path: str | None = None
    sensor_topic_segment: int | None = Field(default=None, ge=0)
    device_topic_segment: int | None = Field(
        default=None,
        ge=0,
        description="with sensor_path: the topic level naming the device; the payload id"
        " must equal it",
    )
    temp_path: str = "temp_c"
    ts_path: str | None = "ts"
    ts_format: Literal["epoch_s", "epoch_ms", "iso8601"] = "epoch_ms"
    rh_path: str | None = None
    battery_path: str | None = None
    seq_path: str | None = None
    # Named formats: which key / metric holds a value, when not the format's default.
    temp_key: str | None = Field(default=None, min_length=1)
    rh_key: str | None = Field(default=None, min_length=1)
    battery_key: str | None = Field(default=None, min_length=1)
    # Every format: units (a unit in the payload itself wins) and device-local time.
    temp_unit: Literal["C", "F", "K"] | None = None
    battery_unit: Literal["V", "mV", "%"] | None = None
    time_zone: str | None = Field(
        default=None,
        description="IANA zone for timestamps without offset (Tasmota's Time); none: refuse",
    )

    @model_validator(mode="after")
    def _format_fields(self) -> TopicMapping:
        if self.format not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            msg = f"unknown format {self.format!r} (known: {known})"
            raise ValueError(msg)
        if self.time_zone is not None:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                msg = f"time_zone {self.time_zone!r} is not a known IANA zone (e.g. Europe/Lisbon)"
                raise ValueError(msg) from None
        if self.format == DEFAULT_FORMAT:
            if (self.sensor_path is None) == (self.sensor_topic_segment is None):
                msg = "give exactly one of sensor_path or sensor_topic_segment"
                raise ValueError(msg)
            keys = [name for name in _FORMAT_ONLY_FIELDS if getattr(self, name) is not None]
            if keys:
                msg = f"{', '.join(keys)}: format 'json' uses temp_path, rh_path, battery_path"
                raise ValueError(msg)
            if self.device_topic_segment is not None and self.sensor_path is None:
                msg = (
                    "device_topic_segment goes with sensor_path (the topic already names"
                    " the sensor)"
                )
                raise ValueError(msg)
            return self
        foreign = [name for name in _JSON_ONLY_FIELDS if name in self.model_fields_set]
        if foreign:
            msg = (
                f"format {self.format!r} knows its payload layout; "
                f"{', '.join(foreign)} belong to format 'json'"
            )
            raise ValueError(msg)
        if self.device_topic_segment is not None:
            msg = "device_topic_segment goes with format 'json' and sensor_path"
            raise ValueError(msg)
        return self


class MqttDriverConfig(MqttConnectionConfig, DriverConfig):
    """Sensor nodes on a broker, subscribed at QoS 1 with a persistent session."""

    qos: Literal[0, 1] = 1
    subscriptions: list[TopicMapping] = Field(min_length=1)
    sensor_ids: dict[str, str] = Field(
        default_factory=dict,
        description="optional device id -> sensor id; unmapped ids are used as they are",
    )
    sensors: list[str] = Field(
        default_factory=list,
        description="sensors this block may report under their own ids (besides the"
        " sensor_ids values); a reading for any other sensor is refused identity_mismatch",
    )
    max_payload_bytes: int = Field(default=16_384, ge=64)

    def sensor_refs(self) -> Iterator[tuple[str, str]]:
        """Each mapped device's sensor, and the sensors reported under their own id."""
        for device, sensor in self.sensor_ids.items():
            yield f"sensor_ids.{device}", sensor
        for index, sensor in enumerate(self.sensors):
            yield f"sensors[{index}]", sensor

    def resources(self) -> Iterator[str]:
        """The session: two drivers with one client id on one broker steal it."""
        yield f"mqtt-session:{self.host}:{self.port}:{self.session_client_id}"

    def warnings(self) -> Iterator[tuple[str, str]]:
        """Subscriptions that overlap: the first in config order decodes the shared topics."""

        for j, later in enumerate(self.subscriptions):
            for i, earlier in enumerate(self.subscriptions[:j]):
                if filters_overlap(earlier.topic, later.topic):
                    yield (
                        f"subscriptions[{j}].topic",
                        f"{later.topic!r} overlaps subscriptions[{i}] {earlier.topic!r}: "
                        f"topics matching both are decoded as {earlier.format!r} only (the "
                        "first matching subscription wins); narrow one of them or reorder",
                    )

    @property
    def session_client_id(self) -> str:
        """The client id the persistent session is kept under."""
        return self.client_id or f"coldchain-{self.name}"
