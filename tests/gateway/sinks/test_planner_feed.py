"""The planner feed against a real private Mosquitto (the ``mosquitto`` fixture).

Every payload the planner receives is validated against docs/schemas/. Waiting is on
conditions with asyncio.timeout; nothing sleeps for a fixed time.

How "no retained message" is checked: a fresh subscriber subscribes the alert topic, then
subscribes a probe topic and publishes to it. Mosquitto handles one connection's packets
in order and sends retained messages right after the SUBACK, so once the probe is back
every retained message of the earlier subscription would have arrived before it.

How the Will is triggered: the feed connects through a small TCP proxy in the test. The
proxy aborts both sockets (no MQTT DISCONNECT reaches the broker, as when the hub loses
its uplink or the process dies), and stops listening so the feed cannot come back until
the test lets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest

from gateway.alerts.store import AlertState, AlertStore, Severity
from gateway.apps.localservices import Mosquitto, free_port
from gateway.core.clock import SystemClock
from gateway.core.metrics import Counters
from gateway.journal.store import Journal, JournalRunner
from gateway.sinks.planner.commands import CommandHandler
from gateway.sinks.planner.config import PlannerConfig
from gateway.sinks.planner.feed import SINK, STREAM, PlannerFeed
from gateway.sinks.planner.payloads import HubState

pytestmark = pytest.mark.integration

HUB = "hub-7"
PREFIX = f"coldchain/v1/{HUB}/"
EVENTS = f"{PREFIX}events"
STATUS = f"{PREFIX}status"
S = 1_000_000_000
SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"
TIMEOUT = 15.0


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


EVENT_SCHEMA = _validator("alert-event")
RETAINED_SCHEMA = _validator("alert-retained")
STATUS_SCHEMA = _validator("status")
REJECTED_SCHEMA = _validator("command-rejected")
ACK_SCHEMA = _validator("ack-command")


def body(message: aiomqtt.Message) -> Any:
    assert isinstance(message.payload, bytes)
    return json.loads(message.payload)


# -- real journal and alert store --------------------------------------------------------


class Outbox:
    """A real Journal + JournalRunner + AlertStore in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.journal = Journal(tmp_path / "journal.db")
        self.runner = JournalRunner(self.journal)
        self.store = AlertStore(self.journal.connection, HUB)
        self.clock = SystemClock()

    async def raise_alert(self, subject: str, severity: Severity = Severity.CRITICAL) -> str:
        now = self.clock.now_ns()
        alert, added = await self.runner.call(
            self.store.raise_alert,
            "excursion.single",
            subject,
            severity,
            now - 600 * S,
            now,
            9.4,
            8.0,
            f"{subject} above 8.0 °C for 10 min",
            {"profile": "chilled"},
        )
        assert added
        return alert.id

    async def clear(self, subject: str) -> None:
        cleared = await self.runner.call(
            self.store.clear, "excursion.single", subject, self.clock.now_ns(), 6.1
        )
        assert cleared is not None

    async def cursor(self) -> int:
        return await self.runner.call(self.journal.cursor, SINK, STREAM)

    async def last_event_id(self) -> int:
        return await self.runner.call(self.store.last_event_id)

    async def cursor_reaches(self, position: int) -> None:
        """Wait until the planner's cursor is at position (set after the PUBACKs)."""
        try:
            async with asyncio.timeout(TIMEOUT):
                while await self.cursor() != position:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pytest.fail(f"cursor stuck at {await self.cursor()}, expected {position}")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path)
    yield box
    box.runner.close()


class Health:
    """What the feed asks for its status; the test changes it."""

    def __init__(self) -> None:
        self.state = HubState.ONLINE
        self.reasons: list[str] = []

    def __call__(self) -> tuple[HubState, list[str]]:
        return self.state, list(self.reasons)


