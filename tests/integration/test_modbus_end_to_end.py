"""A Modbus cold room through the whole gateway: pymodbus' server on a socat pty pair.

Readings of three slaves land in the journal with scale and sign; a slave switched off
keeps the other two on schedule and raises ``sensor_stale`` for its sensor; a corrupted
frame is counted and kept as a dead letter. The gateway runs on a ManualClock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.driver import ModbusDriver, rtu_crc_ok
from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, SlaveSim
from gateway.cli import main
from gateway.core.clock import ManualClock
from gateway.runtime.daemon import Gateway
from tests.integration.harness import hub_config, wait_for

pytestmark = pytest.mark.integration

INTERVAL = 10.0
SENSORS = {1: "cr1-air", 2: "fz1-air", 3: "fz2-air"}


def _config(tmp_path: Path, port: str) -> Any:
    return hub_config(
        tmp_path,
        zones=[
            {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
            {"id": "freezer-1", "kind": "cold_storage", "profile": "frozen"},
        ],
        sensors=[
            {"id": "cr1-air", "zone": "cold-room-1", "model": "sht3x", "interval_s": INTERVAL},
            {"id": "fz1-air", "zone": "freezer-1", "model": "sht3x", "interval_s": INTERVAL},
            {"id": "fz2-air", "zone": "freezer-1", "model": "sht3x", "interval_s": INTERVAL},
        ],
        drivers={
            "modbus": [
                {
                    "name": "bus1",
                    "port": port,
                    "timeout_s": 1.0,
                    "gap_ms": 2,
                    "devices": [
                        {"slave": 1, "probe": "xy_md02", "sensor": "cr1-air",
                         "poll_interval_s": INTERVAL},
                        {"slave": 2, "probe": "sht20_r0", "sensor": "fz1-air",
                         "poll_interval_s": INTERVAL},
                        {"slave": 3, "probe": "sht30_din_float", "sensor": "fz2-air",
                         "poll_interval_s": INTERVAL},
                    ],
                }
            ]
        },
    )  # fmt: skip


def _temps(gw: Gateway, sensor: str) -> list[float]:
    rows = gw.runner.journal.readings_between(["cold-room-1", "freezer-1"], 0, 2**62)
    return [r.temp_c for r in rows if r.sensor == sensor]


async def test_modbus_cold_room_dead_slave_goes_stale_and_bad_frame_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with PtyPair(tmp_path) as pty:
        slaves = [
            SlaveSim.of_probe(1, "xy_md02", temp=3.5, rh=61.0),
            SlaveSim.of_probe(2, "sht20_r0", temp=-21.4, rh=50.0),
            SlaveSim.of_probe(3, "sht30_din_float", temp=-18.75, rh=45.5),
        ]
        bus = ModbusBusSim(slaves)
        await bus.start_serial(pty.a)
        clock = ManualClock()
        gw = Gateway(_config(tmp_path, pty.b), clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            (driver,) = gw.drivers
            assert isinstance(driver, ModbusDriver)

            async def one_interval() -> None:
                cycles = driver.cycles
                clock.advance(INTERVAL)
                await wait_for(
                    lambda: driver.idle.is_set() and driver.cycles > cycles, what="a poll round"
                )

            await wait_for(lambda: driver.cycles >= 1, what="first poll round")
            await wait_for(lambda: gw.counters.committed == 3, what="three readings committed")
            assert _temps(gw, "cr1-air") == [3.5]
            assert _temps(gw, "fz1-air") == [-21.4]
            assert _temps(gw, "fz2-air") == [-18.75]

            slaves[1].powered = False
            for _ in range(4):
                await one_interval()
            await wait_for(lambda: gw.counters.committed == 3 + 2 * 4, what="live slaves")
            assert len(_temps(gw, "cr1-air")) == len(_temps(gw, "fz2-air")) == 5
            assert len(_temps(gw, "fz1-air")) == 1
            await gw.engine.tick()
            stale = {a.subject for a in gw.alerts.active() if a.rule == "sensor_stale"}
            assert stale == {"fz1-air"}
            stats = driver.stats()
            assert stats["slave.2.timeouts"] == 4 and stats["slave.2.online"] == 0
            assert stats["slave.1.overruns"] == stats["slave.3.overruns"] == 0
            # what an operator sees: coldchain status lists the dead slave's counters
            await gw.status.refresh()
            status_file = tmp_path / "status.json"
            # just written by a live process: not stale (the age is the file's mtime)
            assert main(["status", "--status-file", str(status_file)]) == 0
            shown = capsys.readouterr().out
            assert "slave.2.online" in shown and "slave.2.timeouts" in shown

            slaves[0].corrupt_next = 1
            await one_interval()
            await wait_for(lambda: gw.counters.dead_lettered == 1, what="dead letter")
            (dead,) = gw.runner.journal.dead_letters()
            assert (dead.reason, dead.source) == ("crc", "modbus:bus1:1")
            assert dead.payload[:2] == bytes([1, 4]) and not rtu_crc_ok(dead.payload)
            assert gw.counters.dropped["bus1:crc"] == 1
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await task
            await bus.stop()
