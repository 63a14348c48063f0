"""The 1-Wire driver on a kernel-shaped sysfs tree, its schedule on a ManualClock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.onewire.config import OneWireDriverConfig
from drivers.onewire.driver import OneWireDriver
from firmware_sim.w1_tree import W1Tree
from gateway.config import GatewayConfig
from gateway.core.clock import ManualClock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery

GOOD, BAD_CRC, POWER_ON, MINUS127, TC, GONE, EMPTY = (
    "28-0316a2794cff",
    "28-0316a2795aaa",
    "28-0316a2796bbb",
    "22-000003c1d2e3",
    "3b-0000001a2b3c",
    "28-0316a2797ccc",
    "28-0316a2798ddd",
)


class Run:
    """A driver running in a task, its deliveries kept."""

    def __init__(self, driver: OneWireDriver) -> None:
        self.driver = driver
        self.got: list[Delivery] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for d in self.driver.deliveries():
            self.got.append(d)

    async def round_done(self, after: int) -> None:
        async with asyncio.timeout(10):
            while not (self.driver.idle.is_set() and self.driver.cycles > after):
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.005)

    def temps(self, sensor: str) -> list[float]:
        return [s.temp_c for d in self.got for s in d.samples if s.sensor == sensor]

    def rejects(self) -> list[Any]:
        return [r for d in self.got for r in d.rejects]


@pytest.fixture
async def tree_and_run(tmp_path: Path) -> AsyncIterator[tuple[W1Tree, Run, ManualClock]]:
    tree = W1Tree(tmp_path)
    tree.add(GOOD, -18.5)
    tree.add(BAD_CRC)
    tree.set_crc_error(BAD_CRC)
    tree.add(POWER_ON, 85.0)
    tree.add(MINUS127, -127.0)
    tree.add(TC)
    tree.set_max31850(TC, 0.0, fault=1)
    tree.add(GONE, -20.0)
    tree.add(EMPTY)
    tree.set_text(EMPTY, "", "")
    tree.add("28-0316a279eeee", 1.0)  # on the bus but not configured: left alone
    sensors = {d: f"s-{d[-4:]}" for d in (GOOD, BAD_CRC, POWER_ON, MINUS127, TC, GONE, EMPTY)}
    config = OneWireDriverConfig(name="w1", sysfs_root=tree.sysfs_root, sensors=sensors)
    clock = ManualClock()
    run = Run(OneWireDriver(config, clock))
    yield tree, run, clock
    run.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run.task


async def test_reads_values_and_counts_every_bad_read(
    tree_and_run: tuple[W1Tree, Run, ManualClock],
) -> None:
    _, run, _ = tree_and_run
    await run.round_done(0)
    assert run.temps("s-4cff") == [-18.5]
    assert run.temps("s-6bbb") == [85.0], "power-on value passes; the normaliser flags it"
    assert run.temps("s-d2e3") == [-127.0]
    assert run.temps("s-7ccc") == [-20.0]
    by_reason = {r.reason: r for r in run.rejects()}
    assert set(by_reason) == {"crc", "thermocouple_fault", "read_error"}
    crc = by_reason["crc"]
    assert crc.dead_letter and crc.topic == f"{BAD_CRC}/w1_slave"
    assert b"NO\n" in crc.raw, "the file's text is kept"
    assert "open circuit" in by_reason["thermocouple_fault"].detail
    stats = run.driver.stats()
    assert stats["rejects.crc"] == stats["rejects.read_error"] == 1
    assert stats[f"device.{BAD_CRC}.errors"] == 1
    assert stats[f"device.{GOOD}.ok"] == 1


async def test_a_device_that_disappears_is_counted_and_comes_back(
    tree_and_run: tuple[W1Tree, Run, ManualClock],
) -> None:
    tree, run, clock = tree_and_run
    await run.round_done(0)
    tree.remove(GONE)
    for cycle in (1, 2):
        clock.advance(10)
        await run.round_done(cycle)
    stats = run.driver.stats()
    assert stats[f"device.{GONE}.missing"] == 2
    assert stats[f"device.{GONE}.present"] == 0
    assert run.temps("s-7ccc") == [-20.0]
    assert len(run.temps("s-4cff")) == 3, "the others keep their schedule"
    tree.restore(GONE)
    tree.set_temp(GONE, -19.0)
    clock.advance(10)
    await run.round_done(3)
    assert run.temps("s-7ccc") == [-20.0, -19.0]
    assert run.driver.stats()[f"device.{GONE}.present"] == 1


async def test_the_temperature_file_is_read_when_configured(tmp_path: Path) -> None:
    tree = W1Tree(tmp_path)
    tree.add(GOOD, -18.5)
    config = OneWireDriverConfig(
        name="w1", sysfs_root=tree.sysfs_root, file="temperature", sensors={GOOD: "a"}
    )
    run = Run(OneWireDriver(config, ManualClock()))
    try:
        await run.round_done(0)
        assert run.temps("a") == [-18.5]
    finally:
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task


async def test_no_w1_bus_is_a_disconnect_that_names_the_overlay(tmp_path: Path) -> None:
    config = OneWireDriverConfig(name="w1", sysfs_root=str(tmp_path / "nope"), sensors={GOOD: "a"})
    with pytest.raises(DriverDisconnected, match="dtoverlay=w1-gpio"):
        async for _ in OneWireDriver(config, ManualClock()).deliveries():
            pass


def test_config_checks_device_ids_and_double_claims() -> None:
    with pytest.raises(ValidationError, match="not a w1 device id"):
        OneWireDriverConfig(name="w1", sensors={"28-XYZ": "a"})
    with pytest.raises(ValidationError, match="family 01 is not a thermometer"):
        OneWireDriverConfig(name="w1", sensors={"01-0316a2794cff": "a"})
    doc = {
        "hub": {"id": "h"},
        "zones": [{"id": "z", "kind": "cold_storage"}],
        "sensors": [{"id": "a", "zone": "z"}, {"id": "b", "zone": "z"}],
        "drivers": {
            "onewire": [
                {"name": "w1", "sensors": {GOOD: "a"}},
                {"name": "w2", "sensors": {GOOD: "b"}},
            ]
        },
    }
    with pytest.raises(ValidationError, match=f"w1:/sys/bus/w1/devices/{GOOD} is already used"):
        GatewayConfig.model_validate(doc)
