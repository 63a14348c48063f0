"""The SOP engine: runs every rule on committed readings and on the clock, journals alerts.

Rules are pure and return transitions: ``gateway.sop.zones`` zone excursions,
``gateway.sop.sensor_health`` sensor health, ``gateway.sop.dwell`` dwell timers and
per-shipment cumulative budgets, fed by custody events from ``gateway.custody.ledger``.
This module maps each transition to the alert store (one active alert per rule and
subject) on the journal thread, in order, and tells
the outputs that new alert events wait in the outbox. Deadlines (alarm delays, stale
sensors, dwell limits, budgets running out) fire from ``tick()`` on the injected clock.

One ordered path: every transition (from readings, timers or custody commands) joins one
queue in the order the rules produced it, behind the held transitions of a batch not yet
committed, and one step at a time journals the queue under one lock (a tick and a custody
command are steps too). So a timer can never journal a raise while the clear of the
excursion before it still waits (which folded a new excursion into the one clearing), and
a handoff never interleaves with the timers it starts or stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import ParamSpec, Protocol, TypeVar, get_args

from gateway.alerts.store import Alert, AlertStore, Severity
from gateway.config import GatewayConfig
from gateway.core.clock import Clock
from gateway.core.metrics import Counters
from gateway.core.model import Reading
from gateway.custody.events import CustodyEvent, CustodyRejected, ShipmentState
from gateway.custody.ledger import CustodyLedger
from gateway.journal.store import JournalRunner
from gateway.sop.dwell import DwellEvent, DwellTimers, ShipmentBudgets
from gateway.sop.excursion import BudgetEvent, DetectorSnapshot, ExcursionEvent
from gateway.sop.sensor_health import HealthEvent, Rule, SensorHealth, checksum_rejects
from gateway.sop.zones import MktEvent, ZoneMonitor

log = logging.getLogger(__name__)

TICK_S = 1.0
HEALTH_RULES: frozenset[str] = frozenset(get_args(Rule))
BUDGET_RULE = "budget"
MKT_RULE = "mkt"
Transition = ExcursionEvent | HealthEvent | DwellEvent | BudgetEvent | MktEvent
WITHDRAWN_NOTE = "withdrawn: recorded late, in time"
P = ParamSpec("P")
T = TypeVar("T")


class Call(Protocol):
    """JournalRunner.call, or _direct inside a group's transaction."""

    def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Run fn with the arguments; await the result."""
        ...


async def _direct(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call fn here and now (on the journal thread, inside a group's transaction)."""
    return fn(*args, **kwargs)


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
        profiles = config.all_profiles()
        zone_kinds = {z.id: z.kind for z in config.zones}
        self._zone_kinds = zone_kinds
        self.ledger = CustodyLedger(
            runner.journal.connection,
            config.hub.id,
            set(zone_kinds),
            set(profiles),
            max_future_s=config.commands.max_future_s,
        )
        self.dwell = DwellTimers.rebuild(self.ledger, config.dwell_rules, zone_kinds)
        self._config = config
        self.budgets = ShipmentBudgets(
            profiles,
            tracked_zones=set(zone_kinds),
            zone_profiles={z.id: z.profile for z in config.zones if z.profile},
            zone_max_gaps=self.monitor.max_gaps,
        )
        self._queue: asyncio.Queue[list[Transition]] = asyncio.Queue()
        self._held: list[Transition] = []  # observed, their batch not yet committed
        self._step = asyncio.Lock()
        self._wake = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._rejection_listeners: list[Callable[[], None]] = []

    def on_custody_rejected(self, listener: Callable[[], None]) -> None:
        """Call listener after a custody event was refused and journaled as an exception."""
        self._rejection_listeners.append(listener)

    def on_alert_change(self, listener: Callable[[], None]) -> None:
        """Call listener after every journaled alert transition (outputs drain the outbox)."""
        self._listeners.append(listener)

    def observe(self, readings: Sequence[Reading]) -> bool:
        """Ingest observer: run the rules on readings joining a batch, in commit order.

        The transitions are held until ``release()`` (the batch's commit listener): an
        alert is journaled only after the readings it comes from. True when there are
        some, so the ingest commits the batch now instead of waiting out its interval.
        """
        self._held.extend(self._rules_on(readings))
        return bool(self._held)

    def _rules_on(self, readings: Sequence[Reading]) -> list[Transition]:
        events: list[Transition] = [*self.monitor.observe(readings)]
        events.extend(self.health.observe(readings))
        for zone, ts_ns, value in self.monitor.zone_values:
            events.extend(self.budgets.observe_zone(zone, ts_ns, value))
        return events

    def release(self, readings: Sequence[Reading] = ()) -> None:
        """Ingest commit listener: the held transitions' readings are durable; apply them."""
        if self._held:
            events, self._held = self._held, []
            self._enqueue(events)

    def _enqueue(self, events: list[Transition]) -> None:
        self._queue.put_nowait(events)
        self._wake.set()

    def _emit(self, events: list[Transition]) -> None:
        """Timer and custody transitions: in line behind everything the rules said before.

        Behind the held transitions of a batch not yet committed, too: a timer's raise must
        never be journaled ahead of the clear of the excursion before it.
        """
        if not events:
            return
        if self._held:
            self._held.extend(events)
        else:
            self._enqueue(events)

    def evaluate(self, readings: Sequence[Reading]) -> None:
        """Run the rules on readings already committed (observe, then release at once)."""
        self.observe(readings)
        self.release()

    def report(self, events: Sequence[Transition]) -> None:
        """Queue transitions raised outside the rules (the gateway's own alerts)."""
        if events:
            self._enqueue(list(events))

    async def settled(self) -> None:
        """Wait until every queued batch and transition is journaled."""
        await self._queue.join()
        async with self._step:
            pass  # a step that took the last item may still be journaling

    async def _drain(self) -> None:
        """Journal every queued transition, oldest first; the caller holds ``_step``."""
        while True:
            try:
                events = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await self._apply_group(events)
            finally:
                self._queue.task_done()

    async def restore(self) -> None:
        """After a restart: health rules learn their active alerts; budgets are replayed.

        A shipment's cumulative budget never resets: its custody intervals are replayed
        against the journaled readings of its zones, aggregated as the live rules do.
        """
        active = await self._runner.call(self.alerts.active)
        self.health.restore(
            (a.rule, a.subject)  # type: ignore[misc]
            for a in active
            if a.rule in HEALTH_RULES
        )
        journal = self._runner.journal
        now = self._clock.now_ns()

        def zone_samples(zone: str, start_ns: int, end_ns: int | None) -> list[tuple[int, float]]:
            monitor = ZoneMonitor(self._config)
            monitor.observe(journal.readings_between([zone], start_ns, end_ns or now + 1))
            return [(ts, value) for z, ts, value in monitor.zone_values if z == zone]

        replayed = await self._runner.call(self.budgets.replay, self.ledger, zone_samples)
        for event in replayed:
            await self._apply(event)
        await self._restore_zones(active, now)

    async def _restore_zones(self, active: Sequence[Alert], now: int) -> None:
        """Replay the journal into the zone detectors and MKT judges (what they knew).

        An excursion open before a restart is open after it and clears when the zone
        recovers; a run pending at the restart keeps its start. The replay starts at the
        oldest active excursion or MKT alert of the zone, or far enough back for a pending
        run (alarm delay plus two max gaps) and the MKT window; its transitions go through
        the alert store, which dedupes raises by their deterministic ids.
        """
        journal = self._runner.journal
        windows: dict[str, int] = {}
        for zone, profile in self.monitor.zones.items():
            gap_ns = self.monitor.max_gaps.get(zone, 0)
            back_ns = round(profile.alarm_delay_s * 1e9) + 2 * gap_ns
            if profile.mkt_limit_c is not None:
                back_ns = max(back_ns, round(profile.mkt_window_s * 1e9) + gap_ns)
            start = now - back_ns
            for alert in active:
                if alert.subject == zone and alert.rule in ("excursion", MKT_RULE):
                    start = min(start, alert.started_ns - gap_ns)
            windows[zone] = start
        if not windows:
            return
        first = min(windows.values())

        def replay_readings() -> list[Reading]:
            return [
                r
                for r in journal.readings_in_commit_order(list(windows), first, now + 1)
                if r.ts_ns >= windows[r.zone]
            ]

        readings = await self._runner.call(replay_readings)
        for event in self.monitor.observe(readings):
            await self._apply(event)
        for alert in active:
            zone = alert.subject
            if zone not in windows:
                continue
            if alert.rule == "excursion" and self.monitor.detector(zone).state == "inside":
                # The journal shows it ended (or holds nothing of it any more): clear it.
                await self._apply_cleared("excursion", zone, now)
            judge = self.monitor.mkt_judge(zone)
            if alert.rule == MKT_RULE and judge is not None:
                judge.high = True  # the next judged value below the limit clears it

    async def _apply_cleared(self, rule: str, subject: str, at_ns: int) -> None:
        cleared = await self._runner.call(self.alerts.clear, rule, subject, at_ns, None)
        if cleared is not None:
            log.info("alert cleared after restart: %s", cleared.id)
            for listener in self._listeners:
                listener()

    def detector_states(self) -> dict[str, DetectorSnapshot]:
        """Each monitored zone's detector state (status views, restart tests)."""
        return {zone: self.monitor.detector(zone).snapshot() for zone in self.monitor.zones}

    async def run(self) -> None:
        """Journal queued transitions as they come; tick the timers every TICK_S, busy or not."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + TICK_S
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            async with self._step:
                await self._drain()
            if loop.time() >= next_tick:
                await self.tick()
                next_tick = loop.time() + TICK_S

    def zones_with_shipments(self) -> set[str]:
        """Zones holding at least one shipment now (a stale one there is a data gap)."""
        return {s.zone for s in self.ledger.open_shipments()}

    async def apply_custody(
        self, payload: bytes, source: str, signer: str | None = None
    ) -> ShipmentState:
        """Journal a custody event (scanner, WMS, CLI) and run the dwell and budget rules.

        ``signer`` is the verified key of a signed command (None: unsigned).

        Raises CustodyRejected after the rejection was journaled as an exception record.
        One step under the engine's lock: no timer runs meanwhile, and its transitions are
        journaled in line behind everything the rules said before it.
        """
        async with self._step:
            state = await self._apply_custody(payload, source, signer)
            await self._drain()
            return state

    async def _apply_custody(
        self, payload: bytes, source: str, signer: str | None
    ) -> ShipmentState:
        now = self._clock.now_ns()
        ledger = self.ledger

        # The zone temperature is read here, on the loop that updates it.
        temp_c = None
        shipment = None
        try:
            parsed = CustodyEvent.from_json(payload)
            shipment = parsed.shipment
            temp_c = self.monitor.zone_temperature(parsed.zone, now)
        except (ValueError, CustodyRejected):
            pass  # apply_payload records the malformed payload and raises

        def apply() -> tuple[ShipmentState | None, ShipmentState]:
            before = ledger.shipment(shipment) if shipment is not None else None
            return before, ledger.apply_payload(
                payload, now_ns=now, source=source, temp_c=temp_c, signer=signer
            )

        try:
            before, state = await self._runner.call(apply)
        except CustodyRejected:
            for listener in self._rejection_listeners:
                listener()
            raise
        if not state.duplicate:
            await self._after_custody(before, state)
        return state

    async def _after_custody(self, before: ShipmentState | None, state: ShipmentState) -> None:
        history = await self._runner.call(self.ledger.history, state.shipment)
        event = history[-1].to_event()
        transitions: list[Transition] = [
            *self.dwell.on_custody(state.shipment, event.kind, event.ts_ns, event.zone),
            *self.budgets.on_custody(before, event),
        ]
        self._emit(transitions)

    async def _process_inbox(self, now: int) -> None:
        # Snapshot the zone temperatures on the loop; the inbox runs on the journal thread.
        temps = {zone: self.monitor.zone_temperature(zone, now) for zone in self._zone_kinds}
        results = await self._runner.call(
            partial(self.ledger.process_inbox, now, temp_of=temps.get)
        )
        for inbox_id, outcome in results:
            if isinstance(outcome, CustodyRejected):
                self._counters.drop("custody", outcome.reason)
                log.warning("handoff %d rejected: %s", inbox_id, outcome)
                for listener in self._rejection_listeners:
                    listener()
            elif not outcome.duplicate:
                await self._after_custody(None, outcome)

    async def tick(self) -> None:
        """Fire every deadline that passed on the clock (one step, after queued batches)."""
        async with self._step:
            await self._tick()
            await self._drain()

    async def _tick(self) -> None:
        now = self._clock.now_ns()
        counters = self._counters
        await self._process_inbox(now)
        events: list[Transition] = [*self.monitor.check(now)]
        events.extend(self.dwell.check(now))
        events.extend(self.budgets.check(now))
        events.extend(self.health.check(now, self.zones_with_shipments()))
        events.extend(
            self.health.observe_checksums(
                dict(counters.received), checksum_rejects(counters.dropped), now_ns=now
            )
        )
        self._emit(events)

    async def _apply(self, event: Transition) -> None:
        if await self._apply_one(event, self._runner.call):
            for listener in self._listeners:
                listener()

    async def _apply_group(self, events: Sequence[Transition]) -> None:
        """Journal a batch's transitions in one transaction (one fsync, not one each).

        An excursion often comes with a spike on every probe of the zone: a transaction
        each put them one fsync apart on a loaded card. The whole group runs on the
        journal thread, so no other journal work interleaves with the transaction.
        """
        if len(events) == 1:
            await self._apply(events[0])
            return

        def apply_all() -> bool:
            changed = False
            with self.alerts.transaction():
                for event in events:
                    coro = self._apply_one(event, _direct)
                    try:
                        coro.send(None)
                    except StopIteration as done:
                        changed = bool(done.value) or changed
                    else:  # _direct never suspends; anything else is a bug here
                        coro.close()
                        msg = "an alert transition suspended inside its transaction"
                        raise RuntimeError(msg)
            return changed

        if await self._runner.call(apply_all):
            for listener in self._listeners:
                listener()

    async def _apply_one(self, event: Transition, call: Call) -> bool:
        if isinstance(event, ExcursionEvent):
            return await self._apply_excursion(event, call)
        if isinstance(event, HealthEvent):
            return await self._apply_health(event, call)
        if isinstance(event, DwellEvent):
            return await self._apply_dwell(event, call)
        if isinstance(event, MktEvent):
            return await self._apply_mkt(event, call)
        return await self._apply_budget(event, call)

    async def _apply_excursion(self, event: ExcursionEvent, call: Call) -> bool:
        profile = self.monitor.zones[event.subject]
        limit = profile.max_c if event.direction == "high" else profile.min_c
        if event.kind == "raised":
            alert, new = await call(
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
            cleared = await call(
                self.alerts.clear, "excursion", event.subject, event.at_ns, event.peak_c
            )
            if cleared is not None:
                log.info("alert cleared: %s", cleared.id)
            return cleared is not None
        return False

    async def _apply_health(self, event: HealthEvent, call: Call) -> bool:
        if event.kind == "raised":
            started = event.details.get("since_ns", event.at_ns)
            alert, new = await call(
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
        cleared = await call(self.alerts.clear, event.rule, event.subject, event.at_ns, event.value)
        return cleared is not None

    async def _apply_dwell(self, event: DwellEvent, call: Call) -> bool:
        if event.kind == "resolved":
            note = WITHDRAWN_NOTE if event.withdrawn else ""
            cleared = await call(
                partial(self.alerts.clear, note=note),
                event.rule,
                event.shipment,
                event.at_ns,
                event.elapsed_s,
            )
            if cleared is not None and event.withdrawn:
                log.info("alert %s %s", cleared.id, WITHDRAWN_NOTE)
            return cleared is not None
        verb = "over" if event.kind == "violated" else "nearing"
        alert, new = await call(
            self.alerts.raise_alert,
            event.rule,
            event.shipment,
            Severity(event.severity or "warning"),
            event.started_ns,
            event.at_ns,
            event.elapsed_s,
            event.limit_s,
            f"shipment {event.shipment} {verb} its dwell limit {event.rule}:"
            f" {event.elapsed_s / 60:.1f} of {event.limit_s / 60:.0f} min"
            + (f" in {event.zone}" if event.zone else ""),
            {"zone": event.zone, "deadline_ns": event.deadline_ns, "dwell": event.kind},
        )
        if new:
            log.warning("alert raised: %s %s", alert.id, alert.message)
        return new

    async def _apply_budget(self, event: BudgetEvent, call: Call) -> bool:
        severity = Severity.CRITICAL if event.kind == "violated" else Severity.WARNING
        alert, new = await call(
            self.alerts.raise_alert,
            BUDGET_RULE,
            event.subject,
            severity,
            event.at_ns,
            event.at_ns,
            event.spent_s,
            event.budget_s,
            f"shipment {event.subject} at risk: {event.remaining_s / 60:.1f} min of its"
            f" {event.budget_s / 60:.0f} min out-of-range budget left ({event.profile})",
            {
                "profile": event.profile,
                "remaining_s": event.remaining_s,
                "spent_s": event.spent_s,
                "budget": event.kind,
            },
        )
        if new:
            log.warning("alert raised: %s %s", alert.id, alert.message)
        return new

    async def _apply_mkt(self, event: MktEvent, call: Call) -> bool:
        if event.kind == "cleared":
            cleared = await call(
                self.alerts.clear, MKT_RULE, event.subject, event.at_ns, event.value_c
            )
            return cleared is not None
        window_h = event.window_s / 3600
        alert, new = await call(
            self.alerts.raise_alert,
            MKT_RULE,
            event.subject,
            Severity.WARNING,
            event.at_ns,
            event.at_ns,
            event.value_c,
            event.limit_c,
            f"zone {event.subject} mean kinetic temperature {event.value_c:.2f} °C over"
            f" {window_h:g} h exceeds {event.limit_c} °C ({event.profile},"
            f" dH {event.dh_kj_per_mol} kJ/mol)",
            {
                "window_s": event.window_s,
                "dh_kj_per_mol": event.dh_kj_per_mol,
                "covered_s": round(event.covered_s, 3),
            },
        )
        if new:
            log.warning("alert raised: %s %s", alert.id, alert.message)
        return new
