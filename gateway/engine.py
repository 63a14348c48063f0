"""The SOP engine: runs every rule on committed readings and on the clock, journals alerts.

Rules (``gateway.sop`` zone excursions, ``gateway.health`` sensor health) are pure and
return transitions; this module maps each transition to the alert store (one active
alert per rule and subject) on the journal thread, in commit order, and tells the
outputs that new alert events wait in the outbox. Deadlines (alarm delays, stale
sensors) fire from ``tick()``, which runs on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from gateway.alerts import AlertStore, Severity
from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.health import HealthEvent, SensorHealth, checksum_rejects
from gateway.journal import JournalRunner
from gateway.metrics import Counters
from gateway.model import Reading
from gateway.rules.excursion import ExcursionEvent
from gateway.sop import ZoneMonitor

log = logging.getLogger(__name__)

TICK_S = 1.0
HEALTH_RULES = frozenset(
    {
        "sensor_stale",
        "sensor_fault",
        "sensor_spike",
        "sensor_frozen",
        "battery_low",
        "checksum_rate",
        "data_gap",
    }
)
Transition = ExcursionEvent | HealthEvent


class SopEngine:
    """Evaluates the hub's SOPs and keeps the alert store in step with them."""

    def __init__(
        self,
        config: GatewayConfig,
        runner: JournalRunner,
        alerts: AlertStore,
        counters: Counters,
        clock: Clock,
    ) -> None:
        self._runner = runner
        self.alerts = alerts
        self._counters = counters
        self._clock = clock
        self.monitor = ZoneMonitor(config)
        self.health = SensorHealth(config.sensors, config.health, started_ns=clock.now_ns())
        self._queue: asyncio.Queue[list[Transition]] = asyncio.Queue()
        self._listeners: list[Callable[[], None]] = []
        self.zones_with_shipments: Callable[[], set[str]] = set

    def on_alert_change(self, listener: Callable[[], None]) -> None:
        """Call listener after every journaled alert transition (outputs drain the outbox)."""
        self._listeners.append(listener)

    def evaluate(self, readings: Sequence[Reading]) -> None:
        """Ingest commit listener: rules run on committed readings only, in commit order."""
        events: list[Transition] = [*self.monitor.observe(readings)]
        events.extend(self.health.observe(readings))
        if events:
            self._queue.put_nowait(events)

    async def settled(self) -> None:
        """Wait until every queued transition is journaled."""
        await self._queue.join()

    async def restore(self) -> None:
        """After a restart: health rules learn which of their alerts are still active."""
        active = await self._runner.call(self.alerts.active)
        self.health.restore(
            (a.rule, a.subject)  # type: ignore[misc]
            for a in active
            if a.rule in HEALTH_RULES
        )

    async def run(self) -> None:
        """Apply transitions as they come; tick the timers when nothing comes for TICK_S."""
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    events = await self._queue.get()
            except TimeoutError:
                await self.tick()
                continue
            try:
                for event in events:
                    await self._apply(event)
            finally:
                self._queue.task_done()

    async def tick(self) -> None:
        """Fire every deadline that passed on the clock."""
        now = self._clock.now_ns()
        counters = self._counters
        events: list[Transition] = [*self.monitor.check(now)]
        events.extend(self.health.check(now, self.zones_with_shipments()))
        events.extend(
            self.health.observe_checksums(
                dict(counters.received), checksum_rejects(counters.dropped), now_ns=now
            )
        )
        for event in events:
            await self._apply(event)

    async def _apply(self, event: Transition) -> None:
        if isinstance(event, ExcursionEvent):
            changed = await self._apply_excursion(event)
        else:
            changed = await self._apply_health(event)
        if changed:
            for listener in self._listeners:
                listener()

    async def _apply_excursion(self, event: ExcursionEvent) -> bool:
        profile = self.monitor.zones[event.subject]
        limit = profile.max_c if event.direction == "high" else profile.min_c
        if event.kind == "raised":
            alert, new = await self._runner.call(
                self.alerts.raise_alert,
                "excursion",
                event.subject,
                Severity.CRITICAL,
                event.started_at_ns,
                event.at_ns,
                event.peak_c,
                limit,
                f"zone {event.subject} {event.direction} excursion: {event.peak_c:.2f} °C"
                f" against {profile.name} limit {limit} °C",
                {"profile": profile.name, "direction": event.direction},
            )
            if new:
                log.warning("alert raised: %s %s", alert.id, alert.message)
            return new
        if event.kind == "cleared":
            cleared = await self._runner.call(
                self.alerts.clear, "excursion", event.subject, event.at_ns, event.peak_c
            )
            if cleared is not None:
                log.info("alert cleared: %s", cleared.id)
            return cleared is not None
        return False

    async def _apply_health(self, event: HealthEvent) -> bool:
        if event.kind == "raised":
            started = event.details.get("since_ns", event.at_ns)
            alert, new = await self._runner.call(
                self.alerts.raise_alert,
                event.rule,
                event.subject,
                Severity(event.severity),
                started if isinstance(started, int) else event.at_ns,
                event.at_ns,
                event.value,
                event.limit,
                event.message,
                dict(event.details),
            )
            if new:
                log.warning("alert raised: %s %s", alert.id, alert.message)
            return new
        cleared = await self._runner.call(
            self.alerts.clear, event.rule, event.subject, event.at_ns, event.value
        )
        return cleared is not None
