"""The MQTT sensor-node driver: aiomqtt, QoS 1, persistent session, manual acknowledgement.

Each :meth:`MqttDriver.deliveries` call is one connection: connect with the fixed client
id and ``clean_session=False``, subscribe every mapping, then yield deliveries until the
broker goes away (:class:`~gateway.core.errors.DriverDisconnected`). Reconnecting is the
supervisor's job (``gateway.runtime.reconnect``), not this driver's.

A QoS 1 message is acknowledged (PUBACK) only when the supervisor calls the delivery's
``ack`` after the journal committed it; until then the broker keeps it in the session and
redelivers it after a reconnect. aiomqtt 2.5 has no manual-ack API, so the driver turns
on paho's on the client aiomqtt wraps (see drivers/mqtt/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

import aiomqtt
import paho.mqtt.client as paho

from drivers.mqtt.client import (
    enable_manual_acks,
    flush_output,
    paho_client,
    send_pubacks,
    tune_for_throughput,
    waiting_messages,
)
from drivers.mqtt.config import MqttDriverConfig
from drivers.mqtt.payload import TopicRouter
from gateway.core.clock import Clock
from gateway.core.errors import DriverDisconnected, DriverError
from gateway.core.model import Delivery, RawSample, Reject
from gateway.core.tls import persistent_session_kwargs

log = logging.getLogger(__name__)

# Messages per Delivery at most. Mosquitto's max_inflight_messages should be at least
# this large, or the broker stops sending while the journal commit is pending.
MAX_BATCH: Final = 1000

ClientFactory = Callable[..., aiomqtt.Client]


class _Connection:
    """One broker connection; acks of an older connection must not reach a newer one.

    Packet ids are per connection: after a reconnect the broker may reuse a mid for a
    different message (certainly when it lost the session), so a late ack from a dead
    connection is dropped and the broker's redelivery is journaled again (at least once).
    """

    __slots__ = ("alive", "paho_client", "router")

    def __init__(self, paho_client: paho.Client, router: TopicRouter) -> None:
        self.paho_client = paho_client
        self.router = router  # the payload decoders of this connection
        self.alive = True


class MqttDriver:
    """Reads JSON sensor payloads from an MQTT broker into Deliveries."""

    def __init__(
        self,
        config: MqttDriverConfig,
        clock: Clock,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.config = config
        self.name: str = config.name
        self.source: str = f"mqtt:{config.name}"
        self.client_id: str = config.session_client_id
        self._clock = clock
        self._factory: ClientFactory = client_factory or aiomqtt.Client
        # Built per connection (deliveries()): decoders may keep per-connection state.
        self._routing = (config.subscriptions, config.sensor_ids, config.max_payload_bytes)
        TopicRouter(*self._routing)  # a bad format fails at load, not at connect
        # Resolved now so a missing secret or certificate stops the daemon at load
        # (ConfigError / OSError), not at the first connection attempt.
        if config.password is not None:
            config.password.resolve()
        self._tls: ssl.SSLContext | None = config.tls.context(f"mqtt driver {config.name}")
        self._connection: _Connection | None = None
        self._closed = False
        self._counts: Counter[str] = Counter()

    def _new_client(self) -> aiomqtt.Client:
        """A fresh aiomqtt client for one connection, manual acks on."""
        client = self._factory(**persistent_session_kwargs(self.config, self.client_id, self._tls))
        # Before connect: a persistent session's queued messages arrive right after
        # CONNACK and paho would PUBACK them on receipt (drivers/mqtt/client.py).
        enable_manual_acks(client)
        tune_for_throughput(client)
        return client

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Connect, subscribe and yield deliveries until the broker goes away."""
        if self._closed:
            msg = f"mqtt driver {self.name} is closed"
            raise DriverError(msg)
        client = self._new_client()
        connection = _Connection(paho_client(client), TopicRouter(*self._routing))
        self._connection = connection
        where = f"{self.config.host}:{self.config.port}"
        try:
            async with client:
                await self._subscribe(client)
                self._counts["connects"] += 1
                log.info(
                    "connected to %s as %s", where, self.client_id, extra={"component": self.name}
                )
                try:
                    yield Delivery()  # the driver contract: an empty delivery says "subscribed"
                    async for delivery in self._read(client, connection):
                        yield delivery
                finally:
                    # A graceful end: the last commit's PUBACKs leave before the DISCONNECT.
                    await flush_output(connection.paho_client)
        except aiomqtt.MqttError as exc:
            if self._closed:
                return
            self._counts["disconnects"] += 1
            msg = f"mqtt broker {where}: {exc}"
            raise DriverDisconnected(msg) from exc
        finally:
            connection.alive = False
            if self._connection is connection:
                self._connection = None

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        """One SUBSCRIBE for every mapping; a refused filter is a DriverError."""
        qos: int = self.config.qos
        topics = [(mapping.topic, qos) for mapping in self.config.subscriptions]
        granted = await client.subscribe(topics)
        # paho's v2 callbacks give ReasonCodes; 0x80 is "failure" in MQTT 3.1.1.
        codes = [code if isinstance(code, int) else code.value for code in granted]
        for (topic, _), code in zip(topics, codes, strict=False):
            if code >= 0x80:
                msg = f"broker refused subscription {topic!r} ({code})"
                raise DriverError(msg)

    async def _read(
        self, client: aiomqtt.Client, connection: _Connection
    ) -> AsyncIterator[Delivery]:
        """Deliveries of everything waiting in the client's queue, at most MAX_BATCH each."""
        messages = client.messages
        # The messages already waiting are taken from aiomqtt's queue in one go.
        queue = waiting_messages(client)
        while True:
            batch = [await anext(messages)]
            # paho reads one packet per readable callback, so a burst reaches the queue
            # one message per event-loop turn. Yield turns while the queue still grows
            # (never waits on time: a turn that adds nothing closes the batch).
            waiting = len(messages)
            while waiting < MAX_BATCH - 1:
                await asyncio.sleep(0)
                grown = len(messages)
                if grown == waiting:
                    break
                waiting = grown
            for _ in range(min(waiting, MAX_BATCH - 1)):
                batch.append(queue.get_nowait())
            yield self._decode(batch, connection)

    def _decode(self, batch: list[aiomqtt.Message], connection: _Connection) -> Delivery:
        """Map a batch of messages to samples and rejects, with one ack for the QoS 1 ones."""
        received_ns = self._clock.now_ns()
        source = self.source
        decode_into = connection.router.decode_into
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        to_ack: list[int] = []
        origins: list[tuple[str, bytes]] = []  # per sample, for the ingest's bounds check
        for message in batch:
            if message.qos:
                to_ack.append(message.mid)
            topic = message.topic.value
            payload = message.payload
            if not isinstance(payload, bytes):
                # aiomqtt types the payload loosely; paho always hands over bytes.
                payload = str(payload).encode()
            before = len(samples)
            decode_into(topic, payload, received_ns, source, samples, rejects)
            added = len(samples) - before
            if added == 1:
                origins.append((topic, payload))
            elif added:
                origins.extend([(topic, payload)] * added)
        counts = self._counts
        counts["messages"] += len(batch)
        counts["samples"] += len(samples)
        for reject in rejects:
            counts[f"rejects.{reject.reason}"] += 1
        return Delivery(
            samples=samples,
            rejects=rejects,
            ack=_acknowledger(connection, to_ack),
            origins=origins,
        )

    def stats(self) -> Mapping[str, int]:
        """Counters across reconnects: messages, samples, rejects by reason, (dis)connects."""
        return dict(self._counts)

    def keep_open_for_reload(self) -> None:
        """Nothing to keep: unacknowledged messages are redelivered to the next session."""

    async def close(self) -> None:
        """Disconnect from the broker; a running deliveries() ends without error."""
        self._closed = True
        connection = self._connection
        if connection is not None and connection.alive:
            await flush_output(connection.paho_client)
            connection.paho_client.disconnect()


def _acknowledger(connection: _Connection, mids: list[int]) -> Callable[[], None]:
    """The ack of one delivery: PUBACK every QoS 1 message, once, on its own connection."""

    def ack() -> None:
        if not mids:
            return
        if not connection.alive:
            log.debug("connection gone, %d messages will be redelivered", len(mids))
            mids.clear()
            return
        send_pubacks(connection.paho_client, mids)
        mids.clear()

    return ack
