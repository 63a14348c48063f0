"""Wired sensors: serial ports by /dev/serial/by-id, Modbus slaves on a line, 1-Wire probes.

Serial ports and 1-Wire probes are only looked at (a directory listing, one sysfs read
per probe). The Modbus scan talks on the line, so it runs only with ``--modbus PORT``
and is bounded: the ids and rates to try are given, the worst case is printed before
it starts, and a progress line shows where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from drivers.onewire.config import FAMILIES


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The wired-discovery options of ``coldchain discover``."""
    p.add_argument("--dev-root", default="/dev", help="where serial/by-id and tty* live")
    p.add_argument("--w1-root", default="/sys/bus/w1/devices", help="the w1 sysfs tree")
    p.add_argument(
        "--modbus",
        metavar="PORT",
        help="scan this RS-485 line for Modbus slaves (it sends requests on the line)",
    )
    p.add_argument("--slaves", default="1-16", help="slave ids to try, e.g. 1-16 or 1,5,9")
    p.add_argument(
        "--bauds", default="9600,19200,4800", help="rates to try in order, e.g. 9600,19200"
    )
    p.add_argument("--all-bauds", action="store_true", help="keep trying after a rate answers")
    p.add_argument(
        "--parity", choices=["N", "E", "O"], default="N", help="serial parity (default: N)"
    )
    p.add_argument(
        "--stopbits", type=int, choices=[1, 2], default=1, help="serial stop bits (default: 1)"
    )
    p.add_argument("--timeout", type=float, default=0.2, help="seconds to wait per slave id")


def discover(args: argparse.Namespace, out: TextIO) -> int:
    """Print what is attached, each group with a config snippet."""
    _serial_ports(Path(args.dev_root), out)
    _onewire(Path(args.w1_root), args.zone, out)
    if args.modbus:
        try:
            slaves = parse_ids(args.slaves)
            bauds = [int(b) for b in args.bauds.split(",") if b.strip()]
        except ValueError as exc:
            print(f"discover: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_modbus(args, slaves, bauds, out))
    print(
        "# Modbus: not scanned (it sends requests on the line). To scan one:\n"
        "#   coldchain discover --modbus /dev/serial/by-id/<adapter> --slaves 1-16",
        file=out,
    )
    return 0


def parse_ids(text: str) -> list[int]:
    """``1-16`` or ``1,5,9`` (or both) as a sorted list of slave ids 1..247."""
    ids: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        low, high = int(first), int(last or first)
        if not 1 <= low <= high <= 247:
            msg = f"slave ids are 1..247, got {part.strip()!r}"
            raise ValueError(msg)
        ids.update(range(low, high + 1))
    return sorted(ids)


def _serial_ports(dev: Path, out: TextIO) -> None:
    by_id = dev / "serial" / "by-id"
    links = sorted(by_id.iterdir()) if by_id.is_dir() else []
    named = {link.resolve() for link in links}
    print("# Serial ports (use the by-id path as `port`: it survives replugging)", file=out)
    for link in links:
        print(f"#   {link}  ->  {link.resolve().name}", file=out)
    if links:
        print(f"#   an RS-485 adapter? scan it: coldchain discover --modbus {links[0]}", file=out)
    others = [
        p
        for pattern in ("ttyUSB*", "ttyACM*", "ttyAMA*", "serial0")
        for p in sorted(dev.glob(pattern))
        if p.resolve() not in named
    ]
    for p in others:
        print(f"#   {p}  (no by-id name: the number can change on replug)", file=out)
    if not links and not others:
        print("#   none found", file=out)
    print(file=out)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sensor_blocks(ids: Iterable[str], zone: str, model: str) -> str:
    z, m = _toml_str(zone), _toml_str(model)
    return "".join(f"[[sensors]]\nid = {_toml_str(i)}\nzone = {z}\nmodel = {m}\n\n" for i in ids)


def _onewire(root: Path, zone: str, out: TextIO) -> None:
    from drivers.onewire.driver import read_device
    from drivers.onewire.w1 import W1Error, parse_w1_slave

    devices = (
        sorted(p.name for p in root.iterdir() if p.name[:2] in FAMILIES and "-" in p.name)
        if root.is_dir()
        else []
    )
    if not root.is_dir():
        print(f"# 1-Wire: no w1 bus at {root} (dtoverlay=w1-gpio on a Pi)\n", file=out)
        return
    print(f"# 1-Wire thermometers on {root}", file=out)
    if not devices:
        print("#   none found\n", file=out)
        return
    mapping: dict[str, str] = {}
    for device in devices:
        text = read_device(root, device, "w1_slave")
        if isinstance(text, OSError):
            reading = f"read error: {text.strerror}"
        else:
            try:
                reading = f"{parse_w1_slave(text, device[:2]).temp_c:.3f} °C"
            except W1Error as exc:
                reading = f"{exc.reason}: {exc}"
        print(f"#   {device}  {FAMILIES[device[:2]]:9s} {reading}", file=out)
        mapping[device] = f"w1-{device[3:]}"
    print(file=out)
    print(_sensor_blocks(mapping.values(), zone, "ds18b20"), end="", file=out)
    name = "onewire" if root == Path("/sys/bus/w1/devices") else f"onewire-{root.parent.name}"
    pairs = ", ".join(f"{_toml_str(d)} = {_toml_str(s)}" for d, s in mapping.items())
    print(
        f"[[drivers.onewire]]\nname = {_toml_str(_safe_name(name))}\n"
        f"sysfs_root = {_toml_str(str(root))}\nsensors = {{ {pairs} }}\n",
        file=out,
    )


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in text) or "bus"


