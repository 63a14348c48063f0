"""The gateway daemon: drivers -> ingest -> journal -> forwarders, under one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from drivers.base import Driver
from drivers.registry import REGISTRY
from gateway.alerts.store import AlertStore, HubState
from gateway.config import GatewayConfig
from gateway.core.clock import NS_PER_S, Clock, SystemClock, iso_utc
from gateway.core.metrics import Counters
from gateway.custody.events import CustodyRejected
from gateway.ingest.batcher import Ingest
from gateway.ingest.normalize import Normalizer
from gateway.journal.store import BudgetResult, Journal, JournalRunner
from gateway.outbox.forwarder import InfluxForwarder
from gateway.outbox.streams import (
    STREAM_READINGS,
    alerts_stream,
    custody_stream,
    health_stream,
    readings_stream,
)
from gateway.runtime.reconnect import supervise
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.sinks.influx import InfluxWriter
from gateway.sinks.planner.feed import CommandRejected, PlannerFeed
from gateway.sop.engine import SopEngine
from gateway.sop.sensor_health import HealthEvent

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0
BUDGET_INTERVAL_S = 30.0  # how often the journal's size is checked against max_size_mb
BUDGET_PROTECT_RECENT_S = 3600.0  # the newest hour of readings is never downsampled
BUDGET_CLEAR_S = 3600.0  # journal_budget clears after an hour without thinning


def build_drivers(config: GatewayConfig, clock: Clock) -> list[Driver]:
    """One driver instance per configured block, through the registry."""
    return [REGISTRY[kind].build(block, clock) for kind, _, block in config.drivers.blocks()]


DRIVER_STOP_TIMEOUT_S = 5.0


class Gateway:
    """A running hub gateway built from one config."""

    def __init__(
        self,
        config: GatewayConfig,
        clock: Clock | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.counters = Counters()
        self.journal = Journal(config.journal.path, config.journal.synchronous)
        self.runner = JournalRunner(self.journal)
        self.ingest = Ingest(
            self.runner,
            Normalizer(config),
            self.counters,
            self.clock,
            commit_interval_s=config.journal.commit_interval_ms / 1000,
            commit_max_rows=config.journal.commit_max_rows,
        )
        self.drivers = build_drivers(config, self.clock)
        self.alerts = AlertStore(self.journal.connection, config.hub.id)
        self.engine = SopEngine(config, self.runner, self.alerts, self.counters, self.clock)
        self.ingest.on_observe(self.engine.observe)
        self.ingest.on_commit(self.engine.release)
        self.forwarders: list[InfluxForwarder] = []
        influx = config.sinks.influx
        if influx is not None:
            forwarder = InfluxForwarder(
                "influx",
                self.runner,
                InfluxWriter(influx),
                [
                    alerts_stream(self.alerts),
                    custody_stream(self.engine.ledger),
                    health_stream(config.hub.id),
                    readings_stream(config.hub.id),
                ],
                self.counters,
                self.clock,
                batch_size=influx.batch_size,
                max_backoff_s=influx.max_backoff_s,
                cursor_save_s=influx.cursor_save_s,
            )
            self.ingest.on_commit(forwarder.wake)
            self.engine.on_alert_change(forwarder.wake)
            self.forwarders.append(forwarder)
        self.planner: PlannerFeed | None = None
        if config.sinks.planner is not None:
            self.planner = PlannerFeed(
                config.sinks.planner,
                config.hub.id,
                self.runner,
                self.alerts,
                self.counters,
                self.clock,
                self.hub_state,
            )
            self.engine.on_alert_change(self.planner.wake)
            self.planner.on_command["custody"] = self._custody_command
            self.planner.custody_exceptions = self.engine.ledger.rejected_after
            self.engine.on_custody_rejected(self.planner.wake)
        self.notifier = notifier or SystemdNotifier()
        self.started_ns = self.clock.now_ns()
        self._extras: dict[str, Any] = {}
        self._last_rate: tuple[float, int] | None = None
        self.ready = asyncio.Event()
        self.status_path = Path(config.journal.path).with_name("status.json")
        self.shutdown_flush_s = 5.0

    async def run(self, stop: asyncio.Event) -> None:
        """Run until stop is set, then flush: drivers stop, the queue commits, sinks drain."""
        self.ingest.last_id = await self.runner.call(self.journal.last_id)
        await self.engine.restore()
        try:
            async with asyncio.TaskGroup() as tg:
                ingest_task = tg.create_task(self.ingest.run(), name="ingest")
                forwarder_tasks = [
                    tg.create_task(f.run(), name=f"forward:{f.name}") for f in self.forwarders
                ]
                drivers_stop = asyncio.Event()
                driver_tasks = [
                    tg.create_task(
                        supervise(d, self.ingest, self.counters, self.clock, stop=drivers_stop),
                        name=f"driver:{d.name}",
                    )
                    for d in self.drivers
                ]
                status_task = tg.create_task(self._status_loop(), name="status")
                planner_tasks = (
                    [tg.create_task(self.planner.run(), name="planner")] if self.planner else []
                )
                prune_task = tg.create_task(self._prune_loop(), name="prune")
                budget_task = tg.create_task(self._budget_loop(), name="journal-budget")
                sop_task = tg.create_task(self.engine.run(), name="sop")
                watchdog_task = tg.create_task(self.notifier.watchdog(), name="watchdog")
                self.ready.set()
                self.notifier.notify("READY=1", f"STATUS=hub {self.config.hub.id} running")
                log.info(
                    "gateway running: hub %s, %d driver(s), %d sink(s), journal %s",
                    self.config.hub.id,
                    len(self.drivers),
                    len(self.forwarders),
                    self.config.journal.path,
                )
                await stop.wait()
                log.info("stopping: closing drivers, committing the queue, draining sinks")
                self.notifier.notify("STOPPING=1", "STATUS=stopping: draining")
                # Drivers stop between deliveries: what they already read is committed.
                drivers_stop.set()
                if driver_tasks:
                    _, stuck = await asyncio.wait(driver_tasks, timeout=DRIVER_STOP_TIMEOUT_S)
                    for task in stuck:
                        log.warning("driver task %s did not stop; cancelling", task.get_name())
                        task.cancel()
                    if stuck:
                        await asyncio.wait(stuck, timeout=DRIVER_STOP_TIMEOUT_S)
                for driver in self.drivers:
                    with contextlib.suppress(Exception):
                        await driver.close()
                await self.ingest.close()
                await ingest_task
                await self.engine.settled()  # the last batches' alerts are journaled
                await self._drain_forwarders()
                if self.planner is not None:
                    self.planner.wake()
                    await self.planner.close()
                background = [
                    status_task,
                    prune_task,
                    budget_task,
                    sop_task,
                    watchdog_task,
                    *planner_tasks,
                ]
                for task in [*forwarder_tasks, *background]:
                    task.cancel()
        finally:
            for f in self.forwarders:
                with contextlib.suppress(Exception):
                    await f.save_cursors()
                with contextlib.suppress(Exception):
                    await f.writer.close()
            self._write_status()
            self.runner.close()
            log.info("gateway stopped; journal closed")

    def hand_over_ports(self) -> None:
        """Before a reload: drivers that can keep their port open for the next gateway do.

        A serial port closed and reopened loses what the board sends in between (and
        toggles DTR, which resets some boards); the next gateway takes it over instead.
        """
        for driver in self.drivers:
            driver.keep_open_for_reload()

    async def _drain_forwarders(self) -> None:
        # Everything is committed now; each forwarder reports caught_up once a fetch
        # finds nothing after its cursor.
        for f in self.forwarders:
            f.caught_up.clear()
            f.wake()
        try:
            async with asyncio.timeout(self.shutdown_flush_s):
                for f in self.forwarders:
                    await f.caught_up.wait()
        except TimeoutError:
            log.warning("sinks not drained at shutdown; the backlog stays in the journal")

    async def _custody_command(self, body: dict[str, object]) -> None:
        """``cmd/custody`` from a scanner or WMS: journal it, or refuse it with the reason."""
        try:
            await self.engine.apply_custody(json.dumps(body).encode(), "mqtt")
        except CustodyRejected as exc:
            self.counters.drop("custody", exc.reason)
            raise CommandRejected(str(exc)) from exc

    def hub_state(self) -> tuple[HubState, list[str]]:
        """What the planner sees: online, or degraded with the reasons (drivers, sinks down)."""
        counters = self.counters
        reasons = [
            f"driver {d.name} disconnected"
            for d in self.drivers
            if counters.connected.get(d.name) is False
        ]
        reasons += [
            f"sink {f.name} unavailable"
            for f in self.forwarders
            if counters.connected.get(f.name) is False
        ]
        return (HubState.DEGRADED if reasons else HubState.ONLINE), reasons

    async def sop_settled(self) -> None:
        """Wait until every committed batch's SOP transitions are journaled."""
        await self.engine.settled()

    async def _prune_loop(self) -> None:
        keep_ns = int(self.config.journal.retention_days * 86_400 * 1e9)
        sinks = [f.name for f in self.forwarders]
        while True:
            removed = await self.runner.call(
                self.journal.prune, self.clock.now_ns() - keep_ns, sinks
            )
            if removed:
                log.info("journal: pruned %d delivered readings past retention", removed)
            await self.clock.sleep(PRUNE_INTERVAL_S)

    async def _budget_loop(self) -> None:
        """Keep the journal within journal.max_size_mb (DESIGN: custody, alerts never go)."""
        cfg = self.config.journal
        if cfg.max_size_mb is None:
            return
        budget = cfg.max_size_mb
        max_bytes = int(budget * 1e6)
        sinks = [f.name for f in self.forwarders]
        hub = self.config.hub.id
        last_thinned_ns: int | None = None
        active = await self.runner.call(self.alerts.active)
        if any(a.rule == "journal_budget" and a.subject == hub for a in active):
            last_thinned_ns = self.clock.now_ns()  # raised before a restart: clear it in time
        while True:
            now = self.clock.now_ns()
            result = await self._budget_pass(max_bytes, sinks, now)
            used_mb = round(result.used_bytes / 1e6, 1)
            if result.removed_delivered or result.removed_diagnostics:
                log.warning(
                    "journal over its %.0f MB budget: deleted %d delivered readings (InfluxDB"
                    " has them) and %d self-metrics/dead-letter rows before their retention",
                    cfg.max_size_mb,
                    result.removed_delivered,
                    result.removed_diagnostics,
                )
            if result.downsampled or result.over:
                self.counters.drop("journal", "downsampled", result.downsampled)
                log.error(
                    "journal over its %.0f MB budget with undelivered data: downsampled %d"
                    " readings to one per sensor per %g s; %.1f MB in use",
                    cfg.max_size_mb,
                    result.downsampled,
                    cfg.downsample_s,
                    used_mb,
                )
                last_thinned_ns = now
                message = (
                    f"journal disk budget exhausted on {hub}: undelivered readings"
                    f" downsampled to one per sensor per {cfg.downsample_s:g} s"
                )
                details = {"downsampled": result.downsampled, "since_ns": now}
                self.engine.report(
                    [_budget_event("raised", hub, now, used_mb, budget, message, details)]
                )
            elif last_thinned_ns is not None and now - last_thinned_ns >= int(
                BUDGET_CLEAR_S * NS_PER_S
            ):
                last_thinned_ns = None
                message = f"journal of {hub} within its disk budget again"
                self.engine.report(
                    [_budget_event("cleared", hub, now, used_mb, budget, message, {})]
                )
            await self.clock.sleep(BUDGET_INTERVAL_S)

    async def _budget_pass(self, max_bytes: int, sinks: list[str], now: int) -> BudgetResult:
        """Run Journal.enforce_budget in bounded steps (other journal work goes between)."""
        cfg = self.config.journal
        protect = now - int(BUDGET_PROTECT_RECENT_S * NS_PER_S)
        # Readings of shipments still in custody are what a restart replays their
        # time-out-of-range budgets from: keep them, unless a shipment was left open
        # longer than the retention (then it would pin the whole journal).
        oldest_open = min((s.first_ns for s in self.engine.ledger.open_shipments()), default=None)
        if oldest_open is not None and now - oldest_open < cfg.retention_days * 86_400 * NS_PER_S:
            protect = min(protect, oldest_open)
        total = BudgetResult(0, 0, 0, 0, over=False)
        resume = 0
        while True:
            step = await self.runner.call(
                self.journal.enforce_budget,
                max_bytes,
                sinks,
                int(cfg.downsample_s * NS_PER_S),
                protect,
                now,
                resume_id=resume,
            )
            total = BudgetResult(
                step.used_bytes,
                total.removed_delivered + step.removed_delivered,
                total.removed_diagnostics + step.removed_diagnostics,
                total.downsampled + step.downsampled,
                over=step.over,
            )
            if not step.more:
                break
            resume = step.resume_id
        if total.removed_delivered or total.removed_diagnostics or total.downsampled:
            await self.runner.call(self.journal.checkpoint)
        return total

    async def _status_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.status_interval_s)
            await self.refresh_status()

    async def refresh_status(self) -> None:
        """Recompute what needs the journal, write status.json, journal a health snapshot."""
        now = self.clock.now_ns()
        backlogs = {}
        for f in self.forwarders:
            b = await self.runner.call(self.journal.backlog, f.name)
            backlogs[f.name] = b
        active = await self.runner.call(self.alerts.active)
        mono = self.clock.monotonic()
        committed = self.counters.committed
        rate = 0.0
        if self._last_rate is not None and mono > self._last_rate[0]:
            rate = (committed - self._last_rate[1]) / (mono - self._last_rate[0])
        self._last_rate = (mono, committed)
        self._extras = {
            "readings_per_s": round(rate, 1),
            "active_alerts": [
                {"id": a.id, "severity": str(a.severity), "subject": a.subject, "rule": a.rule}
                for a in active
            ],
            "oldest_unsent_age_s": {
                name: (round((now - b.oldest_ts_ns) / 1e9, 1) if b.oldest_ts_ns else 0.0)
                for name, b in backlogs.items()
            },
        }
        c = self.counters
        fields: dict[str, float | int] = {
            "received": sum(c.received.values()),
            "committed": committed,
            "dropped": sum(c.dropped.values()),
            "dead_lettered": c.dead_lettered,
            "reconnects": sum(c.reconnects.values()),
            "readings_per_s": round(rate, 1),
            "active_alerts": len(active),
            "uptime_s": round((now - self.started_ns) / 1e9, 1),
        }
        for name, b in backlogs.items():
            fields[f"backlog_{name}"] = b.records
            fields[f"oldest_unsent_age_s_{name}"] = self._extras["oldest_unsent_age_s"][name]
        for key, n in c.dropped.items():
            fields["dropped_" + key.replace(":", "_").replace("-", "_")] = n
        for driver in self.drivers:
            fields[f"connected_{driver.name.replace('-', '_')}"] = int(
                bool(c.connected.get(driver.name))
            )
        await self.runner.call(self.journal.append_health, now, fields)
        for f in self.forwarders:
            f.wake()
        await asyncio.to_thread(self._write_status)
        self.notifier.notify(
            f"STATUS=hub {self.config.hub.id}: {rate:.0f} readings/s, "
            f"{len(active)} active alert(s), backlog "
            + ", ".join(f"{n}={b.records}" for n, b in backlogs.items())
        )

    def status(self) -> dict[str, Any]:
        """A JSON-ready view of the gateway's state: counters, backlog per sink."""
        now = self.clock.now_ns()
        sinks: dict[str, Any] = {}
        for f in self.forwarders:
            last = self.ingest.last_id
            sinks[f.name] = {"cursor": f.cursor, "backlog": max(0, last - f.cursor)}
        return {
            "hub": self.config.hub.id,
            "pid": os.getpid(),
            "at": iso_utc(now),
            "uptime_s": round((now - self.started_ns) / 1e9, 1),
            "journal": str(self.config.journal.path),
            "last_id": self.ingest.last_id,
            "sinks": sinks,
            "drivers": [d.name for d in self.drivers],
            "counters": self.counters.snapshot(),
            **self._extras,
        }

    def _write_status(self) -> None:
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=2), encoding="utf-8")
            tmp.replace(self.status_path)
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.status_path, exc)


def _budget_event(
    kind: Literal["raised", "cleared"],
    hub: str,
    at_ns: int,
    used_mb: float,
    budget_mb: float,
    message: str,
    details: dict[str, Any],
) -> HealthEvent:
    """The gateway's own ``journal_budget`` alert transition (critical while raised)."""
    return HealthEvent(
        kind=kind,
        rule="journal_budget",
        subject=hub,
        at_ns=at_ns,
        value=used_mb,
        limit=budget_mb,
        message=message,
        severity="critical",
        details=details,
    )


async def backlog_of(runner: JournalRunner, sink: str) -> tuple[int, int | None]:
    """(records waiting, receive time of the oldest) for one sink."""
    b = await runner.call(runner.journal.backlog, sink, STREAM_READINGS)
    return b.records, b.oldest_ts_ns
