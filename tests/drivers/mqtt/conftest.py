"""Fixtures of the MQTT driver tests: a QoS 1 publisher and driver configs for the broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.config import MqttDriverConfig, TopicMapping
from gateway.apps.localservices import Mosquitto

Message = tuple[str, bytes | dict[str, Any]]


class Publisher:
    """Publishes with paho (QoS 1 unless told) and returns once the broker PUBACKed all."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker

    def publish_sync(self, messages: Iterable[Message], qos: int = 1, retain: bool = False) -> None:
        """Blocking: connect, publish every message, wait for the acks, disconnect."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        client.max_inflight_messages_set(1000)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            infos = []
            for topic, body in messages:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                infos.append(client.publish(topic, payload, qos=qos, retain=retain))
            for info in infos:
                info.wait_for_publish(timeout=30)
                assert info.is_published()
        finally:
            client.disconnect()
            client.loop_stop()

    async def publish(
        self, messages: Iterable[Message], qos: int = 1, retain: bool = False
    ) -> None:
        """publish_sync in a thread, so the event loop (and the driver) keeps running."""
        await asyncio.to_thread(self.publish_sync, list(messages), qos, retain)


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Publisher:
    """A QoS 1 publisher on the test's broker."""
    return Publisher(mosquitto)


@pytest.fixture
def driver_config(mosquitto: Mosquitto) -> Callable[..., MqttDriverConfig]:
    """Factory of driver configs for the test's broker: ``sensors/+/telemetry``, epoch_ms."""

    def make(**overrides: Any) -> MqttDriverConfig:
        fields: dict[str, Any] = {
            "name": "nodes",
            "host": mosquitto.host,
            "port": mosquitto.port,
            "keepalive_s": 5,
            "subscriptions": [
                TopicMapping(
                    topic="sensors/+/telemetry",
                    sensor_path="id",
                    temp_path="temp_c",
                    ts_path="ts",
                    ts_format="epoch_ms",
                    seq_path="n",
                )
            ],
        }
        fields.update(overrides)
        return MqttDriverConfig.model_validate(fields)

    return make