async def _modbus(
    args: argparse.Namespace, slaves: list[int], bauds: list[int], out: TextIO
) -> int:
    from drivers.modbus.probes import PROBES
    from drivers.modbus.scan import estimate_s, scan_line, serial_client

    port = args.modbus
    worst = estimate_s(bauds, slaves, args.timeout)
    print(
        f"discover: scanning {port}: ids {slaves[0]}-{slaves[-1]} ({len(slaves)}) at"
        f" {', '.join(map(str, bauds))} baud {8}{args.parity}{args.stopbits},"
        f" at most {worst:.0f} s",
        file=sys.stderr,
    )

    def progress(baud: int, done: int, total: int, found: int) -> None:
        sys.stderr.write(f"\r  {baud} baud: id {done}/{total}, {found} found ")
        sys.stderr.flush()

    try:
        found = await scan_line(
            serial_client(port, args.parity, args.stopbits, args.timeout),
            bauds,
            slaves,
            progress,
            all_bauds=args.all_bauds,
        )
    except OSError as exc:
        sys.stderr.write("\n")
        print(f"discover: {port}: {exc}", file=sys.stderr)
        return 1
    sys.stderr.write("\n")
    print(f"# Modbus slaves on {port}", file=out)
    if not found:
        print(
            "#   none answered (check A/B, the rate and parity, the slave ids; see"
            " drivers/modbus/README.md)\n",
            file=out,
        )
        return 0
    rates = sorted({f.baudrate for f in found})
    baud = max(rates, key=lambda r: sum(f.baudrate == r for f in found))
    for f in found:
        what = (
            f"{PROBES[f.probe].title}: " + ", ".join(f"{k} {v:g}" for k, v in f.readings.items())
            if f.probe
            else "answers, no ready map fits: write its points (drivers/modbus/README.md)"
        )
        print(f"#   slave {f.slave:3d} at {f.baudrate} baud  {what}", file=out)
    if len(rates) > 1:
        print(
            f"#   WARNING: slaves answer at {', '.join(map(str, rates))} baud on one line;"
            f" set them all to one rate. The block below is for {baud}.",
            file=out,
        )
    mine = [f for f in found if f.baudrate == baud and f.probe]
    print(file=out)
    if not mine:
        return 0
    sensors = {f.slave: f"modbus-{_safe_name(Path(port).name)[-12:]}-{f.slave}" for f in mine}
    print(_sensor_blocks(sensors.values(), args.zone, "sht3x"), end="", file=out)
    print(
        f"[[drivers.modbus]]\nname = {_toml_str(_safe_name('modbus-' + Path(port).name))}\n"
        f"port = {_toml_str(port)}\nbaudrate = {baud}\nparity = {_toml_str(args.parity)}\n"
        f"stopbits = {args.stopbits}\n",
        file=out,
    )
    for f in mine:
        print(
            f"[[drivers.modbus.devices]]\nslave = {f.slave}\nprobe = {_toml_str(str(f.probe))}\n"
            f"sensor = {_toml_str(sensors[f.slave])}\npoll_interval_s = 10\n",
            file=out,
        )
    return 0
