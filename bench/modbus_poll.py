"""Modbus poll cycle: how many RS-485 slaves one bus can poll every 10 s.

pymodbus' own server (firmware_sim.modbus_bus) runs on one end of a socat pty pair with
``--slaves`` XY-MD02 transmitters; the gateway's ModbusDriver (SystemClock) polls them on
the other end. A pty has no baud rate, so the simulator makes each answer wait the wire
time of request + answer at ``--baud`` (8N1, with the 3.5-character gaps) plus a device
turnaround (``--turnaround-ms``, the time a transmitter takes to start answering; cheap
SHT20 boards take 5-20 ms). Every slave is due at every turn (poll interval 0.1 s), so
the driver runs back to back for ``--seconds``: per-slave cost = elapsed / polls.

Baseline in the same run: pymodbus' bare client reading the same slaves back to back
(no scheduling, no decoding, no gap), and the wire time alone (computed).

Figures: slaves per bus that keep a 10 s poll = 10 s / per-slave cost, all slaves
answering, and with one dead slave (it costs ``--timeout`` per poll).

    .venv/bin/python bench/modbus_poll.py --baud 9600 19200 --slaves 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.modbus.config import ModbusDriverConfig
from drivers.modbus.driver import ModbusDriver
from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, SlaveSim, rtu_exchange_s
from gateway.core.clock import SystemClock

POLL_TARGET_S = 10.0


async def _driver_run(
    port: str, slaves: int, seconds: float, timeout_s: float, gap_ms: float
) -> tuple[float, int, dict[str, int]]:
    config = ModbusDriverConfig.model_validate(
        {
            "name": "bench",
            "port": port,
            "timeout_s": timeout_s,
            "gap_ms": gap_ms,
            "devices": [
                {"slave": i, "probe": "xy_md02", "sensor": f"s{i}", "poll_interval_s": 0.1}
                for i in range(1, slaves + 1)
            ],
        }
    )
    driver = ModbusDriver(config, SystemClock())
    stream = driver.deliveries()
    await anext(stream)  # connected
    polls_before = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await anext(stream)
    elapsed = time.perf_counter() - start
    stats = dict(driver.stats())
    polls = stats["polls"] - polls_before
    await stream.aclose()
    return elapsed, polls, stats


async def _bare_client(port: str, slaves: int, seconds: float) -> tuple[float, int]:
    from pymodbus.client import AsyncModbusSerialClient

    client = AsyncModbusSerialClient(port, baudrate=9600, timeout=1, retries=0)
    await client.connect()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await client.read_input_registers(1, count=2, device_id=n % slaves + 1)
        n += 1
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, n


async def run_one(
    baud: int, slaves: int, seconds: float, turnaround_ms: float, timeout_s: float, gap_ms: float
) -> dict[str, Any]:
    with PtyPair() as pty:
        sims = [SlaveSim.of_probe(i, "xy_md02", temp=-18.5, rh=50.0) for i in range(1, slaves + 1)]
        bus = ModbusBusSim(sims, line_baud=baud, turnaround_s=turnaround_ms / 1000)
        await bus.start_serial(pty.a, baud)
        try:
            bare_s, bare_n = await _bare_client(pty.b, slaves, seconds / 2)
            elapsed, polls, _ = await _driver_run(pty.b, slaves, seconds, timeout_s, gap_ms)
            sims[0].powered = False
            d_elapsed, d_polls, d_stats = await _driver_run(
                pty.b, slaves, seconds, timeout_s, gap_ms
            )
        finally:
            await bus.stop()
    wire_ms = rtu_exchange_s(2, baud) * 1000
    per_ms = elapsed / polls * 1000
    # one dead slave: the live ones' cost plus one timeout per round
    per_round_dead_ms = d_elapsed / (d_polls / slaves) * 1000
    return {
        "baud": baud,
        "wire_ms": wire_ms,
        "device_ms": wire_ms + turnaround_ms,
        "bare_ms": bare_s / bare_n * 1000,
        "driver_ms": per_ms,
        "slaves_10s": int(POLL_TARGET_S * 1000 // per_ms),
        "round_dead_ms": per_round_dead_ms,
        "slaves_10s_dead": int((POLL_TARGET_S * 1000 - timeout_s * 1000) // per_ms),
        "dead_timeouts": d_stats["slave.1.timeouts"],
        "dead_rounds": d_polls // slaves,
    }


def main() -> None:
    """Run the benchmark for each baud rate and print one table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baud", type=int, nargs="+", default=[9600, 19200])
    ap.add_argument("--slaves", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--turnaround-ms", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--gap-ms", type=float, default=10.0)
    args = ap.parse_args()
    print(
        f"{args.slaves} XY-MD02 slaves (1 read of 2 input registers each), turnaround"
        f" {args.turnaround_ms:g} ms, gap {args.gap_ms:g} ms, timeout {args.timeout:g} s,"
        f" {args.seconds:g} s per run"
    )
    print(
        "baud   wire ms  wire+turn  bare client  driver/slave  slaves@10s"
        "  round w/ 1 dead  slaves@10s w/ 1 dead"
    )
    for baud in args.baud:
        r = asyncio.run(
            run_one(baud, args.slaves, args.seconds, args.turnaround_ms, args.timeout, args.gap_ms)
        )
        print(
            f"{r['baud']:<6} {r['wire_ms']:7.1f}  {r['device_ms']:9.1f}  {r['bare_ms']:8.1f} ms"
            f"  {r['driver_ms']:9.1f} ms  {r['slaves_10s']:10d}  {r['round_dead_ms']:12.0f} ms"
            f"  {r['slaves_10s_dead']:19d}"
            f"   (dead slave: {r['dead_timeouts']} timeouts in {r['dead_rounds']} rounds)"
        )


if __name__ == "__main__":
    main()
