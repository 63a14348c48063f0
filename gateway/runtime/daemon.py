"""The gateway daemon: drivers -> ingest -> journal -> forwarders, under one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from drivers.base import Driver
from drivers.registry import REGISTRY
from gateway.alerts.store import AlertStore
from gateway.commands.keyring import KeyRing
from gateway.commands.signed import CommandGuard
from gateway.config import GatewayConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.metrics import Counters
from gateway.custody.events import CustodyRejected
from gateway.evidence.service import EvidenceService, checkpoint_stream
from gateway.ingest.batcher import Ingest
from gateway.ingest.identity import RULES as IDENTITY_RULES
from gateway.ingest.identity import IdentityAlert, IdentityWatch
from gateway.ingest.normalize import Normalizer
from gateway.journal.budget import BudgetAlert, DiskBudget
from gateway.journal.health import JournalHealth
from gateway.journal.integrity import DAMAGED_RULE, open_checked
from gateway.journal.store import JournalRunner
from gateway.outbox.forwarder import InfluxForwarder
from gateway.outbox.streams import (
    STREAM_READINGS,
    Stream,
    alerts_stream,
    custody_stream,
    health_stream,
    readings_stream,
)
from gateway.runtime.journal_alert import JournalAlarm, guarded
from gateway.runtime.reconnect import supervise
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.runtime.sink_watch import DEFAULT_AFTER_S as DEFAULT_SINK_DOWN_S
from gateway.runtime.sink_watch import SinkWatch
from gateway.runtime.status import StatusReporter
from gateway.sinks.influx import InfluxWriter
from gateway.sinks.planner.commands import CommandRejected
from gateway.sinks.planner.feed import PlannerFeed
from gateway.sinks.planner.payloads import HubState
from gateway.sop.engine import SopEngine
from gateway.sop.sensor_health import HealthEvent
from gateway.sop.zone_status import zone_status

if TYPE_CHECKING:
    from gateway.notify.service import Notifier

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0


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
        notify_clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.counters = Counters()
        # quick_check first: a damaged journal is moved aside and a fresh one started.
        self.journal, self.journal_damage = open_checked(
            Path(config.journal.path), config.journal.synchronous
        )
        self.runner = JournalRunner(self.journal)
        self.journal_health = JournalHealth(str(config.journal.path))
        self.ingest = Ingest(
            self.runner,
            Normalizer(config),
            self.counters,
            self.clock,
            commit_interval_s=config.journal.commit_interval_ms / 1000,
            commit_max_rows=config.journal.commit_max_rows,
            health=self.journal_health,
        )
        self.drivers = build_drivers(config, self.clock)
        self.alerts = AlertStore(self.journal.connection, config.hub.id)
        self.engine = SopEngine(config, self.runner, self.alerts, self.counters, self.clock)
        self.ingest.on_observe(self.engine.observe)
        self.ingest.on_commit(self.engine.release)
        # People told about alerts ([notify]); None without contacts, and then neither the
        # notify package's channels nor Apprise is imported.
        self.notifications: Notifier | None = None
        if config.notify is not None and config.notify.contacts:
            from gateway.notify.service import build_notifier

            self.notifications = build_notifier(
                config, self.journal, self.runner, self.alerts, self.counters,
                notify_clock or self.clock,
            )  # fmt: skip
        # After every store made its tables: the sealer covers them all.
        self.evidence: EvidenceService | None = None
        if config.evidence.enabled:
            self.evidence = EvidenceService(config, self.journal, self.runner, self.clock)
        self.identity = IdentityWatch(
            self.clock, lambda alerts: self.engine.report([_identity_event(a) for a in alerts])
        )
        self.ingest.on_rejects(self.identity.observe)
        self.forwarders: list[InfluxForwarder] = []
        influx = config.sinks.influx
        if influx is not None:
            forwarder = InfluxForwarder(
                "influx",
                self.runner,
                InfluxWriter(influx),
                [
                    alerts_stream(self.alerts),
                    *self._notification_streams(),
                    custody_stream(self.engine.ledger),
                    *([checkpoint_stream()] if self.evidence is not None else []),
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
            commands = config.commands
            guard = CommandGuard(
                self.journal.connection,
                config.hub.id,
                KeyRing(commands.keys_path(config.journal.path)),
                require_signatures=commands.require_signatures,
                max_future_s=commands.max_future_s,
                max_age_s=commands.max_age_s,
            )
            self.planner = PlannerFeed(
                config.sinks.planner,
                config.hub.id,
                self.runner,
                self.alerts,
                self.counters,
                self.clock,
                self._hub_state,
                commands={"custody": self._custody_command},
                custody_exceptions=self.engine.ledger.rejected_after,
                guard=guard,
                on_takeover=self._session_takeover,
            )
            self.engine.on_alert_change(self.planner.wake)
            self.engine.on_custody_rejected(self.planner.wake)
        if self.notifications is not None:
            self.engine.on_alert_change(self.notifications.wake)
            if self.planner is not None:
                self.notifications.attach_planner(self.planner)
        if self.evidence is not None:
            self.evidence.on_checkpoint += [f.wake for f in self.forwarders]
            if self.planner is not None:
                self.planner.extra_drains.append(self.evidence.drain_planner)
                self.evidence.on_checkpoint.append(self.planner.wake)
        self.notifier = notifier or SystemdNotifier()
        self.status = StatusReporter(
            config,
            self.runner,
            self.alerts,
            self.ingest,
            self.drivers,
            self.forwarders,
            self.counters,
            self.clock,
            self.notifier,
        )
        self.status.journal_health = self.journal_health
        self.journal_alarm = JournalAlarm(
            config.hub.id,
            self.journal_health,
            self.notifier,
            self.engine.report,
            self.planner,
            [f.writer for f in self.forwarders],
        )
        if self.notifications is not None:
            self.status.sections["notifications"] = self.notifications.store.counts
        if self.evidence is not None:
            self.status.sections["evidence"] = self.evidence.status
        self.status.live_sections["zones"] = lambda: zone_status(
            self.engine, config, self.clock.now_ns()
        )
        # The gateway's own sink_down alert (an output unreachable for long).
        self.sink_watch = SinkWatch(
            [f.name for f in self.forwarders] + (["planner"] if self.planner else []),
            self.counters,
            self.clock,
            self.engine.report,
            after_s=config.notify.sink_down_after_s if config.notify else DEFAULT_SINK_DOWN_S,
        )
        self.budget = DiskBudget(
            config.journal,
            self.runner,
            [f.name for f in self.forwarders],
            self.counters,
            self.clock,
            hub=config.hub.id,
            oldest_open_ns=self._oldest_open_ns,
            on_alert=lambda alert: self.engine.report([_budget_event(alert, config.hub.id)]),
        )
        self.ready = asyncio.Event()
        self.shutdown_flush_s = 5.0
        self.security_warnings: list[str] = self.status.security_warnings

    def _notification_streams(self) -> list[Stream]:
        """The notification attempt log for InfluxDB (measurement ``notification``)."""
        if self.notifications is None:
            return []
        from gateway.notify.service import notification_stream

        return [notification_stream(self.notifications.store)]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until stop is set, then flush: drivers stop, the queue commits, sinks drain."""
        self.ingest.last_id = await self.runner.call(self.journal.last_id)
        await self.engine.restore()
        if self.journal_damage is not None:
            damage = self.journal_damage
            hub = self.config.hub.id
            self.engine.report(
                [
                    HealthEvent(
                        "raised", DAMAGED_RULE, hub, self.clock.now_ns(), None, None,
                        f"journal was damaged ({'; '.join(damage.problems)[:200]}); moved to"
                        f" {damage.moved_to}, recording into a fresh journal; run coldchain"
                        f" journal salvage {damage.moved_to} --into {self.config.journal.path}",
                        "critical", {"moved_to": str(damage.moved_to)},
                    )
                ]
            )  # fmt: skip
        if self.evidence is not None:
            await self.evidence.start()
        active = await self.runner.call(self.alerts.active)
        self.sink_watch.restore((a.rule, a.subject) for a in active)
        self.identity.restore((a.rule, a.subject) for a in active if a.rule in IDENTITY_RULES)
        for warning in self.security_warnings:
            # ERROR, not WARNING: a hub running at level ERROR must still see these.
            log.error("security: %s", warning)
        try:
            async with asyncio.TaskGroup() as tg:
                ingest_task = tg.create_task(self.ingest.run(), name="ingest")
                forwarder_tasks = [
                    tg.create_task(self._guarded(f.name, f.run), name=f"forward:{f.name}")
                    for f in self.forwarders
                ]
                drivers_stop = asyncio.Event()
                driver_tasks = [
                    tg.create_task(
                        supervise(d, self.ingest, self.counters, self.clock, stop=drivers_stop),
                        name=f"driver:{d.name}",
                    )
                    for d in self.drivers
                ]
                status_task = tg.create_task(
                    self._guarded("status", self.status.run), name="status"
                )
                planner_tasks = (
                    [tg.create_task(self._guarded("planner", self.planner.run), name="planner")]
                    if self.planner
                    else []
                )
                notify_tasks = (
                    [tg.create_task(self._guarded("notify", self.notifications.run), name="notify")]
                    if self.notifications is not None
                    else []
                )
                prune_task = tg.create_task(self._guarded("prune", self._prune_loop), name="prune")
                sink_watch_task = tg.create_task(
                    self._guarded("sink-watch", self.sink_watch.run), name="sink-watch"
                )
                budget_active = await self._budget_alert_active()
                budget_task = tg.create_task(
                    self._guarded("journal-budget", lambda: self.budget.run(budget_active)),
                    name="journal-budget",
                )
                # One failing transition or handler must not end the engine (nor the daemon).
                sop_task = tg.create_task(
                    self._guarded("sop", self.engine.run, any_error=True), name="sop"
                )
                probe_task = tg.create_task(
                    self.journal_alarm.probe(self.runner, self.clock), name="journal-probe"
                )
                identity_task = tg.create_task(self.identity.run(), name="identity-watch")
                evidence_tasks = (
                    [tg.create_task(self._guarded("evidence", self.evidence.run), name="evidence")]
                    if self.evidence is not None
                    else []
                )
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
                if self.notifications is not None:
                    await self.notifications.close()  # in-flight sends finish (bounded)
                for task in evidence_tasks:
                    task.cancel()
                if self.evidence is not None:
                    with contextlib.suppress(Exception):
                        await self.evidence.checkpoint("stop")
                await self._drain_forwarders()
                if self.planner is not None:
                    self.planner.wake()
                    await self.planner.close()
                background = [
                    status_task,
                    prune_task,
                    budget_task,
                    identity_task,
                    sop_task,
                    watchdog_task,
                    probe_task,
                    *planner_tasks,
                    *notify_tasks,
                    sink_watch_task,
                ]
                for task in [*forwarder_tasks, *background]:
                    task.cancel()
        finally:
            for f in self.forwarders:
                with contextlib.suppress(Exception):
                    await f.save_cursors()
                with contextlib.suppress(Exception):
                    await f.writer.close()
            self.status.write()
            self.runner.close()
            log.info("gateway stopped; journal closed")

    async def _guarded(
        self, name: str, loop: Callable[[], Awaitable[None]], *, any_error: bool = False
    ) -> None:
        await guarded(
            name, loop, self.journal_health, self.counters, self.clock, any_error=any_error
        )

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

    async def _custody_command(self, body: dict[str, object], signer: str | None) -> None:
        """``cmd/custody`` from a scanner or WMS: journal it, or refuse it with the reason."""
        try:
            await self.engine.apply_custody(json.dumps(body).encode(), "mqtt", signer)
        except CustodyRejected as exc:
            self.counters.drop("custody", exc.reason)
            raise CommandRejected(str(exc)) from exc

    def _session_takeover(
        self, kind: Literal["raised", "cleared"], client_id: str, what: str
    ) -> None:
        """The planner feed's session was taken over (or is ours again for an hour)."""
        now = self.clock.now_ns()
        message = (
            what
            if kind == "cleared"
            else (f"{what}; check the broker's ACL and use_username_as_clientid (docs/security.md)")
        )
        self.engine.report(
            [
                HealthEvent(
                    kind=kind,
                    rule="session_takeover",
                    subject=client_id,
                    at_ns=now,
                    value=None,
                    limit=None,
                    message=message,
                    severity="critical",
                    details={"since_ns": now} if kind == "raised" else {},
                )
            ]
        )

    def _hub_state(self) -> tuple[HubState, list[str]]:
        return self.status.hub_state()

    def _oldest_open_ns(self) -> int | None:
        return min((s.first_ns for s in self.engine.ledger.open_shipments()), default=None)

    async def _budget_alert_active(self) -> bool:
        hub = self.config.hub.id
        active = await self.runner.call(self.alerts.active)
        return any(a.rule == "journal_budget" and a.subject == hub for a in active)

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


def _budget_event(alert: BudgetAlert, hub: str) -> HealthEvent:
    """The journal budget's alert as the SOP engine's transition (critical while raised)."""
    return HealthEvent(
        kind=alert.kind,
        rule="journal_budget",
        subject=hub,
        at_ns=alert.at_ns,
        value=alert.used_mb,
        limit=alert.budget_mb,
        message=alert.message,
        severity="critical",
        details=alert.details,
    )


async def backlog_of(runner: JournalRunner, sink: str) -> tuple[int, int | None]:
    """(records waiting, receive time of the oldest) for one sink."""
    b = await runner.call(runner.journal.backlog, sink, STREAM_READINGS)
    return b.records, b.oldest_ts_ns


def _identity_event(alert: IdentityAlert) -> HealthEvent:
    """The gateway's own identity alert transition (critical while raised)."""
    return HealthEvent(
        kind=alert.kind,
        rule=alert.rule,  # type: ignore[arg-type]
        subject=alert.source,
        at_ns=alert.at_ns,
        value=float(alert.count),
        limit=0.0 if alert.kind == "raised" else None,
        message=alert.message,
        severity="critical",
        details=dict(alert.details),
    )