@contextlib.asynccontextmanager
async def running_feed(
    port: int,
    outbox: Outbox,
    counters: Counters,
    health: Health | None = None,
    commands: dict[str, CommandHandler] | None = None,
    **config: Any,
) -> AsyncIterator[PlannerFeed]:
    """A PlannerFeed running in a task; close() and the task's end on exit."""
    settings: dict[str, Any] = {"port": port, "max_backoff_s": 0.5, **config}
    feed = PlannerFeed(
        PlannerConfig(**settings),
        HUB,
        outbox.runner,
        outbox.store,
        counters,
        outbox.clock,
        health or Health(),
        commands=commands,
    )
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        await feed.close()
        async with asyncio.timeout(TIMEOUT):
            await task


async def until(condition: Callable[[], Any], what: str) -> None:
    """Poll a cheap in-process condition (counters, store) until true."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


# -- a planner-side subscriber ------------------------------------------------------------


class Listener:
    """A planner-side MQTT client that records every message it receives."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[aiomqtt.Message] = []
        self._changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.client.messages:
            self.messages.append(message)
            self._changed.set()

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.matches(topic)]

    async def wait_for(
        self, predicate: Callable[[list[aiomqtt.Message]], bool], what: str
    ) -> list[aiomqtt.Message]:
        try:
            async with asyncio.timeout(TIMEOUT):
                while not predicate(self.messages):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = [(m.topic.value, m.payload) for m in self.messages]
            pytest.fail(f"timed out waiting for {what}; got {seen}")
        return self.messages

    async def wait_events(self, n: int) -> list[dict[str, Any]]:
        """The first n messages on events, decoded."""
        await self.wait_for(lambda _: len(self.on(EVENTS)) >= n, f"{n} events")
        return [body(m) for m in self.on(EVENTS)[:n]]


@contextlib.asynccontextmanager
async def listening(
    port: int, *topics: str, identifier: str | None = None, clean: bool = True
) -> AsyncIterator[Listener]:
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=identifier,
        clean_session=clean,
        protocol=aiomqtt.ProtocolVersion.V311,
    )
    async with client:
        listener = Listener(client)
        reader = asyncio.create_task(listener.read())
        try:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            yield listener
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


async def retained(port: int, topic: str) -> list[aiomqtt.Message]:
    """What a fresh subscriber to topic gets from the broker's retained store."""
    probe = f"probe/{uuid.uuid4().hex}"
    async with listening(port, topic, probe) as listener:
        await listener.client.publish(probe, b"probe", qos=1)
        await listener.wait_for(lambda _: bool(listener.on(probe)), "the probe")
        return listener.on(topic)


# -- a TCP proxy that can drop the feed's connection without an MQTT DISCONNECT ----------


