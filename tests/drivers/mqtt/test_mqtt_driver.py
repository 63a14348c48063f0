"""MqttDriver against a real Mosquitto: samples, rejects, reconnection, manual acks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import aiomqtt
import pytest

from drivers.mqtt.client import BufferedSocket
from drivers.mqtt.config import MqttDriverConfig
from drivers.mqtt.driver import MAX_BATCH, MqttDriver
from gateway.apps.localservices import Mosquitto
from gateway.core.clock import ManualClock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery, RawSample, Reject

pytestmark = pytest.mark.integration


class Publisher(Protocol):
    """The ``publisher`` fixture of conftest.py (QoS 1 paho publisher)."""

    async def publish(
        self, messages: Iterable[tuple[str, Any]], qos: int = 1, retain: bool = False
    ) -> None: ...


WAIT_S = 20
T0_MS = 1_767_225_600_000
MARKER = "marker"


def reading(n: int, sensor: str = "") -> tuple[str, dict[str, Any]]:
    """Message n of a test run: sensor s<n % 7>, temp n/10, ts T0 + n s, seq n."""
    sensor = sensor or f"s{n % 7}"
    doc = {"id": sensor, "temp_c": n / 10, "ts": T0_MS + n * 1000, "n": n}
    return f"sensors/{sensor}/telemetry", doc


class Reader:
    """Pulls deliveries from one deliveries() call, with a deadline on every wait."""

    def __init__(self, driver: MqttDriver) -> None:
        self.stream: AsyncIterator[Delivery] = driver.deliveries()
        self.deliveries: list[Delivery] = []

    async def next(self) -> Delivery:
        """The next delivery, within WAIT_S."""
        async with asyncio.timeout(WAIT_S):
            delivery = await anext(self.stream)
        self.deliveries.append(delivery)
        return delivery

    async def until(
        self, done: Callable[[list[RawSample], list[Reject]], bool], ack: bool = True
    ) -> tuple[list[RawSample], list[Reject]]:
        """Read (and ack, like the supervisor after a commit) until done(samples, rejects)."""
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        while not done(samples, rejects):
            delivery = await self.next()
            samples.extend(delivery.samples)
            rejects.extend(delivery.rejects)
            if ack:
                delivery.ack()
        return samples, rejects

    async def until_seqs(self, wanted: set[int], ack: bool = True) -> list[RawSample]:
        """Read until every sequence number in wanted has arrived; returns the samples."""
        samples, _ = await self.until(
            lambda got, _r: wanted <= {s.seq for s in got if s.seq is not None}, ack=ack
        )
        return samples

    async def subscribed(self, publisher: Publisher) -> None:
        """Connect and prove the subscription: a retained marker comes back."""
        await publisher.publish([reading(-1, sensor=MARKER)], retain=True)
        await self.until(lambda got, _r: any(s.sensor == MARKER for s in got))

    async def close(self) -> None:
        """End the deliveries() call (a graceful DISCONNECT)."""
        await self.stream.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_driver(
    driver_config: Callable[..., MqttDriverConfig], clock: ManualClock
) -> Callable[..., MqttDriver]:
    def make(**overrides: Any) -> MqttDriver:
        return MqttDriver(driver_config(**overrides), clock)

    return make


async def test_qos1_messages_become_samples(
    make_driver: Callable[..., MqttDriver], publisher: Publisher, clock: ManualClock
) -> None:
    driver = make_driver()
    reader = Reader(driver)
    await reader.subscribed(publisher)
    n = 500
    await publisher.publish(reading(i) for i in range(n))

    samples = await reader.until_seqs(set(range(n)))

    by_seq = {s.seq: s for s in samples if s.sensor != MARKER and s.seq is not None}
    assert sorted(by_seq) == list(range(n))
    for i, got in by_seq.items():
        assert got == RawSample(
            sensor=f"s{i % 7}",
            temp_c=i / 10,
            ts_ns=(T0_MS + i * 1000) * 1_000_000,
            received_ns=clock.now_ns(),
            source="mqtt:nodes",
            seq=i,
        )
    # a burst is read in batches, not one delivery per message
    assert len(reader.deliveries) < n
    await reader.close()
    await driver.close()


async def test_first_delivery_is_empty_and_means_subscribed(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    reader = Reader(make_driver())
    first = await reader.next()
    assert (list(first.samples), list(first.rejects)) == ([], [])
    first.ack()  # nothing to acknowledge, must not fail
    await publisher.publish([reading(3)])
    samples = await reader.until_seqs({3})
    assert [s.seq for s in samples] == [3]
    await reader.close()


async def test_malformed_payloads_are_dead_letter_rejects(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    reader = Reader(make_driver())
    await reader.subscribed(publisher)
    bad = {
        b"not json": "not_json",
        b"[1, 2]": "not_object",
        b'{"id": "s1", "ts": 1}': "missing_field",
        b'{"id": "s1", "temp_c": "cold"}': "bad_type",
        b'{"id": "s1", "temp_c": 4, "ts": "noon"}': "bad_timestamp",
        b'{"id": "s1", "temp_c": NaN}': "non_finite",
        b'{"id": "s1", "temp_c": 1, "pad": "' + b"x" * 20_000 + b'"}': "too_large",
    }
    await publisher.publish([("sensors/s1/telemetry", payload) for payload in bad])
    await publisher.publish([reading(1)])

    samples, rejects = await reader.until(lambda got, _r: any(s.seq == 1 for s in got))

    assert [r.reason for r in rejects] == list(bad.values())
    for r in rejects:
        assert r.dead_letter
        assert r.topic == "sensors/s1/telemetry"
        assert r.source == "mqtt:nodes"
        assert r.raw  # kept for the dead-letter journal
    assert [s.seq for s in samples if s.sensor != MARKER] == [1]
    await reader.close()


async def test_unacked_messages_are_redelivered_after_reconnect(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    first = Reader(make_driver())
    await first.subscribed(publisher)
    await publisher.publish(reading(i) for i in range(10))
    await first.until_seqs(set(range(10)), ack=True)
    await publisher.publish(reading(i) for i in range(10, 20))
    await first.until_seqs(set(range(10, 20)), ack=False)
    unacked = first.deliveries[-1]
    await first.close()
    # an ack that arrives after its connection ended must not reach a later connection
    unacked.ack()

    # a new driver, as after a gateway restart: same client id, persistent session
    second = Reader(make_driver())
    await publisher.publish([reading(99)])  # after the redeliveries in the session's order
    samples = await second.until_seqs({99})

    seqs = {s.seq for s in samples if s.sensor != MARKER}
    assert seqs == {*range(10, 20), 99}
    await second.close()


async def test_broker_restart_raises_then_resumes_with_messages_sent_meanwhile(
    make_driver: Callable[..., MqttDriver], publisher: Publisher, mosquitto: Mosquitto
) -> None:
    driver = make_driver()
    reader = Reader(driver)
    await reader.subscribed(publisher)
    await publisher.publish(reading(i) for i in range(5))
    await reader.until_seqs(set(range(5)))

    pending = asyncio.create_task(reader.next())
    await asyncio.to_thread(mosquitto.restart)
    with pytest.raises(DriverDisconnected) as raised:
        await pending
    assert isinstance(raised.value.__cause__, aiomqtt.MqttError)

    # while the gateway is away the broker queues QoS 1 messages in the persisted session
    await publisher.publish(reading(i) for i in range(100, 150))
    resumed = Reader(driver)
    samples = await resumed.until_seqs(set(range(100, 150)))
    assert {s.seq for s in samples} >= set(range(100, 150))
    await resumed.close()


async def test_backlog_is_batched(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    first = Reader(make_driver())
    await first.subscribed(publisher)
    await first.close()
    n = 3000
    await publisher.publish(reading(i) for i in range(n))

    reader = Reader(make_driver())
    await reader.until_seqs(set(range(n)))

    sizes = [len(d.samples) + len(d.rejects) for d in reader.deliveries]
    assert max(sizes) <= MAX_BATCH
    assert len(sizes) < n / 10, sizes
    await reader.close()


async def test_batched_acks_settle_every_message_of_a_backlog(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    """A delivery's PUBACKs go out as one packet; the broker must count each of them."""
    first = Reader(make_driver())
    await first.subscribed(publisher)
    await first.close()
    n = 2000
    await publisher.publish(reading(i) for i in range(n))

    reader = Reader(make_driver())
    await reader.until_seqs(set(range(n)), ack=True)
    assert max(len(d.samples) for d in reader.deliveries) > 1  # the combined-ack path ran
    await reader.close()

    again = Reader(make_driver())
    await publisher.publish([reading(n + 1)])
    samples = await again.until_seqs({n + 1})
    redelivered = {s.seq for s in samples if s.sensor != MARKER} - {n + 1}
    assert redelivered == set()  # every message of every batch was acknowledged
    await again.close()


