"""Sensor nodes publishing JSON over MQTT (aiomqtt, QoS 1, persistent session)."""
