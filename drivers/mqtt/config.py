"""Config block of the MQTT sensor-node driver: ``[[drivers.mqtt]]``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.connection import MqttConnectionConfig


class TopicMapping(BaseModel):
    """How JSON payloads on one topic filter become readings.

    Field paths are dotted paths into the JSON document (``data.temp``, ``probes.0.t``).
    The sensor id comes from a payload path or from a topic segment (0-based).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(min_length=1, description="MQTT topic filter, wildcards allowed")
    sensor_path: str | None = None
    sensor_topic_segment: int | None = Field(default=None, ge=0)
    temp_path: str = "temp_c"
    ts_path: str | None = "ts"
    ts_format: Literal["epoch_s", "epoch_ms", "iso8601"] = "epoch_ms"
    rh_path: str | None = None
    battery_path: str | None = None
    seq_path: str | None = None

    @model_validator(mode="after")
    def _one_sensor_source(self) -> TopicMapping:
        if (self.sensor_path is None) == (self.sensor_topic_segment is None):
            msg = "give exactly one of sensor_path or sensor_topic_segment"
            raise ValueError(msg)
        return self


class MqttDriverConfig(MqttConnectionConfig):
    """Sensor nodes on a broker, subscribed at QoS 1 with a persistent session."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="instance name, unique")
    qos: Literal[0, 1] = 1
    subscriptions: list[TopicMapping] = Field(min_length=1)
    sensor_ids: dict[str, str] = Field(
        default_factory=dict,
        description="optional device id -> sensor id; unmapped ids are used as they are",
    )
    max_payload_bytes: int = Field(default=16_384, ge=64)
