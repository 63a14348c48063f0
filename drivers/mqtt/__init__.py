"""Sensor nodes publishing over MQTT (aiomqtt, QoS 1, persistent session)."""

from __future__ import annotations

from drivers.base import Driver, DriverSpec
from drivers.mqtt.config import MqttDriverConfig
from gateway.core.clock import Clock


def _create(config: MqttDriverConfig, clock: Clock) -> Driver:
    from drivers.mqtt.driver import MqttDriver  # lazy: aiomqtt loads only to run

    return MqttDriver(config, clock)


SPEC = DriverSpec(config=MqttDriverConfig, create=_create, summary="sensor nodes on a broker")
