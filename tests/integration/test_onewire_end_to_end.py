"""DS18B20 probes on a kernel-shaped w1 sysfs tree through the whole gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers.onewire.driver import OneWireDriver
from firmware_sim.w1_tree import W1Tree
from gateway.core.clock import ManualClock
from gateway.core.model import Quality
from gateway.runtime.daemon import Gateway
from tests.integration.harness import hub_config, wait_for

PROBES = {"28-0316a2794cff": "chest-1", "28-0316a2795aaa": "chest-2", "28-0316a2796bbb": "chest-3"}


async def test_sentinels_are_flagged_crc_errors_kept_and_a_lost_probe_goes_stale(
    tmp_path: Path,
) -> None:
    tree = W1Tree(tmp_path / "sys")
    for device in PROBES:
        tree.add(device, -19.0)
    tree.set_temp("28-0316a2795aaa", 85.0)
    tree.set_crc_error("28-0316a2796bbb")
    config = hub_config(
        tmp_path,
        zones=[{"id": "chest-freezer", "kind": "cold_storage", "profile": "frozen"}],
        sensors=[
            {"id": s, "zone": "chest-freezer", "model": "ds18b20", "interval_s": 10}
            for s in PROBES.values()
        ],
        drivers={"onewire": [{"name": "w1", "sysfs_root": tree.sysfs_root, "sensors": PROBES}]},
    )
    clock = ManualClock()
    gw = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        (driver,) = gw.drivers
        assert isinstance(driver, OneWireDriver)
        await wait_for(lambda: gw.counters.committed == 2, what="two readings")
        await wait_for(lambda: gw.counters.dead_lettered == 1, what="the crc error kept")
        rows = {
            r.sensor: r for r in gw.runner.journal.readings_between(["chest-freezer"], 0, 2**62)
        }
        assert rows["chest-1"].temp_c == -19.0 and rows["chest-1"].quality & Quality.SENTINEL == 0
        assert rows["chest-2"].temp_c == 85.0 and rows["chest-2"].quality & Quality.SENTINEL
        (dead,) = gw.runner.journal.dead_letters()
        assert (dead.reason, dead.source) == ("crc", "onewire:w1")
        assert dead.payload.endswith(b"\n") and b"crc=" in dead.payload

        tree.remove("28-0316a2794cff")
        for n in range(1, 5):
            clock.advance(10)
            await wait_for(lambda n=n: driver.cycles > n and driver.idle.is_set(), what="poll")
        await gw.engine.tick()
        stale = {a.subject for a in gw.alerts.active() if a.rule == "sensor_stale"}
        assert "chest-1" in stale
        assert driver.stats()["device.28-0316a2794cff.missing"] == 4
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