def test_buffered_socket_serves_small_reads_from_one_large_recv() -> None:
    """paho's 1-byte/length/body reads come from the buffer; pending() counts what is left."""
    left, right = socket.socketpair()
    try:
        right.setblocking(False)
        buffered = BufferedSocket(right)
        packets = [bytes([0x30, 3]) + b"abc", bytes([0x30, 2]) + b"xy"]
        left.sendall(b"".join(packets))
        time.sleep(0.05)
        got = [buffered.recv(1), buffered.recv(1), buffered.recv(3)]
        assert got == [b"\x30", b"\x03", b"abc"]
        assert buffered.pending() == 4
        assert [buffered.recv(1), buffered.recv(1), buffered.recv(2)] == [b"\x30", b"\x02", b"xy"]
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):  # nothing buffered, nothing on the wire
            buffered.recv(1)
        assert buffered.fileno() == right.fileno()  # everything else is the real socket
        left.close()
        assert buffered.recv(1) == b""  # EOF passes through
    finally:
        left.close()
        right.close()


async def test_connection_refused_is_driver_disconnected(
    make_driver: Callable[..., MqttDriver], mosquitto: Mosquitto
) -> None:
    await asyncio.to_thread(mosquitto.stop)
    reader = Reader(make_driver())
    with pytest.raises(DriverDisconnected, match=str(mosquitto.port)):
        await reader.next()


