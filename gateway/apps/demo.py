"""``coldchain demo``: a simulated micro-hub end to end, with a live terminal view.

Two serial sensor boards on pseudo-terminals (one with a clock, one without), a cold
room whose compressor fails (drift accelerated for the demo), a freezer, and, when a
broker is around, MQTT sensor nodes on the dock. Readings flow through the real
gateway into the SQLite journal and, when InfluxDB is around, into InfluxDB.

Services: ``--services auto`` (default) uses Mosquitto / InfluxDB already answering on
the standard loopback ports, else starts private ones from Debian's packages when
installed, else runs on embedded defaults (journal only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from firmware_sim.board import SensorBoardSim
from firmware_sim.faults import FaultInjector, FaultRates
from firmware_sim.thermal import AmbientDock, ColdRoom, Freezer, Probe
from gateway.alerts.store import Alert
from gateway.apps.localservices import InfluxDB1, Mosquitto, port_open
from gateway.config import GatewayConfig, parse_config
from gateway.core.clock import iso_utc
from gateway.core.model import Quality, Reading
from gateway.influxql.client import InfluxQLClient, quote_ident
from gateway.runtime.daemon import Gateway
from gateway.runtime.logs import setup_logging
from gateway.runtime.status_view import counters_table
from gateway.trace.cli import main as trace_main

log = logging.getLogger(__name__)

HUB = "hub-demo-01"
DEMO_DB = "coldchain"
# Zone -> (kind, limits shown in the view). The SOP engine owns real profiles.
ZONES: dict[str, tuple[str, float, float]] = {
    "cold-room-1": ("cold_storage", 2.0, 8.0),
    "cold-room-2": ("cold_storage", 2.0, 8.0),
    "freezer-1": ("cold_storage", -30.0, -18.0),
    "dock-1": ("dock", -50.0, 50.0),
}
BOARD_A = {"1": ("cr1-a", "cold-room-1"), "2": ("cr1-b", "cold-room-1"),
           "3": ("cr2-a", "cold-room-2"), "4": ("cr2-b", "cold-room-2")}  # fmt: skip
BOARD_B = {"1": ("frz-a", "freezer-1"), "2": ("frz-b", "freezer-1")}
PROFILES = {"cold-room-1": "chilled_demo", "cold-room-2": "chilled_demo", "freezer-1": "frozen"}
DOCK_NODES = {"dock-node-1": "dock-1", "dock-node-2": "dock-1"}


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


def demo_config(
    out: Path, board_a: str, board_b: str, influx_url: str | None, mqtt: tuple[str, int] | None
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
            for node, zone in DOCK_NODES.items()
        )
        doc["drivers"]["mqtt"] = [
            {
                "name": "dock-nodes",
                "host": mqtt[0],
                "port": mqtt[1],
                "client_id": f"coldchain-{HUB}-dock-nodes",
                "subscriptions": [
                    {
                        "topic": "sensors/+/telemetry",
                        "sensor_path": "id",
                        "temp_path": "temp_c",
                        "ts_path": "ts",
                        "rh_path": "rh",
                        "battery_path": "battery_v",
                        "seq_path": "seq",
                    }
                ],
            }
        ]
    if influx_url is not None:
        doc["sinks"] = {"influx": {"api": "v1", "url": influx_url, "database": DEMO_DB}}
    return parse_config(doc)


class DemoServices:
    """Finds or starts the broker and database the demo uses."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.mosquitto: Mosquitto | None = None
        self.influx: InfluxDB1 | None = None
        self.mqtt: tuple[str, int] | None = None
        self.influx_url: str | None = None
        self.notes: list[str] = []

    def start(self) -> None:
        """Pick or start services according to the mode."""
        if self.mode == "none":
            self.notes.append("services: none requested; journal only")
            return
        if self.mode in ("auto", "external"):
            if port_open("127.0.0.1", 1883):
                self.mqtt = ("127.0.0.1", 1883)
                self.notes.append("MQTT: using the broker on 127.0.0.1:1883")
            if port_open("127.0.0.1", 8086):
                self.influx_url = "http://127.0.0.1:8086"
                self.notes.append("InfluxDB: using the server on 127.0.0.1:8086")
        if self.mode in ("auto", "private"):
            if self.mqtt is None and Mosquitto.binary_available():
                self.mosquitto = Mosquitto(self.workdir / "mosquitto")
                self.mosquitto.start()
                self.mqtt = (self.mosquitto.host, self.mosquitto.port)
                self.notes.append(f"MQTT: started a private Mosquitto on port {self.mqtt[1]}")
            if self.influx_url is None and InfluxDB1.binary_available():
                self.influx = InfluxDB1(self.workdir / "influxdb")
                self.influx.start()
                self.influx_url = self.influx.url
                self.notes.append(f"InfluxDB: started a private influxd at {self.influx_url}")
        if self.mqtt is None:
            self.notes.append("MQTT: no broker found; MQTT sensor nodes are left out")
        if self.influx_url is None:
            self.notes.append("InfluxDB: none found; readings stay in the journal")
        if self.influx_url is not None:
            _create_database(self.influx_url)

    def stop(self) -> None:
        """Stop what this demo started."""
        for svc in (self.mosquitto, self.influx):
            if svc is not None:
                with contextlib.suppress(Exception):
                    svc.stop()


