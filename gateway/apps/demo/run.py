"""``coldchain demo``: a simulated micro-hub end to end, with a live terminal view.

Two serial sensor boards on pseudo-terminals (one with a clock, one without), a cold
room whose compressor fails (drift accelerated for the demo), a freezer, a second
freezer on RS-485 Modbus transmitters (pymodbus' server on a socat pty pair, when socat
is installed) and, when a broker is around, MQTT sensor nodes on the dock. Readings flow
through the real gateway into the SQLite journal and, when InfluxDB is around, into
InfluxDB.

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
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from firmware_sim.board import SensorBoardSim
from firmware_sim.faults import FaultInjector, FaultRates
from firmware_sim.thermal import AmbientDock, ColdRoom, Freezer, Probe
from gateway.apps.demo.scenario import (
    DEMO_DB,
    DOCK_NODES,
    DOCK_ZIGBEE,
    HUB,
    MODBUS_SLAVES,
    SHIPMENTS,
    config_as_toml_comment,
    demo_config,
    trace_toml,
)
from gateway.apps.demo.services import DemoServices, influx_count
from gateway.apps.demo.view import DemoView, alerts_table
from gateway.config import GatewayConfig
from gateway.runtime.daemon import Gateway
from gateway.runtime.logs import setup_logging
from gateway.runtime.status_view import counters_table
from gateway.trace.cli import main as trace_main

log = logging.getLogger(__name__)


async def _modbus_freezer(out: Path, stack: contextlib.AsyncExitStack) -> str | None:
    """Modbus transmitters in a second freezer on a socat pty pair; None without socat."""
    if shutil.which("socat") is None:
        return None
    from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, SlaveSim, ThermalReader

    pty = stack.enter_context(PtyPair(out))
    zone = Freezer(seed=6)
    slaves = []
    for i, (slave, (_, probe)) in enumerate(MODBUS_SLAVES.items()):
        sim = SlaveSim.of_probe(slave, probe)
        sim.read = ThermalReader(Probe(zone, seed=60 + i), rh=70.0)
        slaves.append(sim)
    bus = ModbusBusSim(slaves, line_baud=9600, turnaround_s=0.005)
    await bus.start_serial(pty.a)
    stack.push_async_callback(bus.stop)
    return pty.b


def _demo_hub_key(config: GatewayConfig) -> None:
    """The demo hub gets its own key (as `coldchain keys init` makes it): signed
    checkpoints and signed claim reports."""
    from gateway.core.keys import generate_private_key, public_pem

    key = config.evidence.key_path(config.journal.path)
    if not key.exists():
        private = generate_private_key(key)
        key.with_suffix(".pub").write_text(public_pem(private.public_key()), encoding="utf-8")


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
    stack = contextlib.AsyncExitStack()
    modbus_port = await _modbus_freezer(out, stack)
    if modbus_port is None:
        console.print("[cyan]socat not installed: no Modbus freezer in this demo[/]")
    config = demo_config(
        out,
        str(board_a.link_path),
        str(board_b.link_path),
        services.influx_url,
        services.mqtt,
        modbus_port,
    )
    _demo_hub_key(config)
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
        await stack.aclose()  # the Modbus bus simulator and its pty pair
    committed = gateway.counters.committed
    trace_config = out / "trace.toml"
    await asyncio.to_thread(
        trace_config.write_text, trace_toml(config, services.influx_url), encoding="utf-8"
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
        (out / "demo.toml").write_text, config_as_toml_comment(config), encoding="utf-8"
    )
    if services.influx_url is not None:
        n = await asyncio.to_thread(influx_count, services.influx_url)
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


async def _run_nodes(mqtt: tuple[str, int], dock: AmbientDock, args: argparse.Namespace) -> None:
    from firmware_sim.node import SensorNodeSim

    probes = {node: Probe(dock, seed=30 + i) for i, node in enumerate(DOCK_NODES)}
    nodes = SensorNodeSim(
        mqtt[0], mqtt[1], probes=probes, interval_s=args.interval, malformed_rate=0.02,
        client_id=f"{HUB}-dock-node-sim",
    )  # fmt: skip
    zigbee = SensorNodeSim(
        mqtt[0], mqtt[1], probes={n: Probe(dock, seed=40 + i) for i, n in enumerate(DOCK_ZIGBEE)},
        interval_s=args.interval, client_id=f"{HUB}-zigbee2mqtt-sim", dialect="zigbee2mqtt",
    )  # fmt: skip
    await asyncio.to_thread(nodes.connect)
    await asyncio.to_thread(zigbee.connect)
    try:
        while True:
            # Wall-clock timestamps: the nodes' clocks agree with the gateway's.
            for fleet in (nodes, zigbee):
                fleet.sim_ms = time.time_ns() // 1_000_000 - round(args.interval * 1000)
                fleet.publish_round()
            await asyncio.sleep(args.interval)
    finally:
        await asyncio.to_thread(nodes.close)
        await asyncio.to_thread(zigbee.close)


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
