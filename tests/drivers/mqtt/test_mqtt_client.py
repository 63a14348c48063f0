"""Pins every aiomqtt / paho private attribute drivers/mqtt/client.py relies on.

An upgrade of aiomqtt or paho that renames or retypes one of them fails here, naming
the attribute, instead of silently losing the manual acknowledgement (PUBACK before the
journal commit) or the batch draining. One test per entry of PRIVATE_ATTRIBUTES.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import socket

import aiomqtt
import paho.mqtt.client as paho

from drivers.mqtt import client as mqtt_client


def _client() -> aiomqtt.Client:
    # Built, never connected: the attributes exist from construction on.
    return aiomqtt.Client("127.0.0.1", 1, identifier="pin-test")


def _paho() -> paho.Client:
    return mqtt_client.paho_client(_client())


def test_every_private_attribute_has_a_pin() -> None:
    pinned = {
        name.removeprefix("test_pins_") for name in globals() if name.startswith("test_pins_")
    }
    listed = {attribute.lstrip("_") for _, attribute, _ in mqtt_client.PRIVATE_ATTRIBUTES}
    assert listed == pinned


async def test_pins_client() -> None:
    client = _client()
    assert isinstance(client._client, paho.Client)
    assert mqtt_client.paho_client(client) is client._client


async def test_pins_queue() -> None:
    client = _client()
    queue = mqtt_client.waiting_messages(client)
    assert isinstance(queue, asyncio.Queue)
    # client.messages reads this very queue: len(messages) is its size.
    queue.put_nowait(aiomqtt.Message("a/b", b"x", 1, False, 7, None))
    assert len(client.messages) == 1


async def test_pins_out_packet() -> None:
    assert isinstance(_paho()._out_packet, collections.deque)


async def test_pins_sock() -> None:
    inner = _paho()
    assert hasattr(inner, "_sock")
    assert inner._sock is None


async def test_pins_on_message_filtered() -> None:
    inner = _paho()
    root = inner._on_message_filtered._root
    assert root._children == {}
    client = _client()
    mqtt_client.tune_for_throughput(client)
    replaced = mqtt_client.paho_client(client)._on_message_filtered
    assert list(replaced.iter_match("a/b")) == []


async def test_pins_create_socket() -> None:
    client = _client()
    inner = mqtt_client.paho_client(client)
    assert callable(inner._create_socket)
    assert list(inspect.signature(inner._create_socket).parameters) == []
    left, right = socket.socketpair()
    with left, right:
        inner._create_socket = lambda: right  # type: ignore[method-assign]
        mqtt_client.tune_for_throughput(client)
        assert isinstance(inner._create_socket(), mqtt_client.BufferedSocket)


async def test_pins_packet_queue() -> None:
    parameters = list(inspect.signature(_paho()._packet_queue).parameters)
    assert parameters[:4] == ["command", "packet", "mid", "qos"]


async def test_pins_manual_ack() -> None:
    client = _client()
    inner = mqtt_client.paho_client(client)
    assert inner._manual_ack is False
    mqtt_client.enable_manual_acks(client)
    assert inner._manual_ack is True


async def test_batched_pubacks_are_the_bytes_of_single_ones() -> None:
    client = _client()
    mqtt_client.enable_manual_acks(client)
    inner = mqtt_client.paho_client(client)
    queued: list[tuple[int, bytes]] = []

    def capture(command: int, packet: bytes, mid: int, qos: int, info: object = None) -> None:
        queued.append((command, packet))

    inner._packet_queue = capture  # type: ignore[assignment,method-assign]
    mqtt_client.send_pubacks(inner, [1, 2, 300])
    assert queued == [(paho.PUBACK, b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x01\x2c")]


def test_pubacks_fall_back_to_public_ack_without_manual_ack_flag() -> None:
    class Minimal:
        def __init__(self) -> None:
            self.acked: list[tuple[int, int]] = []

        def ack(self, mid: int, qos: int) -> None:
            self.acked.append((mid, qos))

    minimal = Minimal()
    mqtt_client.send_pubacks(minimal, [4, 5])  # type: ignore[arg-type]
    assert minimal.acked == [(4, 1), (5, 1)]