def _create_database(url: str) -> None:
    client = InfluxQLClient(url, timeout_s=5.0)
    try:
        client.query(f"CREATE DATABASE {quote_ident(DEMO_DB)}", write=True)
    finally:
        client.close()


def _influx_count(url: str) -> int:
    client = InfluxQLClient(url, DEMO_DB, timeout_s=5.0)
    try:
        rows = client.rows('SELECT count("temp_c") FROM "reading"')
    finally:
        client.close()
    return int(rows[0].get("count", 0) or 0) if rows else 0


async def _demo(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)  # made absolute by run_demo
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    services = DemoServices(args.services, out / "services")
    await asyncio.to_thread(services.start)
    for note in services.notes:
        console.print(f"[cyan]{note}[/]")
    room1 = ColdRoom(seed=1)
    room2 = ColdRoom(seed=2, compressor_fails_at_s=5.0, failure_drift_c_per_min=15.0)
    freezer = Freezer(seed=3)
    dock = AmbientDock(seed=4)
    rates = FaultRates(checksum=0.02, garbage=0.01, sentinel=0.005)
    board_a = SensorBoardSim(
        {"1": Probe(room1, seed=11), "2": Probe(room1, seed=12),
         "3": Probe(room2, seed=13), "4": Probe(room2, seed=14)},
        board="A1", interval_s=args.interval, faults=FaultInjector(rates, seed=5),
        link_dir=out,
    )  # fmt: skip
    board_b = SensorBoardSim(
        {"1": Probe(freezer, seed=21), "2": Probe(freezer, seed=22)},
        board="B1", interval_s=args.interval, device_clock=False, link_dir=out,
    )  # fmt: skip
    config = demo_config(
        out, str(board_a.link_path), str(board_b.link_path), services.influx_url, services.mqtt
    )
    gateway = Gateway(config)
    view = DemoView()
    gateway.ingest.on_commit(view.on_commit)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        gw_task = asyncio.create_task(gateway.run(stop), name="gateway")
        await gateway.ready.wait()
        tasks.append(asyncio.create_task(_run_shipments(gateway), name="shipments"))
        tasks.append(asyncio.create_task(board_a.run(), name="board-a"))
        tasks.append(asyncio.create_task(board_b.run(), name="board-b"))
        if services.mqtt is not None:
            tasks.append(asyncio.create_task(_run_nodes(services.mqtt, dock, args), name="nodes"))
        loop = asyncio.get_running_loop()
        end = loop.time() + args.duration

        async def render() -> Group:
            left = max(0.0, end - loop.time())
            active = await gateway.runner.call(gateway.alerts.active)
            return Group(
                view.table(),
                alerts_table(active),
                counters_table(gateway.status.snapshot()),
                f"[dim]{left:4.0f} s left - Ctrl-C stops early[/]",
            )

        if args.no_live or not console.is_terminal:
            while loop.time() < end:
                await asyncio.sleep(min(5.0, max(0.0, end - loop.time())))
                s = gateway.status.snapshot()["counters"]
                console.print(
                    f"received {sum(s['received'].values()):,} committed {s['committed']:,} "
                    f"dropped {sum(s['dropped'].values()):,} written {s['written']}"
                )
            console.print(await render())
        else:
            with Live(await render(), console=console, refresh_per_second=4) as live:
                while loop.time() < end:
                    await asyncio.sleep(0.25)
                    live.update(await render())
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await gw_task
        board_a.close()
        board_b.close()
    committed = gateway.counters.committed
    trace_config = out / "trace.toml"
    await asyncio.to_thread(
        trace_config.write_text, _trace_toml(config, services.influx_url), encoding="utf-8"
    )
    reports = out / "reports"
    console.print()
    console.print("[bold]Claim reports[/] (coldchain trace, the support agent's view)")
    for shipment in SHIPMENTS:
        source = "influx" if services.influx_url is not None else "journal"
        cmd = [shipment, "--config", str(trace_config), "--source", source]
        await asyncio.to_thread(trace_main, [*cmd, "--out", str(reports), "--quiet"])
        pdf = reports / f"trace-{shipment}.pdf"
        verdict = _verdict(reports / f"trace-{shipment}.json")
        console.print(f"  {shipment}: {verdict}  {pdf}")
    console.print(f"  again:    coldchain trace SHIPMENT --config {trace_config} --out DIR")
    console.print()
    console.print("[bold]Where the data went[/]")
    console.print(f"  journal   {config.journal.path}  ({committed:,} readings committed)")
    console.print(f"  config    {out / 'demo.toml'}")
    await asyncio.to_thread(
        (out / "demo.toml").write_text, _as_toml_comment(config), encoding="utf-8"
    )
    if services.influx_url is not None:
        n = await asyncio.to_thread(_influx_count, services.influx_url)
        console.print(f"  InfluxDB  {services.influx_url} db={DEMO_DB}: {n:,} reading points")
        if services.influx is not None:
            console.print("            (private instance, stopped now; data kept under", end="")
            console.print(f" {services.workdir / 'influxdb'})")
    else:
        console.print("  InfluxDB  not used (see the services notes above)")
    console.print(
        "  inspect   sqlite3 "
        f"{config.journal.path} 'SELECT zone, COUNT(*), MIN(temp_c), MAX(temp_c) "
        "FROM readings GROUP BY zone'"
    )
    await asyncio.to_thread(services.stop)
    return 0 if committed > 0 else 1


