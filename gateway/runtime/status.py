"""What the running gateway says about itself: status.json, gateway_health snapshots,
sd_notify STATUS, and the hub state the planner sees.

Every ``status_interval_s`` the reporter reads what needs the journal (backlog per sink,
active alerts), journals a ``gateway_health`` snapshot (forwarded to InfluxDB like any
stream; per-driver counters from each driver's ``stats()`` included) and rewrites
``status.json`` beside the journal for ``coldchain status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from drivers.base import Driver
from gateway.alerts.store import AlertStore
from gateway.config import GatewayConfig
from gateway.config.audit import security_warnings
from gateway.core.clock import Clock, iso_utc
from gateway.core.files import SHARED, write_atomic
from gateway.core.metrics import Counters
from gateway.ingest.batcher import Ingest
from gateway.journal.health import JournalHealth
from gateway.journal.store import JournalRunner
from gateway.outbox.forwarder import InfluxForwarder
from gateway.runtime.sdnotify import SystemdNotifier
from gateway.runtime.wear import WearMeter, written_bytes
from gateway.sinks.planner.payloads import HubState

log = logging.getLogger(__name__)

_FIELD_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def field_name(*parts: str) -> str:
    """A gateway_health field name from parts: anything but [A-Za-z0-9_] becomes ``_``."""
    return "_".join(_FIELD_UNSAFE.sub("_", p) for p in parts)


class StatusReporter:
    """Builds and publishes the gateway's view of itself (see the module docstring)."""

    def __init__(
        self,
        config: GatewayConfig,
        runner: JournalRunner,
        alerts: AlertStore,
        ingest: Ingest,
        drivers: Sequence[Driver],
        forwarders: Sequence[InfluxForwarder],
        counters: Counters,
        clock: Clock,
        notifier: SystemdNotifier,
    ) -> None:
        self.config = config
        self.runner = runner
        self.alerts = alerts
        self.ingest = ingest
        self.drivers = drivers
        self.forwarders = forwarders
        self.counters = counters
        self.clock = clock
        self.notifier = notifier
        self.started_ns = clock.now_ns()
        self.path = Path(config.journal.path).with_name("status.json")
        self._extras: dict[str, Any] = {}
        self._last_rate: tuple[float, int] | None = None
        self._wear = WearMeter(config.journal.card_endurance_tb)
        self.journal_health: JournalHealth | None = None  # set by the daemon
        # More status.json sections, each computed on the journal thread at every refresh
        # (the notifier's outbox counts). Nothing secret may go in one.
        self.sections: dict[str, Callable[[], Any]] = {}
        # Sections computed on the event loop, where their state lives (the zones as the
        # SOP engine judges them).
        self.live_sections: dict[str, Callable[[], Any]] = {}
        # What would let someone fake or read the record (gateway.config.audit).
        self.security_warnings: list[str] = security_warnings(config)

    async def run(self) -> None:
        """Refresh every ``status_interval_s``."""
        while True:
            await self.clock.sleep(self.config.status_interval_s)
            await self.refresh()

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
        health = self.journal_health
        if health is not None and health.state is not None:
            reasons.append(f"journal unwritable: {health.state.error}"[:200])
        return (HubState.DEGRADED if reasons else HubState.ONLINE), reasons

    async def refresh(self) -> None:
        """Recompute what needs the journal, write status.json, journal a health snapshot."""
        now = self.clock.now_ns()
        journal = self.runner.journal
        backlogs = {}
        for f in self.forwarders:
            backlogs[f.name] = await self.runner.call(journal.backlog, f.name)
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
            "driver_stats": {d.name: dict(d.stats()) for d in self.drivers},
        }
        for name, section in self.sections.items():
            self._extras[name] = await self.runner.call(section)
        for name, section in self.live_sections.items():
            self._extras[name] = section()
        state, reasons = self.hub_state()
        self._extras["state"] = str(state.value)
        self._extras["degraded_reasons"] = reasons
        written = written_bytes()
        wear = None if written is None else self._wear.sample(mono, written, committed)
        if wear is not None:
            self._extras["disk_writes"] = wear.as_json()
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
        if wear is not None:
            fields["written_bytes_per_s"] = round(wear.bytes_per_s, 1)
        for name, b in backlogs.items():
            fields[f"backlog_{name}"] = b.records
            fields[f"oldest_unsent_age_s_{name}"] = self._extras["oldest_unsent_age_s"][name]
        for key, n in c.dropped.items():
            fields[field_name("dropped", key)] = n
        for driver in self.drivers:
            fields[field_name("connected", driver.name)] = int(bool(c.connected.get(driver.name)))
            for stat, n in driver.stats().items():
                fields[field_name("driver", driver.name, stat)] = n
        await self.runner.call(journal.append_health, now, fields)
        for f in self.forwarders:
            f.wake()
        await asyncio.to_thread(self.write)
        self.notifier.notify(
            f"STATUS=hub {self.config.hub.id}: {rate:.0f} readings/s, "
            f"{len(active)} active alert(s), backlog "
            + ", ".join(f"{n}={b.records}" for n, b in backlogs.items())
        )

    def snapshot(self) -> dict[str, Any]:
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
            "security_warnings": self.security_warnings,
            **self._extras,
        }

    def write(self) -> None:
        """Rewrite status.json atomically: temp file + rename, 0640, never through a symlink."""
        try:
            write_atomic(self.path, json.dumps(self.snapshot(), indent=2).encode(), SHARED)
        except OSError as exc:
            log.warning("cannot write status file %s: %s", self.path, exc)
