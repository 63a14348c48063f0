"""The MQTT node simulator against a real private Mosquitto."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.node import SensorNodeSim, telemetry_topic

pytestmark = pytest.mark.integration


class Subscriber:
    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe("sensors/+/telemetry", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Any, timeout_s: float = 4.0) -> None:
    event = threading.Event()
    deadline = threading.Timer(timeout_s, event.set)
    deadline.start()
    try:
        while not condition():
            if event.wait(0.01):
                raise TimeoutError
    finally:
        deadline.cancel()


def test_nodes_publish_json_at_qos1_and_count_it(mosquitto: Any) -> None:
    sub = Subscriber(mosquitto.host, mosquitto.port)
    try:
        with SensorNodeSim(
            mosquitto.host, mosquitto.port, 3, start_ms=1_000_000, interval_s=10, seed=2
        ) as nodes:
            for _ in range(20):
                nodes.publish_round()
            wait_until(lambda: sum(nodes.acked.values()) == 60 and sub.count() == 60)
            assert nodes.pending == 0
            assert nodes.sent == Counter({"node-1": 20, "node-2": 20, "node-3": 20})
    finally:
        sub.close()
    by_device: dict[str, list[dict[str, Any]]] = {}
    for topic, payload in sub.messages:
        body = json.loads(payload)
        assert topic == telemetry_topic(body["id"])
        assert set(body) == {"id", "ts", "temp_c", "rh", "battery_v", "seq"}
        by_device.setdefault(body["id"], []).append(body)
    for bodies in by_device.values():
        assert [b["seq"] for b in bodies] == list(range(1, 21))
        assert [b["ts"] for b in bodies] == [1_000_000 + 10_000 * i for i in range(1, 21)]
        assert all(isinstance(b["temp_c"], float) for b in bodies)


def test_malformed_payloads_are_injected_and_counted(mosquitto: Any) -> None:
    sub = Subscriber(mosquitto.host, mosquitto.port)
    try:
        with SensorNodeSim(mosquitto.host, mosquitto.port, 2, malformed_rate=0.3, seed=4) as nodes:
            for _ in range(50):
                nodes.publish_round()
            wait_until(lambda: sub.count() == 100)
            bad = sum(nodes.malformed.values())
            assert 15 < bad < 45 and sum(nodes.sent.values()) == 100 - bad
    finally:
        sub.close()
    kinds = Counter()
    for _, payload in sub.messages:
        try:
            body = json.loads(payload)
        except ValueError:
            kinds["not_json"] += 1
            continue
        if "temp_c" not in body:
            kinds["missing_temp"] += 1
        elif isinstance(body["temp_c"], str):
            kinds["temp_string"] += 1
    assert sum(kinds.values()) == bad
    assert set(kinds) == {"not_json", "missing_temp", "temp_string"}


def test_connect_to_nothing_fails_fast() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = SensorNodeSim("127.0.0.1", port, 1)
    with pytest.raises(OSError):
        nodes.connect()
