"""``coldchain sim``: run a simulated serial board or a fleet of MQTT nodes.

::

    coldchain sim serial --probes 4 --interval 1 --faults checksum=0.05,garbage=0.02
    coldchain sim mqtt --host 127.0.0.1 --port 1883 --devices 5 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from firmware_sim.board import SensorBoardSim
from firmware_sim.dialects import DIALECTS
from firmware_sim.faults import FaultInjector, FaultRates
from firmware_sim.node import SensorNodeSim, telemetry_topic
from firmware_sim.thermal import Probe, zone_from_name

ZONE_KINDS = ("cold_room", "freezer", "dock")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``sim`` subcommand (with ``serial`` and ``mqtt``) on a CLI."""
    sim = subparsers.add_parser("sim", help="run sensor simulators (serial board, MQTT nodes)")
    kinds = sim.add_subparsers(dest="sim_kind", required=True, help="what to simulate")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    common.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    common.add_argument("--zone", choices=ZONE_KINDS, default="cold_room", help="thermal model")
    common.add_argument(
        "--compressor-fails-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="simulated seconds after start when the compressor fails",
    )
    common.add_argument("--seed", type=int, default=0, help="random seed: same seed, same run")
    common.add_argument("--rounds", type=int, default=None, help="stop after N rounds")

    serial = kinds.add_parser("serial", parents=[common], help="a sensor board on a pty")
    serial.add_argument("--board", default="B1", help="board id sent in every line")
    serial.add_argument("--probes", type=int, default=4, help="number of probes")
    serial.add_argument("--faults", default="", help="e.g. checksum=0.05,garbage=0.02,drop=0.01")
    serial.add_argument("--no-device-clock", action="store_true", help="send empty timestamps")
    serial.add_argument("--link-dir", type=Path, default=None, help="where to keep the symlink")

    modbus = kinds.add_parser(
        "modbus", parents=[common], help="Modbus RTU transmitters on a pty pair (pymodbus)"
    )
    modbus.add_argument("--slaves", type=int, default=3, help="number of transmitters")
    modbus.add_argument("--baud", type=int, default=9600, help="line rate to emulate")
    modbus.add_argument("--turnaround-ms", type=float, default=5.0, help="device reply delay")
    modbus.add_argument("--link-dir", type=Path, default=None, help="where to keep the links")

    node = kinds.add_parser("mqtt", parents=[common], help="MQTT sensor nodes")
    node.add_argument("--host", default="127.0.0.1", help="MQTT broker host")
    node.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    node.add_argument("--devices", type=int, default=3, help="number of sensor nodes")
    node.add_argument("--malformed", type=float, default=0.0, help="rate of malformed payloads")
    node.add_argument("--client-id", default="coldchain-node-sim", help="MQTT client id")
    node.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="json",
        help="the ecosystem format the nodes speak (see docs/mqtt-formats/)",
    )
    node.add_argument(
        "--fahrenheit", action="store_true", help="tasmota/esphome/homeassistant publish in °F"
    )


def _probes(args: argparse.Namespace, names: list[str]) -> dict[str, Probe]:
    zone = zone_from_name(args.zone, args.seed, args.compressor_fails_at)
    return {name: Probe(zone, seed=args.seed * 1000 + i) for i, name in enumerate(names)}


async def _run_serial(args: argparse.Namespace) -> None:
    rates = FaultRates.parse(args.faults)
    names = [str(i) for i in range(1, args.probes + 1)]
    with SensorBoardSim(
        _probes(args, names),
        board=args.board,
        interval_s=args.interval,
        speed=args.speed,
        faults=FaultInjector(rates, seed=args.seed),
        device_clock=not args.no_device_clock,
        link_dir=args.link_dir,
        seed=args.seed,
    ) as board:
        _say(f"board {board.board}: pty {board.port}, stable path {board.link_path}")
        probes = ", ".join(f'"{n}" = "{args.board.lower()}-p{n}"' for n in names)
        _say(
            f'config: [[drivers.serial]] name = "{args.board.lower()}" '
            f'port = "{board.link_path}" board = "{args.board}" probes = {{ {probes} }}'
        )
        await board.run(args.rounds)
        sent = board.sent
        _say(
            f"sent {sent.total_valid} valid, {sent.checksum} bad checksum, "
            f"{sent.garbage} garbage, {sent.dropped} dropped"
        )


async def _run_mqtt(args: argparse.Namespace) -> None:
    names = [f"node-{i}" for i in range(1, args.devices + 1)]
    with SensorNodeSim(
        args.host,
        args.port,
        probes=_probes(args, names),
        interval_s=args.interval,
        speed=args.speed,
        malformed_rate=args.malformed,
        client_id=args.client_id,
        seed=args.seed,
        dialect=args.dialect,
        fahrenheit=args.fahrenheit,
    ) as nodes:
        where = telemetry_topic("<device>") if args.dialect == "json" else f"{args.dialect} topics"
        _say(f"{len(names)} nodes publishing to {where} on {args.host}")
        await nodes.run(args.rounds)
        _say(f"sent {sum(nodes.sent.values())} readings, {sum(nodes.malformed.values())} bad")


async def _run_modbus(args: argparse.Namespace) -> None:
    from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, default_cold_room

    slaves = list(default_cold_room(args.slaves, args.seed, args.speed, args.compressor_fails_at))
    with PtyPair(args.link_dir) as pty:
        bus = ModbusBusSim(slaves, line_baud=args.baud, turnaround_s=args.turnaround_ms / 1000)
        await bus.start_serial(pty.a, args.baud)
        _say(f"modbus bus: {len(slaves)} slaves on {pty.b} ({args.baud} 8N1)")
        _say(f'config: [[drivers.modbus]] name = "sim-bus" port = "{pty.b}" baudrate = {args.baud}')
        for s in slaves:
            _say(f'  [[drivers.modbus.devices]] slave = {s.slave} probe = "{s.probe}" sensor = ...')
        try:
            rounds = args.rounds
            while rounds is None or rounds > 0:
                await asyncio.sleep(args.interval)
                rounds = None if rounds is None else rounds - 1
        finally:
            await bus.stop()


def run(args: argparse.Namespace) -> int:
    """Run the simulator chosen on the command line until Ctrl-C (or ``--rounds``)."""
    main = {"serial": _run_serial, "mqtt": _run_mqtt, "modbus": _run_modbus}[args.sim_kind]
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(args))
    except (OSError, TimeoutError, ValueError) as exc:
        sys.stderr.write(f"coldchain sim: {exc}\n")
        return 1
    return 0
