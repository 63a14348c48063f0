"""A notifier on a real journal with a ManualClock, and helpers to drive it.

The tests raise alerts through the real AlertStore (as the SOP engine does), advance the
clock and wait for the notifier to have finished a round on the new time: a condition,
never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.alerts.store import Alert, AlertStore, Severity
from gateway.config import GatewayConfig, parse_config
from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.journal.store import Journal, JournalRunner
from gateway.notify.service import Notifier, build_notifier
from tests.integration.harness import wait_for


def notify_config(tmp_path: Path, notify: dict[str, Any], **extra: Any) -> GatewayConfig:
    """A hub with one cold room and its sensor, plus the given [notify] table."""
    doc: dict[str, Any] = {
        "hub": {"id": "hub-test", "timezone": extra.pop("timezone", "UTC")},
        "journal": {"path": str(tmp_path / "journal.db")},
        "zones": [
            {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
            {"id": "dock-1", "kind": "dock"},
        ],
        "sensors": [{"id": "cr1-a", "zone": "cold-room-1"}],
        "notify": notify,
        **extra,
    }
    return parse_config(doc)


class Rig:
    """Journal + alert store + notifier task, all on one ManualClock."""

    def __init__(self, config: GatewayConfig, clock: ManualClock) -> None:
        self.config = config
        self.clock = clock
        self.journal = Journal(config.journal.path)
        self.runner = JournalRunner(self.journal)
        self.alerts = AlertStore(self.journal.connection, config.hub.id)
        self.counters = Counters()
        notifier = build_notifier(
            config, self.journal, self.runner, self.alerts, self.counters, clock
        )
        assert notifier is not None
        self.notifier: Notifier = notifier
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the notifier and wait until its first round is done."""
        self.task = asyncio.create_task(self.notifier.run())
        await wait_for(lambda: self.notifier.rounds >= 1, 90, "first notifier round")

    async def settle(self) -> None:
        """Wake the notifier and wait until a whole round ran after that and it is idle."""
        before = self.notifier.rounds
        self.notifier.wake()
        await wait_for(
            lambda: self.notifier.rounds > before and self.notifier.idle, 90, "a notifier round"
        )

    async def advance(self, seconds: float) -> None:
        """Move the clock and let the notifier act on the new time."""
        self.clock.advance(seconds)
        await self.settle()

    async def raise_alert(
        self,
        rule: str = "excursion",
        subject: str = "cold-room-1",
        severity: Severity = Severity.CRITICAL,
        message: str = "zone cold-room-1 high excursion: 9.40 °C against chilled limit 8 °C",
    ) -> Alert:
        """Raise an alert the way the SOP engine does; the notifier takes it in (a round)."""
        now = self.clock.now_ns()
        alert, new = await self.runner.call(
            self.alerts.raise_alert, rule, subject, severity, now, now, 9.4, 8.0, message, {}
        )
        assert new
        await self.settle()
        return alert

    async def ack(self, alert_id: str, by: str, note: str) -> None:
        """Acknowledge (what the CLI and cmd/ack do)."""
        await self.runner.call(self.alerts.acknowledge, alert_id, by, self.clock.now_ns(), note)
        await self.settle()

    async def clear(self, alert: Alert) -> None:
        """Clear the alert's condition."""
        await self.runner.call(
            self.alerts.clear, alert.rule, alert.subject, self.clock.now_ns(), 4.0
        )
        await self.settle()

    async def stop(self, *, graceful: bool = True) -> None:
        """Stop the task; graceful lets in-flight sends finish (SIGTERM)."""
        if self.task is not None:
            if graceful:
                await self.notifier.close()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.runner.close()


@contextlib.asynccontextmanager
async def running(config: GatewayConfig, clock: ManualClock) -> AsyncIterator[Rig]:
    """A started rig, stopped at the end."""
    rig = Rig(config, clock)
    await rig.start()
    try:
        yield rig
    finally:
        await rig.stop()