async def test_close_ends_deliveries_quietly(
    make_driver: Callable[..., MqttDriver], publisher: Publisher
) -> None:
    driver = make_driver()
    reader = Reader(driver)
    await reader.subscribed(publisher)
    pending = asyncio.create_task(reader.next())
    await driver.close()
    with pytest.raises(StopAsyncIteration):
        await pending


async def test_client_is_built_for_a_persistent_session(
    driver_config: Callable[..., MqttDriverConfig],
    clock: ManualClock,
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret")
    built: list[dict[str, Any]] = []

    def factory(**kwargs: Any) -> aiomqtt.Client:
        built.append(kwargs)
        return aiomqtt.Client(**kwargs)

    config = driver_config(username="hub", password={"env": "TEST_MQTT_PASSWORD"}, qos=1)
    reader = Reader(MqttDriver(config, clock, client_factory=factory))
    await reader.subscribed(publisher)
    await reader.close()
    named = driver_config(client_id="coldchain-hub-lis-01-nodes")
    reader = Reader(MqttDriver(named, clock, client_factory=factory))
    await reader.subscribed(publisher)
    await reader.close()

    assert [b["identifier"] for b in built] == ["coldchain-nodes", "coldchain-hub-lis-01-nodes"]
    assert built[0]["clean_session"] is False
    assert built[0]["protocol"] == aiomqtt.ProtocolVersion.V311
    assert (built[0]["username"], built[0]["password"]) == ("hub", "s3cret")
    assert built[0]["keepalive"] == 5
    assert built[0]["tls_context"] is None
