"""The demo hub: zones, boards, nodes, profiles and shipments, as a gateway config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config

log = logging.getLogger(__name__)

HUB = "hub-demo-01"
DEMO_DB = "coldchain"
# Zone -> (kind, limits shown in the view). The SOP engine owns real profiles.
ZONES: dict[str, tuple[str, float, float]] = {
    "cold-room-1": ("cold_storage", 2.0, 8.0),
    "cold-room-2": ("cold_storage", 2.0, 8.0),
    "freezer-1": ("cold_storage", -30.0, -18.0),
    "freezer-2": ("cold_storage", -30.0, -18.0),
    "dock-1": ("dock", -50.0, 50.0),
}
BOARD_A = {"1": ("cr1-a", "cold-room-1"), "2": ("cr1-b", "cold-room-1"),
           "3": ("cr2-a", "cold-room-2"), "4": ("cr2-b", "cold-room-2")}  # fmt: skip
BOARD_B = {"1": ("frz-a", "freezer-1"), "2": ("frz-b", "freezer-1")}
PROFILES = {"cold-room-1": "chilled_demo", "cold-room-2": "chilled_demo", "freezer-1": "frozen"}
DOCK_NODES = {"dock-node-1": "dock-1", "dock-node-2": "dock-1"}
# Zigbee probes on the dock, through a Zigbee2MQTT bridge (battery in %, voltage in mV):
# the mixed hub of docs/mqtt-formats/.
DOCK_ZIGBEE = {"dock-zb-1": "dock-1", "dock-zb-2": "dock-1"}
# A second freezer on RS-485 Modbus transmitters (when socat is installed): slave -> sensor
MODBUS_ZONE = "freezer-2"
MODBUS_SLAVES = {1: ("fz2-a", "sht20_r0"), 2: ("fz2-b", "sht30_din_float")}


SHIPMENTS = ("SH-DEMO-1", "SH-DEMO-2")


def demo_config(
    out: Path,
    board_a: str,
    board_b: str,
    influx_url: str | None,
    mqtt: tuple[str, int] | None,
    modbus_port: str | None = None,
) -> GatewayConfig:
    """The embedded demo config, with sinks and MQTT nodes only when services exist."""
    sensors = [
        {"id": sensor, "zone": zone, "model": "ds18b20", "interval_s": 1.0}
        for sensor, zone in [*BOARD_A.values(), *BOARD_B.values()]
    ]
    doc: dict[str, Any] = {
        "hub": {"id": HUB, "name": "Demo micro-hub", "timezone": "Europe/Lisbon"},
        "journal": {"path": str(out / "journal.db"), "synchronous": "normal"},
        # A demo-speed chilled profile: the real one waits 15 min before alarming.
        "profiles": {
            "chilled_demo": {
                "min_c": 2.0,
                "max_c": 8.0,
                "alarm_delay_s": 5,
                "budget_s": 600,
                "hysteresis_c": 0.5,
            }
        },
        "zones": [
            {"id": z, "kind": kind, **({"profile": PROFILES[z]} if z in PROFILES else {})}
            for z, (kind, _, _) in ZONES.items()
            if z != MODBUS_ZONE  # added below with its bus
        ],
        "sensors": sensors,
        "drivers": {
            "serial": [
                {
                    "name": "board-a",
                    "port": board_a,
                    "board": "A1",
                    "probes": {ch: s for ch, (s, _) in BOARD_A.items()},
                },
                {
                    "name": "board-b",
                    "port": board_b,
                    "board": "B1",
                    "probes": {ch: s for ch, (s, _) in BOARD_B.items()},
                },
            ],
        },
        "status_interval_s": 2.0,
    }
    if mqtt is not None:
        sensors.extend(
            {"id": node, "zone": zone, "model": "sht3x", "interval_s": 1.0}
            for node, zone in {**DOCK_NODES, **DOCK_ZIGBEE}.items()
        )
        doc["drivers"]["mqtt"] = [
            {
                "name": "dock-nodes",
                "host": mqtt[0],
                "port": mqtt[1],
                "client_id": f"coldchain-{HUB}-dock-nodes",
                "sensors": list(DOCK_NODES),
                "subscriptions": [
                    {
                        "topic": "sensors/+/telemetry",
                        "sensor_path": "id",
                        "device_topic_segment": 1,
                        "temp_path": "temp_c",
                        "ts_path": "ts",
                        "rh_path": "rh",
                        "battery_path": "battery_v",
                        "seq_path": "seq",
                    },
                    {"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"},
                ],
            }
        ]
    if modbus_port is not None:
        doc["zones"].append({"id": MODBUS_ZONE, "kind": "cold_storage", "profile": "frozen"})
        sensors.extend(
            {"id": sensor, "zone": MODBUS_ZONE, "model": "sht3x", "interval_s": 2.0}
            for sensor, _ in MODBUS_SLAVES.values()
        )
        doc["drivers"]["modbus"] = [
            {
                "name": "freezer-2-bus",
                "port": modbus_port,
                "timeout_s": 0.3,
                "devices": [
                    {"slave": slave, "probe": probe, "sensor": sensor, "poll_interval_s": 2.0}
                    for slave, (sensor, probe) in MODBUS_SLAVES.items()
                ],
            }
        ]
    if influx_url is not None:
        doc["sinks"] = {"influx": {"api": "v1", "url": influx_url, "database": DEMO_DB}}
    return parse_config(doc)


def trace_toml(config: GatewayConfig, influx_url: str | None) -> str:
    """A minimal TOML config for ``coldchain trace`` over the demo's data."""
    lines = [
        f'[hub]\nid = "{config.hub.id}"\ntimezone = "{config.hub.timezone}"',
        f'[journal]\npath = "{config.journal.path}"',
    ]
    for name, p in config.profiles.items():
        fields = p.model_dump(exclude_none=True, exclude={"name"})
        body = "\n".join(f"{k} = {v!r}" for k, v in fields.items())
        lines.append(f"[profiles.{name}]\n{body}")
    for z in config.zones:
        profile = f'\nprofile = "{z.profile}"' if z.profile else ""
        lines.append(f'[[zones]]\nid = "{z.id}"\nkind = "{z.kind}"{profile}')
    for sensor in config.sensors:
        lines.append(
            f'[[sensors]]\nid = "{sensor.id}"\nzone = "{sensor.zone}"\n'
            f"interval_s = {sensor.interval_s!r}"
        )
    if influx_url is not None:
        lines.append(f'[sinks.influx]\nurl = "{influx_url}"\ndatabase = "{DEMO_DB}"')
    return "\n\n".join(lines) + "\n"


def config_as_toml_comment(config: GatewayConfig) -> str:
    import json

    return (
        "# The config the demo ran with (JSON form of the validated model).\n"
        + "\n".join(
            f"# {line}"
            for line in json.dumps(config.model_dump(mode="json"), indent=2).splitlines()
        )
        + "\n"
    )
