"""The demo's live terminal view: zones, temperatures, alerts and pipeline counters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from gateway.alerts.store import Alert
from gateway.apps.demo.scenario import HUB, ZONES
from gateway.core.clock import iso_utc
from gateway.core.model import Quality, Reading

log = logging.getLogger(__name__)


@dataclass
class ZoneView:
    """What the live view shows about one sensor."""

    zone: str
    last: float | None = None
    low: float | None = None
    high: float | None = None
    count: int = 0
    flagged: int = 0


@dataclass
class DemoView:
    """Latest values per sensor, fed by the ingest's commit listener."""

    sensors: dict[str, ZoneView] = field(default_factory=dict)

    def on_commit(self, readings: Any) -> None:
        """Ingest listener: fold a committed batch into the view."""
        r: Reading
        for r in readings:
            v = self.sensors.setdefault(r.sensor, ZoneView(zone=r.zone))
            v.count += 1
            if not Quality(r.quality).usable:
                v.flagged += 1
                continue
            v.last = r.temp_c
            v.low = r.temp_c if v.low is None else min(v.low, r.temp_c)
            v.high = r.temp_c if v.high is None else max(v.high, r.temp_c)

    def table(self) -> Table:
        """Zones and sensors with their last, min and max temperature."""
        t = Table(title=f"hub {HUB}: zones")
        for col in ("zone", "sensor", "last °C", "min", "max", "readings", "flagged"):
            t.add_column(col, justify="right" if col not in ("zone", "sensor") else "left")
        for sensor, v in sorted(self.sensors.items(), key=lambda kv: (kv[1].zone, kv[0])):
            _, lo, hi = ZONES.get(v.zone, ("", -99.0, 99.0))
            last = "-" if v.last is None else f"{v.last:6.2f}"
            if v.last is not None and not lo <= v.last <= hi:
                last = f"[bold red]{last}[/]"
            t.add_row(
                v.zone,
                sensor,
                last,
                "-" if v.low is None else f"{v.low:.2f}",
                "-" if v.high is None else f"{v.high:.2f}",
                f"{v.count:,}",
                f"{v.flagged:,}",
            )
        return t


def alerts_table(active: Sequence[Alert]) -> Table:
    """Active alerts, most severe first."""
    t = Table(title="active alerts")
    for col in ("id", "severity", "state", "subject", "since", "message"):
        t.add_column(col)
    for a in sorted(active, key=lambda a: -a.severity.rank):
        colour = "red" if a.severity == "critical" else "yellow"
        t.add_row(
            a.id,
            f"[{colour}]{a.severity}[/]",
            str(a.state),
            a.subject,
            iso_utc(a.started_ns)[11:19],
            a.message,
        )
    if not active:
        t.add_row("-", "-", "-", "-", "-", "none")
    return t
