"""The notifier task: alert events in, escalation levels on the clock, messages out.

One loop: read new alert events into escalation state, fire the levels whose deadline
passed, claim the messages that are due (marked ``sending`` and committed before any
byte leaves), send them concurrently (one per contact channel), record each result, then
sleep on the injected clock until the next deadline, a wake-up, or a one-second poll
(an ack from the CLI is written by another process and found by the poll).

All state lives in the journal (gateway/notify/store.py), so a restart or SIGKILL goes
on where the last commit left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from gateway.alerts.store import AlertStore
from gateway.config import GatewayConfig
from gateway.core.clock import NS_PER_S, Clock
from gateway.core.metrics import Counters
from gateway.journal.store import Journal, JournalRunner
from gateway.notify.channels import Message, render, send
from gateway.notify.config import ChannelConfig, NotifyConfig
from gateway.notify.store import EVENT_BATCH, Attempt, Group, NotifyStore

if TYPE_CHECKING:
    from gateway.sinks.planner.feed import PlannerFeed
from gateway.outbox.lineprotocol import FieldValue, line
from gateway.outbox.streams import Stream

log = logging.getLogger(__name__)

COMPONENT: Final = "notify"
PLANNER_STREAM: Final = "notification_attempts"
POLL_S: Final = 1.0
CLOSE_TIMEOUT_S: Final = 10.0

Sender = Callable[[ChannelConfig, Message], Awaitable[tuple[bool, str]]]


class Notifier:
    """Runs escalations and delivers the outbox; see the module docstring."""

    def __init__(
        self,
        config: NotifyConfig,
        store: NotifyStore,
        runner: JournalRunner,
        counters: Counters,
        clock: Clock,
        sender: Sender = send,
    ) -> None:
        self.config = config
        self.store = store
        self._runner = runner
        self._counters = counters
        self._clock = clock
        self._send = sender
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self.rounds = 0  # completed loop rounds (tests wait on this, never on time)
        self.idle = False  # blocked in a wait with no wake-up pending
        self._planner_wake: Callable[[], None] | None = None

    def attach_planner(self, planner: PlannerFeed) -> None:
        """Publish attempts on the planner feed; take ack codes and wake on cmd/ack."""
        hub = self.store.hub

        def fetch(after: int, limit: int) -> list[tuple[int, dict[str, object]]]:
            return [
                (a.id, attempt_payload(hub, a)) for a in self.store.attempts_after(after, limit)
            ]

        planner.event_streams.append((PLANNER_STREAM, fetch))
        planner.commands.resolve_ack_code = self.store.resolve_code
        planner.commands.on_acknowledged.append(self.wake)
        self._planner_wake = planner.wake

    def wake(self, *_: object) -> None:
        """Something changed (an alert event, an ack): run a round now."""
        self._wake.set()

    async def close(self) -> None:
        """Finish the current round (in-flight sends complete), then stop."""
        self._closing.set()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._stopped.wait()

    async def run(self) -> None:
        """Until close() or cancellation."""
        self._stopped.clear()
        try:
            report = await self._runner.call(self.store.start, self._clock.now_ns())
            if report.first_start and report.adopted:
                log.warning(
                    "notifications: %d active alert(s) raised before notify was configured"
                    " are escalated from now",
                    len(report.adopted),
                    extra={"component": COMPONENT},
                )
            if report.resent or report.uncertain:
                log.warning(
                    "notifications interrupted by a crash: %d re-sent once with their id,"
                    " %d marked uncertain",
                    report.resent,
                    report.uncertain,
                    extra={"component": COMPONENT},
                )
            overdue = 0
            while True:
                self._wake.clear()
                busy = await self.round()
                self.rounds += 1
                if self._closing.is_set():
                    return
                if busy:
                    continue
                deadline = await self._runner.call(self.store.next_deadline)
                wait = POLL_S
                if deadline is not None:
                    wait = min(POLL_S, (deadline - self._clock.now_ns()) / NS_PER_S)
                if wait <= 0:
                    # The clock passed a deadline while the round ran: go again at once
                    # (a sleep from now would wait past it). A second time in a row
                    # would mean no progress: yield to the loop for a moment instead.
                    overdue += 1
                    if overdue > 1:
                        await asyncio.sleep(0.05)
                    continue
                overdue = 0
                await self._wait(wait)
        finally:
            self._stopped.set()

    async def round(self) -> bool:
        """One pass: events, due levels, due messages; True if anything was sent."""
        read, groups = await self._runner.call(self.store.step, self._clock.now_ns())
        if not groups:
            return read > 0 and read >= 10 * EVENT_BATCH  # more events wait: go on at once
        await asyncio.gather(*(self._deliver(g) for g in groups))
        return True

    async def _deliver(self, group: Group) -> None:
        contact = self.config.contact(group.contact)
        now = self._clock.now_ns()
        if contact is None or group.channel >= len(contact.channels):
            ok, detail = False, f"contact {group.contact!r} channel {group.channel} not configured"
        else:
            channel = contact.channels[group.channel]
            message = render(
                group.message_id,
                self.store.hub,
                group.contact,
                [r.item for r in group.rows],
                self.store.timezone,
                now,
                self.config.ack_url,
            )
            ok, detail = await self._send(channel, message)
        state = await self._runner.call(self.store.settle, group, ok, detail, self._clock.now_ns())
        counters = self._counters
        if ok:
            counters.written[COMPONENT] += 1
            log.info(
                "notified %s via %s: %d item(s), message %s",
                group.contact,
                group.channel_name,
                len(group.rows),
                group.message_id,
                extra={"component": COMPONENT},
            )
        else:
            counters.write_failures[COMPONENT] += 1
            counters.error(COMPONENT, f"{group.contact}/{group.channel_name}: {detail}")
            log.log(
                logging.ERROR if state == "failed" else logging.WARNING,
                "notification to %s via %s %s: %s",
                group.contact,
                group.channel_name,
                "given up" if state == "failed" else "failed, will retry",
                detail,
                extra={"component": COMPONENT},
            )

    async def _wait(self, seconds: float) -> None:
        if self._wake.is_set():
            return
        self.idle = True
        waiters = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._clock.sleep(seconds)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.idle = False
            for waiter in waiters:
                waiter.cancel()


def build_notifier(
    config: GatewayConfig,
    journal: Journal,
    runner: JournalRunner,
    alerts: AlertStore,
    counters: Counters,
    clock: Clock,
    sender: Sender = send,
) -> Notifier | None:
    """The notifier for a config, or None when it has no contacts (Apprise stays unloaded)."""
    notify = config.notify
    if notify is None or not notify.contacts:
        return None
    # Every secret is read now, so a missing one stops the gateway at load, not at 3 a.m.
    from gateway.notify.channels import resolve_secrets

    for contact in notify.contacts:
        for channel in contact.channels:
            resolve_secrets(channel)
    store = NotifyStore(
        journal,
        alerts,
        notify,
        config.hub.timezone,
        {s.id: s.zone for s in config.sensors},
        {z.id for z in config.zones},
    )
    return Notifier(notify, store, runner, counters, clock, sender)


def attempt_line(hub: str, attempt: Attempt) -> str:
    """InfluxDB point of one attempt (measurement ``notification``, docs/influxdb-schema.md)."""
    tags = {"hub": hub, "alert_id": attempt.alert_id, "contact": attempt.contact or "-",
            "channel": attempt.channel or "-"}  # fmt: skip
    fields: dict[str, FieldValue] = {
        "kind": attempt.kind or "-",
        "level": attempt.level,
        "result": attempt.result,
        "attempt": attempt.attempt,
        "detail": attempt.detail,
        "message_id": attempt.message_id or "",
        "seq": attempt.id,
    }
    return line("notification", tags, fields, attempt.at_ns)


def notification_stream(store: NotifyStore) -> Stream:
    """The attempt log as line protocol for the InfluxDB forwarder."""

    def fetch(journal: Journal, after: int, limit: int) -> tuple[int, int, bytes]:
        rows = store.attempts_after(after, limit)
        if not rows:
            return after, 0, b""
        body = "\n".join(attempt_line(store.hub, a) for a in rows).encode()
        return rows[-1].id, len(rows), body

    return Stream("notifications", fetch)


def attempt_payload(hub: str, attempt: Attempt) -> dict[str, object]:
    """Planner feed event ``notification.attempt`` (docs/schemas/notification-attempt...)."""
    from gateway.core.clock import iso_utc
    from gateway.sinks.planner.payloads import PAYLOAD_SCHEMA_VERSION

    return {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "type": "notification.attempt",
        "hub": hub,
        "at": iso_utc(attempt.at_ns),
        "alert_id": attempt.alert_id,
        "contact": attempt.contact,
        "channel": attempt.channel,
        "kind": attempt.kind,
        "level": attempt.level,
        "result": attempt.result,
        "attempt": attempt.attempt,
        "message_id": attempt.message_id,
        "detail": attempt.detail,
    }
