"""The gateway's ``journal_unwritable`` alert, sent where no disk is needed; loop guards.

gateway/journal/health.py keeps the state; this module turns it into the critical
alert and sends it through the channels that work without the journal: the log (the
health module logs it), sd_notify ``STATUS``, the planner feed (retained, from memory)
and InfluxDB (an ``alert`` point written directly). When the journal is writable again
the raise and the clear are journaled through the SOP engine like any gateway alert,
so the record is complete afterwards.

:func:`guarded` keeps the daemon's background loops (status, prune, budget, sinks, SOP)
alive through journal errors: a loop that hits one reports it and starts again after a
backoff, instead of ending the TaskGroup and with it the daemon (which under systemd
was a crash loop for as long as the disk stayed full).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from gateway.alerts.store import Alert, AlertState, Severity, alert_id
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import JournalError, JournalUnwritable, SinkError
from gateway.core.metrics import Counters
from gateway.journal.health import RULE, JournalHealth, Unwritable
from gateway.journal.store import JournalRunner
from gateway.outbox.forwarder import LineWriter
from gateway.outbox.streams import alert_line
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.sinks.planner.feed import PlannerFeed
from gateway.sop.sensor_health import HealthEvent

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 5.0


class JournalAlarm:
    """Sends the journal_unwritable alert on every channel that does not need the disk."""

    def __init__(
        self,
        hub: str,
        health: JournalHealth,
        notifier: SystemdNotifier,
        report: Callable[[Sequence[HealthEvent]], None],
        planner: PlannerFeed | None = None,
        writers: Sequence[LineWriter] = (),
    ) -> None:
        self.hub = hub
        self.health = health
        self._notifier = notifier
        self._report = report
        self._planner = planner
        self._writers = list(writers)
        self._tasks: set[asyncio.Task[None]] = set()
        health.on_change(self._changed)

    def alert(self, state: Unwritable) -> Alert:
        """The alert of one unwritable spell (same id as the one journaled afterwards)."""
        cleared = state.cleared_ns is not None
        message = (
            f"journal {self.health.path} cannot be written ({state.component}: {state.error});"
            " the hub stopped acknowledging and reading, nothing acknowledged is lost"
        )
        return Alert(
            id=alert_id(self.hub, RULE, self.hub, state.since_ns),
            hub=self.hub,
            rule=RULE,
            subject=self.hub,
            severity=Severity.CRITICAL,
            state=AlertState.CLEARED if cleared else AlertState.RAISED,
            started_ns=state.since_ns,
            raised_ns=state.since_ns,
            message=message[:500],
            cleared_ns=state.cleared_ns,
            details={"component": state.component, "error": state.error},
        )

    def _changed(self, state: Unwritable) -> None:
        alert = self.alert(state)
        at_ns = state.cleared_ns if state.cleared_ns is not None else state.since_ns
        if state.cleared_ns is None:
            self._notifier.notify(f"STATUS=CRITICAL journal unwritable: {state.error}"[:200])
        else:
            self._notifier.notify(f"STATUS=hub {self.hub}: journal writable again")
            # The durable record, now that there is a disk to keep it on.
            self._report(
                [
                    HealthEvent(
                        "raised", RULE, self.hub, state.since_ns, None, None,
                        alert.message, "critical", alert.details,
                    ),
                    HealthEvent(
                        "cleared", RULE, self.hub, state.cleared_ns, None, None,
                        f"journal of {self.hub} writable again", "critical", {},
                    ),
                ]
            )  # fmt: skip
        if self._planner is not None:
            self._planner.publish_volatile(alert)
        line = alert_line(alert, at_ns).encode()
        for writer in self._writers:
            task = asyncio.get_running_loop().create_task(self._write(writer, line))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _write(writer: LineWriter, line: bytes) -> None:
        try:
            await writer.write(line, 1)
        except SinkError as exc:
            log.error("journal_unwritable alert not written to InfluxDB: %s", exc)

    async def probe(self, runner: JournalRunner, clock: Clock) -> None:
        """While unwritable, try a one-row write every few seconds; clear on success."""
        while True:
            await clock.sleep(PROBE_INTERVAL_S)
            if self.health.writable:
                continue
            try:
                await runner.call(runner.journal.probe, clock.now_ns())
            except JournalError:
                continue
            self.health.recovered(clock.now_ns())


async def guarded(
    name: str,
    loop: Callable[[], Awaitable[None]],
    health: JournalHealth,
    counters: Counters,
    clock: Clock,
    *,
    any_error: bool = False,
) -> None:
    """Run a background loop; a journal error (any error with ``any_error``) restarts it.

    Storage errors are reported to the journal health (which raises journal_unwritable);
    every error is logged with the loop's name, counted (``<name>:loop_error``) and the
    loop starts again after a backoff. ``any_error`` is for the SOP engine: one failing
    transition or handler must never end the engine, and with it the daemon.
    """
    backoff = Backoff(initial=1.0, maximum=30.0)
    while True:
        try:
            await loop()
            return
        except (JournalError, sqlite3.Error) as exc:
            if isinstance(exc, JournalUnwritable | sqlite3.OperationalError):
                health.failed(name, exc, clock.now_ns())
            reason = f"{type(exc).__name__}: {exc}"
            log.error("%s: journal error, restarting the loop: %s", name, reason)
        except Exception as exc:
            if not any_error:
                raise
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed, restarting it", name)
        counters.drop(name, "loop_error")
        counters.error(name, reason[:300])
        await clock.sleep(backoff.next())