class Uplink:
    """Loopback proxy to the broker: cut() aborts every connection and stops listening."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.WriteTransport] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self._transports += [writer.transport, up_writer.transport]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


@pytest.fixture
async def uplink(mosquitto: Mosquitto) -> AsyncIterator[Uplink]:
    proxy = Uplink(mosquitto.port)
    await proxy.open()
    yield proxy
    await proxy.close()


# -- tests --------------------------------------------------------------------------------


async def test_raise_and_clear_reach_the_planner_and_clear_empties_the_retained_topic(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    counters = Counters()
    async with (
        listening(mosquitto.port, EVENTS, f"{PREFIX}alerts/#") as planner,
        running_feed(mosquitto.port, outbox, counters) as feed,
    ):
        alert_id = await outbox.raise_alert("cold-1")
        feed.wake()
        alert_topic = f"{PREFIX}alerts/{alert_id}"
        await planner.wait_for(lambda _: bool(planner.on(alert_topic)), "the retained alert")
        live = body(planner.on(alert_topic)[0])
        RETAINED_SCHEMA.validate(live)
        assert live["alert_id"] == alert_id
        assert live["state"] == "raised"

        stored = await retained(mosquitto.port, alert_topic)
        assert [body(m) for m in stored] == [live]
        assert stored[0].retain

        await outbox.clear("cold-1")
        feed.wake()
        events = await planner.wait_events(2)
        for event in events:
            EVENT_SCHEMA.validate(event)
        assert [e["type"] for e in events] == ["alert.raised", "alert.cleared"]
        assert {e["alert_id"] for e in events} == {alert_id}
        assert events[1]["cleared_at"] is not None

        # The feed may have published the retained alert twice (republished on connect
        # when the raise beat the subscription, then drained): the clear comes last.
        await planner.wait_for(lambda _: planner.on(alert_topic)[-1].payload == b"", "the clear")
        assert all(m.payload for m in planner.on(alert_topic)[:-1])
        assert await retained(mosquitto.port, alert_topic) == []

        await outbox.cursor_reaches(await outbox.last_event_id())
        assert counters.written["planner"] == 2


async def test_status_online_then_offline_from_the_will_when_the_uplink_drops(
    mosquitto: Mosquitto, outbox: Outbox, uplink: Uplink
) -> None:
    counters = Counters()
    health = Health()
    async with (
        listening(mosquitto.port, STATUS) as planner,
        running_feed(uplink.port, outbox, counters, health) as feed,
    ):

        def states() -> list[str]:
            return [body(m)["state"] for m in planner.on(STATUS)]

        await planner.wait_for(lambda _: "online" in states(), "online")
        for message in planner.on(STATUS):
            STATUS_SCHEMA.validate(body(message))
        assert body(planner.on(STATUS)[0])["hub"] == HUB

        health.state, health.reasons = HubState.DEGRADED, ["sensor s3 stale in cold-1"]
        feed.wake()
        await planner.wait_for(lambda _: states()[-1] == "degraded", "degraded")
        assert body(planner.on(STATUS)[-1])["reasons"] == ["sensor s3 stale in cold-1"]

        # Dropped without DISCONNECT: the broker publishes the Will.
        await uplink.cut()
        await planner.wait_for(lambda _: states()[-1] == "offline", "the Will")
        will = body(planner.on(STATUS)[-1])
        STATUS_SCHEMA.validate(will)
        assert will["reasons"] == ["gateway connection lost"]
        stored = await retained(mosquitto.port, STATUS)
        assert [body(m)["state"] for m in stored] == ["offline"]
        await until(lambda: counters.connected.get("planner") is False, "disconnected")

        # Back: the current health is retained again.
        await uplink.open()
        await planner.wait_for(lambda _: states()[-1] == "degraded", "degraded after reconnect")
        assert counters.reconnects["planner"] >= 1

    # close() leaves a retained offline (a clean DISCONNECT discards the Will).
    stored = await retained(mosquitto.port, STATUS)
    assert [body(m)["state"] for m in stored] == ["offline"]
    assert body(stored[0])["reasons"] == ["gateway stopped"]


async def test_alerts_raised_while_the_broker_is_down_arrive_after_it_restarts(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    counters = Counters()
    planner_id = f"planner-{uuid.uuid4().hex[:8]}"
    # The planner's persistent session with a QoS 1 subscription, made before the outage.
    async with listening(mosquitto.port, EVENTS, identifier=planner_id, clean=False):
        pass

    async with running_feed(mosquitto.port, outbox, counters) as feed:
        await until(lambda: counters.connected.get("planner"), "connected")
        mosquitto.stop()
        await until(lambda: counters.connected.get("planner") is False, "disconnected")

        first = await outbox.raise_alert("cold-1")
        second = await outbox.raise_alert("dock-2", Severity.WARNING)
        await outbox.clear("cold-1")
        feed.wake()
        assert await outbox.cursor() == 0  # nothing confirmed while the broker is away

        mosquitto.start()
        last = await outbox.last_event_id()
        await until(lambda: counters.connected.get("planner"), "reconnected")

        async with listening(
            mosquitto.port, identifier=planner_id, clean=False
        ) as planner:  # no new subscribe: the session delivers what it queued
            events = await planner.wait_events(3)
        for event in events:
            EVENT_SCHEMA.validate(event)
        assert [(e["type"], e["alert_id"]) for e in events] == [
            ("alert.raised", first),
            ("alert.raised", second),
            ("alert.cleared", first),
        ]
        await outbox.cursor_reaches(last)
        assert counters.reconnects["planner"] >= 1

        assert await retained(mosquitto.port, f"{PREFIX}alerts/{first}") == []
        kept = await retained(mosquitto.port, f"{PREFIX}alerts/#")
        assert [body(m)["alert_id"] for m in kept] == [second]


async def test_ack_command_acknowledges_and_bad_commands_are_rejected(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    counters = Counters()
    custody: list[dict[str, object]] = []

    async def on_custody(command: dict[str, object], signer: str | None) -> None:
        custody.append(command)

    async with (
        listening(mosquitto.port, EVENTS) as planner,
        running_feed(mosquitto.port, outbox, counters, commands={"custody": on_custody}) as feed,
    ):
        alert_id = await outbox.raise_alert("cold-1")
        feed.wake()
        await planner.wait_events(1)

        ack = {"alert_id": alert_id, "by": "dana", "note": "compressor tech called"}
        ACK_SCHEMA.validate(ack)
        await planner.client.publish(f"{PREFIX}cmd/ack", json.dumps(ack), qos=1)
        events = await planner.wait_events(2)
        acked = events[1]
        EVENT_SCHEMA.validate(acked)
        assert acked["type"] == "alert.acknowledged"
        assert acked["acknowledged_by"] == "dana"
        assert acked["note"] == "compressor tech called"
        alert = await outbox.runner.call(outbox.store.get, alert_id)
        assert alert is not None
        assert alert.state is AlertState.ACKNOWLEDGED
        assert alert.acknowledged_by == "dana"

        bad = [
            ("ack", b"{not json"),
            ("ack", json.dumps({"alert_id": alert_id}).encode()),  # who acknowledged?
            ("ack", json.dumps({"alert_id": "excursion.single-0000000000000000", "by": "x"})),
            ("reboot", b"{}"),
        ]
        for name, raw in bad:
            await planner.client.publish(f"{PREFIX}cmd/{name}", raw, qos=1)
        await planner.client.publish(f"{PREFIX}cmd/custody", b'{"shipment": "S-1"}', qos=1)

        events = await planner.wait_events(2 + len(bad))
        rejected = events[2:]
        for reply in rejected:
            REJECTED_SCHEMA.validate(reply)
        assert [r["topic"] for r in rejected] == [f"{PREFIX}cmd/{n}" for n, _ in bad]
        assert rejected[0]["command"] == "{not json"
        assert "by" in rejected[1]["reason"]
        assert "no alert" in rejected[2]["reason"]
        assert "unknown command" in rejected[3]["reason"]
        assert counters.dropped["planner:bad_command"] == len(bad)
        await until(lambda: custody == [{"shipment": "S-1"}], "the custody handler")

    # Handled commands were PUBACKed: after a broker restart the feed's persistent session
    # redelivers none of them (they would be rejected, and counted, a second time).
    async with running_feed(mosquitto.port, outbox, counters) as feed:
        await until(lambda: counters.connected.get("planner"), "connected")
        mosquitto.restart()
        await until(lambda: counters.connected.get("planner") is False, "disconnected")
        await until(lambda: counters.connected.get("planner"), "reconnected")
        async with listening(mosquitto.port, EVENTS) as planner:
            await planner.client.publish(f"{PREFIX}cmd/reboot", b"{}", qos=1)
            (reply,) = await planner.wait_events(1)
        assert reply["type"] == "command.rejected"
        assert counters.dropped["planner:bad_command"] == len(bad) + 1
        assert custody == [{"shipment": "S-1"}]
