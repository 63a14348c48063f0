"""Serial ingest: lines/s per port from pty board simulators through the full gateway path.

Each port is a firmware_sim.board.SensorBoardSim (8 probes) on a pseudo-terminal. The
board's ``--lines`` reading lines are generated first, then written as fast as the pty
takes them (a pty has no baud rate: this is the ceiling of what the gateway can read).
The gateway runs as its own process (``coldchain run --config``, generated config):
serial driver, normalise, journal (SQLite WAL), SOP rules, and with ``--influx`` the
InfluxDB v1 sink to a private influxd. Rate per port = lines / (first byte written ->
every reading committed, or with --influx landed in InfluxDB).

Baseline in the same run: a bare reader (os.read on the pty, counting newlines).

    .venv/bin/python bench/serial_ingest.py --lines 100000 --ports 1 2 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    GatewayProcess,
    NotifySocket,
    influxdb,
    median,
    reading_count,
    sensors_doc,
    status_json,
    workdir,
    write_config,
)
from firmware_sim.board import SensorBoardSim

PROBES = 8


def _boards(ports: int, lines: int) -> tuple[list[SensorBoardSim], list[bytes]]:
    rounds = lines // PROBES
    start_ms = int(time.time() * 1000) - rounds * 1000
    boards = [
        SensorBoardSim(PROBES, board=f"B{p}", start_ms=start_ms, status_every_s=0, seed=p)
        for p in range(ports)
    ]
    data = [b.reading_lines(rounds * PROBES) for b in boards]
    return boards, data


async def _write_all(boards: list[SensorBoardSim], data: list[bytes]) -> float:
    t0 = time.time()
    await asyncio.gather(*(b.write(d) for b, d in zip(boards, data, strict=True)))
    return t0


def run_bare(args: argparse.Namespace, ports: int) -> float:
    """Baseline: lines/s per port that a bare os.read() loop takes off the pty."""
    boards, data = _boards(ports, args.lines)
    expected = [d.count(b"\n") for d in data]
    pids = []
    for board, n in zip(boards, expected, strict=True):
        pid = os.fork()
        if pid == 0:  # the reader
            fd = os.open(board.port, os.O_RDONLY | os.O_NOCTTY)
            seen = 0
            while seen < n:
                seen += os.read(fd, 65536).count(b"\n")
            os._exit(0)
        pids.append(pid)
    time.sleep(0.2)
    t0 = asyncio.run(_write_all(boards, data))
    for pid in pids:
        os.waitpid(pid, 0)
    seconds = time.time() - t0
    for b in boards:
        b.close()
    return sum(expected) / ports / seconds


def run_gateway(
    args: argparse.Namespace, ports: int, influx: Any | None, tag: str
) -> dict[str, float]:
    """The gateway process reading ``ports`` boards; lines/s per port."""
    boards, data = _boards(ports, args.lines)
    total = sum(d.count(b"\n") for d in data)
    work = workdir(f"serial-{tag}")
    journal = work / "journal.db"
    sensors = [f"b{p}-p{i}" for p in range(ports) for i in range(1, PROBES + 1)]
    doc: dict[str, Any] = {
        "hub": {"id": "bench"},
        "journal": {"path": str(journal), "synchronous": args.synchronous},
        "status_interval_s": 0.2,
        "logging": {"level": "WARNING"},
        **sensors_doc(sensors, zones=max(1, ports)),
        "drivers": {
            "serial": [
                {
                    "name": f"board{p}",
                    "port": str(b.link_path),
                    "board": b.board,
                    "probes": {str(i): f"b{p}-p{i}" for i in range(1, PROBES + 1)},
                }
                for p, b in enumerate(boards)
            ]
        },
    }
    if influx is not None:
        influx.drop_database("coldchain")
        influx.create_database("coldchain")
        doc["sinks"] = {"influx": {"api": "v1", "url": influx.url, "database": "coldchain"}}
    config = write_config(work / "gateway.toml", doc)
    notify = NotifySocket(work)
    gw = GatewayProcess(config, notify)
    notify.wait_for("READY=1", 30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        connected = status_json(journal).get("counters", {}).get("connected", {})
        if all(connected.get(f"board{p}") for p in range(ports)):
            break
        time.sleep(0.05)
    t0 = asyncio.run(_write_all(boards, data))
    end = float("nan")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        st = status_json(journal)
        done = (
            st.get("sinks", {}).get("influx", {}).get("cursor", 0)
            if influx is not None
            else st.get("last_id", 0)
        )
        if done >= total:
            end = time.time()
            break
        time.sleep(0.02)
    cpu = gw.cpu_s()
    rss = gw.status_kb("VmHWM") / 1024
    gw.stop()
    notify.close()
    stored = reading_count(influx) if influx is not None else total
    for b in boards:
        b.close()
    seconds = end - t0
    return {
        "per_port": total / ports / seconds,
        "lost": total - stored,
        "cpu_s": cpu,
        "seconds": seconds,
        "rss": rss,
    }


def main() -> None:
    """Parse arguments, run the repeats, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=100_000, help="reading lines per port")
    p.add_argument("--ports", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--synchronous", choices=["normal", "full"], default="full")
    p.add_argument("--influx", action="store_true", help="also forward to a private influxd")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    base = workdir("serial")
    rows = []
    ctx = influxdb(base) if args.influx else None
    influx = ctx.__enter__() if ctx is not None else None
    try:
        for ports in args.ports:
            bare, gw = [], []
            for rep in range(args.repeat):
                bare.append(run_bare(args, ports))
                gw.append(run_gateway(args, ports, influx, f"{ports}-{rep}"))
                print(
                    f"{ports} port(s), repeat {rep + 1}: bare {bare[-1]:.0f} lines/s/port,"
                    f" gateway {gw[-1]['per_port']:.0f} lines/s/port"
                    f" (cpu {gw[-1]['cpu_s']:.1f} s in {gw[-1]['seconds']:.1f} s)",
                    flush=True,
                )
            rows.append((ports, median(bare), gw))
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    print()
    sink = "journal + rules + InfluxDB" if args.influx else "journal + rules (no sink)"
    print(
        f"workload: {args.lines} lines per port, {PROBES} probes per board, {sink},"
        f" synchronous={args.synchronous}, {args.repeat} repeats (median)"
    )
    print(
        f"{'ports':<7}{'bare pty lines/s/port':>22}{'gateway lines/s/port':>22}{'ratio':>7}"
        f"{'lost':>6}{'peak RSS MB':>12}"
    )
    for ports, bare, gw in rows:
        rate = median([g["per_port"] for g in gw])
        lost = max(g["lost"] for g in gw)
        rss = max(g["rss"] for g in gw)
        print(f"{ports:<7}{bare:>22.0f}{rate:>22.0f}{rate / bare:>7.2f}{lost:>6.0f}{rss:>12.1f}")
    print("target: >= 5,000 lines/s per port")


if __name__ == "__main__":
    main()
