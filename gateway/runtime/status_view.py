"""Terminal tables for the gateway's status (``coldchain status`` and the demo)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from gateway.core.text import printable


def _cell(value: object, limit: int = 200) -> str:
    """A value from the status file as one table line: no escapes, no rich markup."""
    return escape(printable(value, limit))


def counters_table(status: dict[str, Any]) -> Table:
    """Counters: received per driver, drops by reason, writes and backlog per sink."""
    c = status["counters"]
    table = Table(title="pipeline", expand=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for driver, n in sorted(c["received"].items()):
        state = "up" if c["connected"].get(driver) else "down"
        table.add_row(f"received  {_cell(driver)} ({state})", f"{n:,}")
    table.add_row("committed to journal", f"{c['committed']:,}")
    for reason, n in sorted(c["dropped"].items()):
        table.add_row(f"[yellow]dropped   {_cell(reason)}[/]", f"{n:,}")
    table.add_row("dead-lettered (kept)", f"{c['dead_lettered']:,}")
    for flag, n in sorted(c["flagged"].items()):
        table.add_row(f"flagged   {_cell(flag)}", f"{n:,}")
    if "readings_per_s" in status:
        table.add_row("readings/s", f"{status['readings_per_s']:,.1f}")
    ages = status.get("oldest_unsent_age_s", {})
    for sink, info in sorted(status.get("sinks", {}).items()):
        table.add_row(f"written   {sink}", f"{c['written'].get(sink, 0):,}")
        table.add_row(f"backlog   {sink}", f"{info['backlog']:,}")
        if sink in ages:
            table.add_row(f"oldest unsent {sink} (s)", f"{ages[sink]:,.1f}")
        if c["quarantined"].get(sink):
            table.add_row(f"[red]quarantined {sink}[/]", f"{c['quarantined'][sink]:,}")
    wear = status.get("disk_writes")
    if wear:
        per = wear.get("bytes_per_reading")
        table.add_row(
            "disk writes (last hour)",
            f"{wear['bytes_per_s'] / 1024:,.1f} KiB/s"
            + (f", {per:,.0f} B/reading" if per is not None else ""),
        )
        table.add_row(
            f"  per day; a {wear['card_endurance_tb']:g} TBW card lasts",
            f"{wear['gb_per_day']:,.2f} GB; "
            + (f"{years:,.1f} years" if (years := wear["card_years"]) is not None else "-"),
        )
    for component, n in sorted(c["reconnects"].items()):
        table.add_row(f"reconnects {component}", f"{n:,}")
    return table


def _limits(zone: dict[str, Any]) -> str:
    low, high = zone.get("min_c"), zone.get("max_c")
    if low is None and high is None:
        return "-"
    return f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'} °C"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def zones_table(status: dict[str, Any]) -> Table | None:
    """Per zone: the engine's temperature (worst sensor), limits, state; per sensor: last seen."""
    zones = status.get("zones")
    if not zones:
        return None
    table = Table(title="zones (temperature: the value the alarms use)")
    for col in ("zone", "°C now", "limits", "state", "sensor", "last seen", "°C"):
        # Ids whole (pasteable); the state may wrap.
        table.add_column(
            col,
            justify="right" if "°C" in col else "left",
            no_wrap=col in ("zone", "sensor", "limits"),
            overflow="fold",
        )
    for zone in zones:
        temp = zone.get("temp_c")
        state = str(zone.get("state", ""))
        style = "green" if state == "inside" else ("red" if "alarmed" in state else "yellow")
        first = [
            zone["id"],
            "-" if temp is None else f"{temp:.1f}",
            _limits(zone),
            f"[{style}]{state}[/]",
        ]
        sensors = zone.get("sensors") or [{}]
        for i, s in enumerate(sensors):
            age = s.get("age_s")
            seen = "never" if age is None else f"{_age(age)} ago"
            if s.get("stale"):
                seen = f"[red]{seen} (stale)[/]"
            value = s.get("temp_c")
            table.add_row(
                *(first if i == 0 else ["", "", "", ""]),
                s.get("id", "-"),
                seen,
                "-" if value is None else f"{value:.1f}",
            )
    return table


def alerts_summary(status: dict[str, Any]) -> Table | None:
    """Active alerts listed in a status document, if any."""
    active = status.get("active_alerts")
    if not active:
        return None
    table = Table(title=f"active alerts ({len(active)})")
    for col in ("id", "severity", "rule", "subject"):
        # Full ids, never cut with an ellipsis: they are pasted into `coldchain alerts ack`.
        table.add_column(col, overflow="fold", no_wrap=col == "id")
    for a in active:
        table.add_row(*(_cell(a[k]) for k in ("id", "severity", "rule", "subject")))
    return table


def errors_table(status: dict[str, Any]) -> Table | None:
    """The last error of each component, if any."""
    errors = status["counters"]["last_error"]
    if not errors:
        return None
    table = Table(title="last error per component")
    table.add_column("component")
    table.add_column("error", overflow="fold")
    for component, message in sorted(errors.items()):
        table.add_row(_cell(component), _cell(message, 500))
    return table


def drivers_table(status: dict[str, Any]) -> Table | None:
    """Each driver's own counters (its ``stats()``): non-zero ones, and any unit down.

    A Modbus slave or a 1-Wire probe that stopped answering shows as ``online`` /
    ``present`` 0 in red, with its timeouts or misses beside it.
    """
    stats: dict[str, dict[str, int]] = status.get("driver_stats") or {}
    rows = [
        (driver, stat, n)
        for driver, counters in sorted(stats.items())
        for stat, n in counters.items()
        if n or stat.endswith((".online", ".present"))
    ]
    if not rows:
        return None
    table = Table(title="driver counters (see each driver's README: troubleshooting)")
    for col in ("driver", "counter", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for driver, stat, n in rows:
        down = stat.endswith((".online", ".present")) and n == 0
        table.add_row(driver, f"[red]{stat}[/]" if down else stat, f"{n:,}")
    return table


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    """Print a daemon status document as tables."""
    console = console or Console()
    state = status.get("state")
    reasons = status.get("degraded_reasons") or []
    console.print(
        f"hub [bold]{_cell(status['hub'])}[/] "
        + (f"[{'green' if state == 'online' else 'red'}]{_cell(state)}[/] " if state else "")
        + f"pid {status['pid']} up {status['uptime_s']} s "
        f"(status at {_cell(status['at'])}), journal {_cell(status['journal'])}"
    )
    for reason in reasons:
        console.print(f"  [red]degraded: {_cell(reason)}[/]", highlight=False)
    for warning in status.get("security_warnings", []):
        console.print(f"[red]security:[/] {_cell(warning, 400)}")
    parts: list[Table] = []
    zones = zones_table(status)
    if zones is not None:
        parts.append(zones)
    parts.append(counters_table(status))
    for extra in (alerts_summary(status), drivers_table(status), errors_table(status)):
        if extra is not None:
            parts.append(extra)
    console.print(Group(*parts))