SHIPMENTS = ("SH-DEMO-1", "SH-DEMO-2")


async def _run_shipments(gateway: Gateway) -> None:
    """Two shipments: SH-DEMO-1 is put away in the room whose compressor fails."""
    import json

    async def handoff(shipment: str, event: str, zone: str, **extra: str) -> None:
        body: dict[str, object] = {
            "shipment": shipment,
            "event": event,
            "zone": zone,
            "actor": "demo-scanner",
            "ts_ns": time.time_ns(),
            **extra,
        }
        await gateway.engine.apply_custody(json.dumps(body).encode(), "demo")

    await asyncio.sleep(2)
    for shipment in SHIPMENTS:
        await handoff(shipment, "received", "cold-room-1", profile="chilled_demo")
    await asyncio.sleep(2)
    await handoff("SH-DEMO-1", "put_away", "cold-room-2")
    await handoff("SH-DEMO-2", "put_away", "cold-room-1")


def _verdict(path: Path) -> str:
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "(no report)"
    verdict = str(doc.get("verdict", "?")).upper()
    colour = {"ACCEPT": "green", "REVIEW": "yellow", "REJECT": "red"}.get(verdict, "white")
    return f"[bold {colour}]{verdict}[/]"


def _trace_toml(config: GatewayConfig, influx_url: str | None) -> str:
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


def _as_toml_comment(config: GatewayConfig) -> str:
    import json

    return (
        "# The config the demo ran with (JSON form of the validated model).\n"
        + "\n".join(
            f"# {line}"
            for line in json.dumps(config.model_dump(mode="json"), indent=2).splitlines()
        )
        + "\n"
    )


async def _run_nodes(mqtt: tuple[str, int], dock: AmbientDock, args: argparse.Namespace) -> None:
    from firmware_sim.node import SensorNodeSim

    probes = {node: Probe(dock, seed=30 + i) for i, node in enumerate(DOCK_NODES)}
    nodes = SensorNodeSim(
        mqtt[0], mqtt[1], probes=probes, interval_s=args.interval, malformed_rate=0.02,
        client_id=f"{HUB}-dock-node-sim",
    )  # fmt: skip
    await asyncio.to_thread(nodes.connect)
    try:
        while True:
            # Wall-clock timestamps: the nodes' clocks agree with the gateway's.
            nodes.sim_ms = time.time_ns() // 1_000_000 - round(args.interval * 1000)
            nodes.publish_round()
            await asyncio.sleep(args.interval)
    finally:
        await asyncio.to_thread(nodes.close)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code."""
    setup_logging("WARNING", "text")
    console = Console()
    args.out = str(Path(args.out).absolute())
    if shutil.which("sqlite3") is None:
        log.debug("sqlite3 CLI not installed; the inspect hint still shows the query")
    try:
        return asyncio.run(_demo(args, console))
    except KeyboardInterrupt:
        console.print("stopped")
        return 130
    finally:
        sys.stdout.flush()
