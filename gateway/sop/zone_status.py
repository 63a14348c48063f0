"""Each zone as the engine judges it now, for ``coldchain status`` (status.json ``zones``).

The temperature is the engine's own zone value (``ZoneMonitor.zone_temperature``: the
worst, or the configured aggregate, of the sensors fresh now), not a second computation, so
the status shows the value the alarms are raised on.
"""

from __future__ import annotations

from typing import Any

from gateway.config import GatewayConfig
from gateway.core.clock import iso_utc
from gateway.sop.engine import SopEngine

_NS_PER_S = 1_000_000_000


def zone_status(engine: SopEngine, config: GatewayConfig, now_ns: int) -> list[dict[str, Any]]:
    """Per zone: temperature, limits, state; per sensor: last seen, last value, stale."""
    profiles = config.all_profiles()
    monitored = engine.monitor.zones
    out: list[dict[str, Any]] = []
    for zone in config.zones:
        profile = profiles.get(zone.profile) if zone.profile else None
        temp = engine.monitor.zone_temperature(zone.id, now_ns)
        if zone.id in monitored:
            state: str = engine.monitor.detector(zone.id).snapshot().state
            if temp is None:
                state = f"{state}, no fresh reading"
        else:
            state = "no profile"
        sensors = []
        for sensor in config.sensors:
            if sensor.zone != zone.id:
                continue
            rx_ns, usable = engine.health.last_seen(sensor.id)
            sensors.append(
                {
                    "id": sensor.id,
                    "last_seen": iso_utc(rx_ns) if rx_ns is not None else None,
                    "age_s": round((now_ns - rx_ns) / _NS_PER_S, 1) if rx_ns is not None else None,
                    "temp_c": usable[1] if usable is not None else None,
                    "stale": engine.health.is_stale(sensor.id),
                }
            )
        out.append(
            {
                "id": zone.id,
                "name": zone.name,
                "profile": zone.profile,
                "min_c": profile.min_c if profile else None,
                "max_c": profile.max_c if profile else None,
                "aggregate": zone.aggregate,
                "temp_c": None if temp is None else round(temp, 2),
                "state": state,
                "sensors": sensors,
            }
        )
    return out
