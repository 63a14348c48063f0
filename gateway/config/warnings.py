"""check-config warnings: valid configs that are probably wrong (printed, exit 0).

- profile limits that look like Fahrenheit (the gateway's limits are °C);
- driver blocks' own warnings (MQTT: subscriptions whose filters overlap, so the later
  one never sees the shared topics);
- configured sensors that no driver can feed;
- sensors a driver fed that are not configured: the journal's ``unknown_sensor`` dead
  letters say so with evidence, when the journal exists.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from gateway.config import GatewayConfig

# A chilled, frozen or room-temperature limit in °C is below these; a limit above them is
# a °F number nearly always (2..8 °C is 35.6..46.4 °F, 15..25 °C is 59..77 °F).
_MAX_PLAUSIBLE_MAX_C = 30.0
_MAX_PLAUSIBLE_MIN_C = 20.0

_UNKNOWN_SENSOR = re.compile(r"sensor '(.+)' is not in \[\[sensors\]\]")


def config_warnings(config: GatewayConfig) -> list[tuple[str, str]]:
    """(path, message) for every warning, in a stable order."""
    return [
        *_fahrenheit_limits(config),
        *_driver_warnings(config),
        *_unfed(config),
        *_unknown(config),
    ]


def _f_to_c(value: float) -> str:
    return f"{(value - 32) * 5 / 9:.1f}"


def _fahrenheit_limits(config: GatewayConfig) -> Iterator[tuple[str, str]]:
    used = {z.profile for z in config.zones if z.profile is not None}
    for name, profile in sorted(config.all_profiles().items()):
        if name not in used and name not in config.profiles:
            continue
        high = profile.max_c is not None and profile.max_c > _MAX_PLAUSIBLE_MAX_C
        low = profile.min_c is not None and profile.min_c > _MAX_PLAUSIBLE_MIN_C
        if high or low:
            shown = ", ".join(
                f"{label} {v:g} (as °F: {_f_to_c(v)} °C)"
                for label, v in (("min_c", profile.min_c), ("max_c", profile.max_c))
                if v is not None
            )
            yield (
                f"profiles.{name}",
                f"limits look like Fahrenheit: {shown}; limits are °C",
            )


def _driver_warnings(config: GatewayConfig) -> Iterator[tuple[str, str]]:
    for kind, i, block in config.drivers.blocks():
        for path, message in block.warnings():
            yield f"drivers.{kind}[{i}].{path}", message


def _unfed(config: GatewayConfig) -> Iterator[tuple[str, str]]:
    blocks = [block for _, _, block in config.drivers.blocks()]
    if any(block.feeds_unnamed_sensors() for block in blocks):
        return  # an MQTT device id may be the sensor id itself
    named = {sensor for block in blocks for _, sensor in block.sensor_refs()}
    for i, sensor in enumerate(config.sensors):
        if sensor.id not in named:
            yield (
                f"sensors[{i}]",
                f"sensor {sensor.id!r} is named by no driver: nothing can feed it",
            )


def _unknown(config: GatewayConfig) -> Iterator[tuple[str, str]]:
    path = Path(config.journal.path)
    if not path.is_file():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT source, detail, COUNT(*), MAX(received_ns) FROM dead_letters"
                " WHERE reason = 'unknown_sensor' GROUP BY source, detail ORDER BY source, detail"
            ).fetchall()
    except sqlite3.Error:
        return
    for source, detail, count, _ in rows:
        match = _UNKNOWN_SENSOR.search(detail)
        sensor = match.group(1) if match else detail
        yield (
            "sensors",
            f"{source} fed sensor {sensor!r} {count} time(s) (journal dead letters), but it is"
            " not in [[sensors]]: add it, or map its device id with sensor_ids",
        )
