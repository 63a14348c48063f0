"""The planner feed: alerts, status and command replies over MQTT for the network planner.

Topics, under ``topic_prefix`` (default ``coldchain/v1/{hub}/``; see docs/planner-feed.md):

- ``status``: retained, online / degraded (from ``health()``) and offline (the Will, and
  a last retained message on :meth:`PlannerFeed.close`).
- ``alerts/{alert_id}``: retained while the alert is active; an empty retained message
  (which deletes the topic) once it cleared.
- ``events``: QoS 1 stream of alert changes and ``command.rejected`` replies.
- ``cmd/<name>``: inbound commands (``gateway.sinks.planner.commands``); ``ack`` is built in,
  others go to the handlers given as ``commands``.

Publishing goes through the journal outbox (``alert_events``) behind the cursor
``("planner", "alert_events")``. The cursor moves only over events whose publishes were
all acknowledged by the broker (PUBACK), and only up to the last contiguous one, so a
broker outage, a reconnect or a gateway crash re-sends from the first unconfirmed event:
at-least-once and in order. The planner deduplicates by ``(alert_id, type, at)``.

One reconnect loop (:meth:`PlannerFeed.run`) with exponential backoff and full jitter.
Each connection uses a fresh aiomqtt client with the same fixed client id and
``clean_session=False``: a fresh client drops paho's queue of unconfirmed publishes from
the dead connection (paho would re-send them itself on reconnect, on top of the journal
replay), while the broker keeps the command subscription and its queued commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, Literal

import aiomqtt

from drivers.mqtt import client as mqtt_client
from gateway.alerts.store import Alert, AlertEvent, AlertStore
from gateway.commands.signed import CommandGuard, CommandRefused, is_envelope
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import JournalError
from gateway.core.metrics import Counters
from gateway.core.text import printable
from gateway.core.tls import SESSION_TAKEN_OVER, persistent_session_kwargs, taken_over
from gateway.custody.events import CustodyRecord
from gateway.journal.store import JournalRunner
from gateway.sinks.planner.commands import CommandHandler, CommandRejected, CommandRouter
from gateway.sinks.planner.config import PlannerConfig
from gateway.sinks.planner.payloads import (
    HubState,
    custody_rejected_payload,
    event_payload,
    json_bytes,
    rejected_payload,
    retained_payload,
    status_payload,
)

log = logging.getLogger(__name__)

COMPONENT: Final = "planner"
SINK: Final = "planner"
STREAM: Final = "alert_events"
EXCEPTIONS_STREAM: Final = "custody_exceptions"
# (cursor stream name, fetch(after, limit) -> [(id, JSON body)]) run on the journal thread.
EventStream = tuple[str, Callable[[int, int], Sequence[tuple[int, dict[str, object]]]]]
# Outbox events per batch: each gives two QoS 1 publishes in flight at once.
BATCH: Final = 100
# paho's own inflight window (default 20) would queue most of a batch client-side.
MAX_INFLIGHT: Final = 2 * BATCH
MAX_COMMAND_ECHO: Final = 1024  # characters of a rejected command echoed back
OFFLINE_PUBLISH_TIMEOUT_S: Final = 2.0
CLOSE_TIMEOUT_S: Final = 10.0
TAKEOVER_CLEAR_S: Final = 3600.0  # session_takeover clears after this long connected
TAKEOVER_WINDOW_NS: Final = 60 * 1_000_000_000

TakeoverListener = Callable[[Literal["raised", "cleared"], str, str], None]
"""(raised or cleared, our client id, what happened), for the session_takeover alert."""


def _first_leaf(group: BaseExceptionGroup[aiomqtt.MqttError]) -> aiomqtt.MqttError:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class _Closed(Exception):
    """Internal: close() asked the session to end."""


class PlannerFeed:
    """Publishes the alert outbox and hub status to the planner; takes commands back."""

    def __init__(
        self,
        config: PlannerConfig,
        hub: str,
        runner: JournalRunner,
        store: AlertStore,
        counters: Counters,
        clock: Clock,
        health: Callable[[], tuple[HubState, list[str]]],
        *,
        commands: Mapping[str, CommandHandler] | None = None,
        custody_exceptions: Callable[[int, int], Sequence[CustodyRecord]] | None = None,
        guard: CommandGuard | None = None,
        on_takeover: TakeoverListener | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.prefix: str = config.topic_prefix.format(hub=hub)
        self.client_id: str = config.client_id or f"coldchain-{hub}-planner"
        # The custody ledger's rejected_after (exception records), if custody is wired.
        self.custody_exceptions = custody_exceptions
        self._commands = CommandRouter(runner, store, clock, commands or {}, self.wake, guard)
        # Raises and clears the session_takeover alert (the daemon's engine.report).
        self.on_takeover = on_takeover
        self._taken_over_ns: int | None = None
        self._connected_ns: int | None = None
        self._disconnect_rc: object = None
        self._session_present: bool | None = None
        self._broker_closed_ns: list[int] = []  # when the broker ended a working session
        self._failed_since_close = False
        # More journal streams published on ``events`` behind their own cursor, e.g. the
        # notification attempts (gateway/notify): (cursor name, fetch(after, limit)).
        self.event_streams: list[EventStream] = []
        # Set by the daemon: more outboxes drained after the alerts (evidence checkpoints).
        self.extra_drains: list[Callable[[PlannerFeed, aiomqtt.Client], Awaitable[None]]] = []
        self._runner = runner
        self._store = store
        self._counters = counters
        self._clock = clock
        self._health = health
        # Resolved now so a missing secret or certificate stops the daemon at load.
        if config.password is not None:
            config.password.resolve()
        self._tls: ssl.SSLContext | None = config.tls.context("planner feed")
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._client: aiomqtt.Client | None = None
        self._published_status: tuple[HubState, tuple[str, ...]] | None = None
        # Alerts that are not in the journal (journal_unwritable: the disk is what failed),
        # retained while active, republished on every connection; see publish_volatile.
        self._volatile: dict[str, Alert] = {}
        self._volatile_dirty: set[str] = set()

    # -- topics ------------------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        """Retained hub status."""
        return f"{self.prefix}status"

    @property
    def events_topic(self) -> str:
        """QoS 1 event stream."""
        return f"{self.prefix}events"

    def alert_topic(self, alert_id: str) -> str:
        """Retained topic of one alert."""
        return f"{self.prefix}alerts/{alert_id}"

    # -- public API --------------------------------------------------------------------
    def wake(self) -> None:
        """New alert events are in the journal (or health changed): publish now."""
        self._wake.set()

    def publish_volatile(self, alert: Alert) -> None:
        """Publish an alert the journal cannot hold (retained while active, then removed).

        For the gateway's ``journal_unwritable``: the alert outbox is in the journal, which
        is exactly what cannot be written. Kept in memory and republished after every
        reconnect until it clears.
        """
        self._volatile[alert.id] = alert
        self._volatile_dirty.add(alert.id)
        self.wake()

    async def run(self) -> None:
        """Connect, publish and reconnect with backoff until close() or cancellation."""
        counters = self._counters
        backoff = Backoff(initial=0.5, maximum=self.config.max_backoff_s)
        self._running = True
        self._stopped.clear()
        first_attempt = True
        try:
            while not self._closing.is_set():
                if not first_attempt:
                    counters.reconnects[COMPONENT] += 1
                first_attempt = False
                self._connected_ns = None
                try:
                    await self._session(backoff)
                except aiomqtt.MqttError as exc:
                    reason = str(exc) or type(exc).__name__
                    if taken_over(exc) or self._disconnect_rc == SESSION_TAKEN_OVER:
                        reason = self._takeover(reason)
                    elif self._connected_ns is not None:
                        # A working session ended by the broker: remember when, to tell a
                        # takeover from a network drop at the next connect.
                        now = self._clock.now_ns()
                        self._broker_closed_ns = [*self._broker_closed_ns[-4:], now]
                        self._failed_since_close = False
                    else:
                        self._failed_since_close = True
                except _Closed:
                    return
                else:
                    return
                counters.connected[COMPONENT] = False
                if self._closing.is_set():
                    return
                counters.error(COMPONENT, reason)
                delay = backoff.next()
                log.warning(
                    "planner broker %s:%d unreachable; alerts wait in the journal; retry in"
                    " %.1f s: %s",
                    self.config.host,
                    self.config.port,
                    delay,
                    reason,
                    extra={"component": COMPONENT},
                )
                await self._sleep_unless_closing(delay)
        finally:
            counters.connected[COMPONENT] = False
            self._client = None
            self._running = False
            self._stopped.set()

    def _takeover(self, reason: str) -> str:
        """The broker closed our session for another client with our id: alert, count."""
        self._taken_over_ns = self._clock.now_ns()
        self._counters.drop(COMPONENT, "session_taken_over")
        detail = (
            f"the broker closed the planner feed's session {self.client_id!r} because another"
            " client connected with that client id: commands sent meanwhile go to it"
        )
        log.error("%s (%s)", detail, reason, extra={"component": COMPONENT})
        if self.on_takeover is not None:
            self.on_takeover("raised", self.client_id, detail)
        return f"session taken over by another client ({reason})"

    def _detect_takeover(self) -> None:
        """Just connected after the broker closed a working session: was it a takeover?

        MQTT 3.1.1 brokers, and Mosquitto 2.0 even over MQTT 5, close the old connection
        without a reason. It was taken over when the very next connect succeeded at once
        (the broker never went away) and either our persistent session was gone (the other
        client connected with a clean session under our id) or it is the second such close
        within a minute (the other client keeps taking the id back).
        """
        closes = self._broker_closed_ns
        if not closes or self._failed_since_close:
            return
        now = self._clock.now_ns()
        recent = [t for t in closes if now - t <= TAKEOVER_WINDOW_NS]
        if self._session_present is False or len(recent) >= 2:
            self._broker_closed_ns = []
            how = "our session was gone" if self._session_present is False else "twice in a minute"
            self._takeover(f"the broker closed a working session and {how}")

    def _check_takeover_cleared(self) -> None:
        taken, since = self._taken_over_ns, self._connected_ns
        if taken is None or since is None or since < taken:
            return
        if self._clock.now_ns() - since >= int(TAKEOVER_CLEAR_S * 1e9):
            self._taken_over_ns = None
            if self.on_takeover is not None:
                self.on_takeover("cleared", self.client_id, "the session stayed ours for an hour")

    async def close(self) -> None:
        """Publish a retained offline status, disconnect cleanly and let run() return."""
        self._closing.set()
        client = self._client
        if client is not None:
            await self._say_offline(client, "gateway stopped")
            # A DISCONNECT (not a dropped socket): the broker discards the Will, and
            # the client's message iterator ends, which ends the session in run().
            mqtt_client.disconnect(client)
        if self._running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._stopped.wait()

    # -- one connection ----------------------------------------------------------------
    def _new_client(self) -> aiomqtt.Client:
        config = self.config
        # The Will is built per connection so its "at" is this connection's start.
        will = aiomqtt.Will(
            topic=self.status_topic,
            payload=json_bytes(
                status_payload(
                    self.hub, HubState.OFFLINE, self._clock.now_ns(), ["gateway connection lost"]
                )
            ),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            **persistent_session_kwargs(config, self.client_id, self._tls, mqtt5=True),
            will=will,
            max_inflight_messages=MAX_INFLIGHT,
        )
        # Commands are acknowledged (PUBACK) only after they were handled (the ack
        # journaled, or the rejection published), so a crash in between gets the command
        # redelivered from the persistent session. aiomqtt has no manual-ack API: switch
        # it on in the paho client it wraps, before connecting (see drivers/mqtt).
        mqtt_client.enable_manual_acks(client)
        self._watch_connection(client)
        return client

    def _watch_connection(self, client: aiomqtt.Client) -> None:
        """Record CONNACK's session-present flag and the DISCONNECT reason (takeovers).

        aiomqtt's message iterator raises a plain "Disconnected" MqttError; the broker's
        reason (142: session taken over) and the session flag are only seen by paho's
        callbacks, which are wrapped here (aiomqtt's own still run).
        """
        paho = mqtt_client.paho_client(client)
        self._disconnect_rc = None
        self._session_present = None
        inner_disconnect, inner_connect = paho.on_disconnect, paho.on_connect

        def on_disconnect(*args: Any) -> None:
            rc = args[3] if len(args) > 3 else None
            self._disconnect_rc = getattr(rc, "value", rc)
            if inner_disconnect is not None:
                inner_disconnect(*args)

        def on_connect(*args: Any) -> None:
            flags = args[2] if len(args) > 2 else None
            self._session_present = bool(getattr(flags, "session_present", False))
            if inner_connect is not None:
                inner_connect(*args)

        paho.on_disconnect = on_disconnect
        paho.on_connect = on_connect

    async def _session(self, backoff: Backoff) -> None:
        client = self._new_client()
        async with client:
            self._client = client
            try:
                if self._closing.is_set():
                    raise _Closed
                self._counters.connected[COMPONENT] = True
                self._connected_ns = self._clock.now_ns()
                self._detect_takeover()
                backoff.reset()
                log.info(
                    "planner feed connected to %s:%d as %s",
                    self.config.host,
                    self.config.port,
                    self.client_id,
                    extra={"component": COMPONENT},
                )
                self._published_status = None
                self._volatile_dirty = set(self._volatile)
                commands = f"{self.prefix}cmd/+"
                granted = await client.subscribe(commands, qos=self.config.qos)
                codes = [code if isinstance(code, int) else code.value for code in granted]
                if any(code >= 0x80 for code in codes):
                    # Publishing alerts matters more than taking commands: carry on.
                    msg = f"broker refused subscription {commands!r}: commands are not received"
                    self._counters.error(COMPONENT, msg)
                    log.error(msg, extra={"component": COMPONENT})
                await self._republish_active(client)
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._read_commands(client))
                        tg.create_task(self._publish_loop(client))
                except* aiomqtt.MqttError as group:
                    if self._closing.is_set():
                        raise _Closed from None
                    raise _first_leaf(group) from None
            except asyncio.CancelledError:
                # Cancelled rather than closed: still tell the planner we are going.
                if not self._closing.is_set():
                    await self._say_offline(client, "gateway stopped")
                raise
            finally:
                self._client = None

    async def _say_offline(self, client: aiomqtt.Client, reason: str) -> None:
        payload = status_payload(self.hub, HubState.OFFLINE, self._clock.now_ns(), [reason])
        try:
            async with asyncio.timeout(OFFLINE_PUBLISH_TIMEOUT_S):
                await client.publish(
                    self.status_topic, json_bytes(payload), qos=self.config.qos, retain=True
                )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.info("could not publish offline status: %s", exc, extra={"component": COMPONENT})

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        interval = self.config.status_interval_s
        while True:
            # Cleared before the work, so a wake() during the drain is not lost.
            self._wake.clear()
            self._check_takeover_cleared()
            await self._publish_status(client)
            await self._publish_volatile(client)
            try:
                await self._drain(client)
            except (JournalError, sqlite3.Error) as exc:
                # The journal failed (disk full, I/O): the outbox waits there; the
                # volatile alerts and the status above still go out. Retry on the next wake.
                self._counters.error(COMPONENT, f"journal: {exc}")
                log.error(
                    "planner outbox: journal error, retrying: %s",
                    exc,
                    extra={"component": COMPONENT},
                )
            await self._wait_for_wake(interval)

    async def _republish_active(self, client: aiomqtt.Client) -> None:
        """Every active alert's retained topic again, on every new connection.

        A broker that lost its retained store (SIGKILL before it saved, a new broker)
        would otherwise not show an alert raised before the reconnect until it changes.
        """
        try:
            active = await self._runner.call(self._store.active)
        except (JournalError, sqlite3.Error) as exc:
            log.error("cannot read active alerts to republish: %s", exc)
            return
        for alert in active:
            await client.publish(
                self.alert_topic(alert.id),
                json_bytes(retained_payload(alert)),
                qos=self.config.qos,
                retain=True,
            )

    async def _publish_volatile(self, client: aiomqtt.Client) -> None:
        for aid in sorted(self._volatile_dirty):
            alert = self._volatile[aid]
            body = json_bytes(retained_payload(alert)) if alert.active else b""
            await client.publish(self.alert_topic(aid), body, qos=self.config.qos, retain=True)
            self._volatile_dirty.discard(aid)
            if not alert.active:
                del self._volatile[aid]

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        state, reasons = self._health()
        current = (HubState(state), tuple(reasons))
        if current == self._published_status:
            return
        payload = status_payload(self.hub, current[0], self._clock.now_ns(), current[1])
        await client.publish(
            self.status_topic, json_bytes(payload), qos=self.config.qos, retain=True
        )
        self._published_status = current

    async def _drain(self, client: aiomqtt.Client) -> None:
        await self._drain_alert_events(client)
        await self._drain_custody_exceptions(client)
        for name, fetch in self.event_streams:
            await self._drain_event_stream(client, name, fetch)
        for drain in self.extra_drains:
            await drain(self, client)

    @property
    def commands(self) -> CommandRouter:
        """The cmd/* router (the notifier adds ack codes and an ack listener to it)."""
        return self._commands

    async def _drain_event_stream(
        self,
        client: aiomqtt.Client,
        name: str,
        fetch: Callable[[int, int], Sequence[tuple[int, dict[str, object]]]],
    ) -> None:
        """One extra stream, in id order, its cursor moved after each PUBACK."""
        runner = self._runner
        journal = runner.journal
        position = await runner.call(journal.cursor, SINK, name)
        while True:
            batch = await runner.call(fetch, position, BATCH)
            if not batch:
                return
            for event_id, body in batch:
                await client.publish(self.events_topic, json_bytes(body), qos=self.config.qos)
                position = event_id
                await runner.call(journal.set_cursor, SINK, name, position, self._clock.now_ns())
                self._counters.written[COMPONENT] += 1

    async def _drain_custody_exceptions(self, client: aiomqtt.Client) -> None:
        """Rejected custody events (any source: MQTT, CLI inbox) as ``custody.rejected``."""
        fetch = self.custody_exceptions
        if fetch is None:
            return
        runner = self._runner
        journal = runner.journal
        position = await runner.call(journal.cursor, SINK, EXCEPTIONS_STREAM)
        while True:
            batch = await runner.call(fetch, position, BATCH)
            if not batch:
                return
            for record in batch:
                body = custody_rejected_payload(self.hub, record)
                await client.publish(self.events_topic, json_bytes(body), qos=self.config.qos)
                position = record.id
                await runner.call(
                    journal.set_cursor, SINK, EXCEPTIONS_STREAM, position, self._clock.now_ns()
                )
                self._counters.written[COMPONENT] += 1

    async def _drain_alert_events(self, client: aiomqtt.Client) -> None:
        runner = self._runner
        journal = runner.journal
        position = await runner.call(journal.cursor, SINK, STREAM)
        while True:
            batch = await runner.call(self._store.events_after, position, BATCH)
            if not batch:
                return
            confirmed, failure = await self._publish_batch(client, batch)
            if confirmed > position:
                await runner.call(journal.set_cursor, SINK, STREAM, confirmed, self._clock.now_ns())
                self._counters.written[COMPONENT] += sum(1 for eid, _ in batch if eid <= confirmed)
                position = confirmed
            if failure is not None:
                raise failure

    async def _publish_batch(
        self, client: aiomqtt.Client, batch: Sequence[tuple[int, AlertEvent]]
    ) -> tuple[int, aiomqtt.MqttError | None]:
        """Publish a batch concurrently; (last contiguous confirmed id, first failure)."""
        calls: list[Coroutine[Any, Any, None]] = []
        for _, event in batch:
            body = event_payload(event.alert, event.kind, event.at_ns, event.note)
            calls.append(client.publish(self.events_topic, json_bytes(body), qos=self.config.qos))
            retained = json_bytes(retained_payload(event.alert)) if event.alert.active else b""
            calls.append(
                client.publish(
                    self.alert_topic(event.alert_id), retained, qos=self.config.qos, retain=True
                )
            )
        # gather starts the calls in list order, and each publish() hands its PUBLISH to
        # paho before its first await, so packets leave in journal order (the broker keeps
        # per-topic order for one client). aiomqtt's publish() at QoS 1 returns only after
        # paho's on_publish fired, which paho calls from _handle_pubackcomp, i.e. on the
        # PUBACK (aiomqtt/client.py Client.publish: "Wait for confirmation"; its early
        # return info.is_published() is also set only after that callback). A lost
        # connection raises MqttError (or the session's TaskGroup cancels us): no cursor
        # move for those.
        results = await asyncio.gather(*calls, return_exceptions=True)
        confirmed = 0
        failure: aiomqtt.MqttError | None = None
        for index, (event_id, _) in enumerate(batch):
            pair = results[2 * index : 2 * index + 2]
            errors = [r for r in pair if isinstance(r, BaseException)]
            if errors:
                first = errors[0]
                if not isinstance(first, aiomqtt.MqttError):
                    raise first
                failure = first
                break
            confirmed = event_id
        return confirmed, failure

    async def _wait_for_wake(self, seconds: float) -> None:
        """Until wake() or close(), or at most seconds on the injected clock."""
        waiters = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._closing.wait()),
            asyncio.ensure_future(self._clock.sleep(seconds)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _sleep_unless_closing(self, seconds: float) -> None:
        closing = asyncio.ensure_future(self._closing.wait())
        sleeping = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({closing, sleeping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            sleeping.cancel()

    # -- commands ----------------------------------------------------------------------
    async def _read_commands(self, client: aiomqtt.Client) -> None:
        base = f"{self.prefix}cmd/"
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            if topic.startswith(base):
                await self._handle_command(client, topic, topic[len(base) :], raw)
            if message.qos:
                mqtt_client.ack(client, message.mid, message.qos)

    async def _handle_command(
        self, client: aiomqtt.Client, topic: str, name: str, raw: bytes
    ) -> None:
        try:
            await self._commands.handle(name, raw)
        except CommandRefused as exc:
            envelope = _envelope_of(raw)
            await self._reject(
                client, topic, str(exc), raw, f"refused_{exc.code}", exc.code, envelope
            )
        except (CommandRejected, ValueError) as exc:
            # ValueError includes pydantic's ValidationError from handlers' models.
            envelope = _envelope_of(raw)
            await self._reject(client, topic, str(exc), raw, "bad_command", None, envelope)
        except Exception as exc:
            # A handler bug must not poison the session: a command that is never acked
            # would come back after every reconnect. Logged, counted and answered.
            log.exception("command %s failed", topic, extra={"component": COMPONENT})
            await self._reject(client, topic, f"internal error: {exc}", raw, "command_failed")

    async def _reject(
        self,
        client: aiomqtt.Client,
        topic: str,
        reason: str,
        raw: bytes,
        counter: str,
        code: str | None = None,
        envelope: dict[str, object] | None = None,
    ) -> None:
        self._counters.drop(COMPONENT, counter)
        log.warning(
            "rejected command on %s: %s",
            topic,
            printable(reason, 300),
            extra={"component": COMPONENT},
        )
        payload = rejected_payload(
            self.hub, self._clock.now_ns(), topic, reason, raw, code, envelope
        )
        await client.publish(self.events_topic, json_bytes(payload), qos=self.config.qos)


def _envelope_of(raw: bytes) -> dict[str, object] | None:
    """The signed envelope a refused command came in, to echo its key and nonce."""
    if len(raw) > 16_384:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) and is_envelope(body) else None
