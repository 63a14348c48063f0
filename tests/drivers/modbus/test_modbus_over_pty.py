"""The Modbus driver against pymodbus' own server over a socat pty pair (and over TCP).

The poll schedule runs on a ManualClock: each ``advance(interval)`` makes every live
slave due exactly once, so "the others keep their poll rate" is a count, not a timing.
Timeouts are real (wire time), kept short.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from drivers.modbus.config import ModbusDriverConfig
from drivers.modbus.driver import rtu_crc_ok
from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, SlaveSim
from gateway.core.clock import ManualClock

pytestmark = pytest.mark.integration

INTERVAL = 10.0


def _slaves() -> list[SlaveSim]:
    freezer = SlaveSim.of_probe(3, "sht30_din_float", temp=-18.75, rh=41.5)
    # a second sensor on slave 3: a float32 sent low word first (CDAB)
    freezer.points = [
        *freezer.points,
        *ModbusDriverConfig.model_validate(_bus("x", [_cdab_device(3)])).devices[0].points,
    ]
    freezer.values["temp"] = -18.75
    return [
        SlaveSim.of_probe(1, "xy_md02", temp=3.5, rh=61.2),
        SlaveSim.of_probe(2, "sht20_r0", temp=-21.4, rh=55.0),
        freezer,
    ]


def _cdab_device(slave: int) -> dict[str, Any]:
    return {
        "slave": slave,
        "poll_interval_s": INTERVAL,
        "points": [
            {"sensor": "freezer-coil", "register": "holding", "address": 20,
             "type": "float32", "word_order": "little"},
        ],
    }  # fmt: skip


def _bus(port: str | None, devices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "bus1", "port": port, "timeout_s": 1.0, "gap_ms": 2, "devices": devices,
            **extra}  # fmt: skip


def _config(port: str | None, **extra: Any) -> ModbusDriverConfig:
    devices = [
        {"slave": 1, "probe": "xy_md02", "sensor": "room", "poll_interval_s": INTERVAL},
        {"slave": 2, "probe": "sht20_r0", "sensor": "freezer-1", "poll_interval_s": INTERVAL},
        {**_cdab_device(3), "probe": "sht30_din_float", "sensor": "freezer-2"},
    ]
    return ModbusDriverConfig.model_validate(_bus(port, devices, **extra))


async def test_three_slaves_land_with_scale_sign_and_word_order(
    pty_pair: PtyPair, collect: Any
) -> None:
    bus = ModbusBusSim(_slaves())
    await bus.start_serial(pty_pair.a)
    try:
        clock = ManualClock()
        c = collect(_config(pty_pair.b), clock)
        await c.next_idle(0)
        for sensor, temp, rh in [
            ("room", 3.5, 61.2),
            ("freezer-1", -21.4, 55.0),
            ("freezer-2", -18.75, 41.5),
            ("freezer-coil", -18.75, None),
        ]:
            (s,) = c.samples(sensor)
            assert (s.temp_c, s.rh, s.ts_ns) == (temp, rh, None), sensor
        assert c.samples("room")[0].source == "modbus:bus1:1"
        assert c.rejects() == []
    finally:
        await bus.stop()


async def test_a_dead_slave_costs_only_its_timeout_and_is_counted(
    pty_pair: PtyPair, collect: Any
) -> None:
    slaves = _slaves()
    bus = ModbusBusSim(slaves)
    await bus.start_serial(pty_pair.a)
    try:
        clock = ManualClock()
        c = collect(_config(pty_pair.b), clock)
        await c.next_idle(0)
        slaves[1].powered = False
        for round_ in range(1, 5):
            cycles = c.driver.cycles
            clock.advance(INTERVAL)
            await c.next_idle(cycles)
            assert len(c.samples("room")) == round_ + 1
            assert len(c.samples("freezer-2")) == round_ + 1
            assert len(c.samples("freezer-1")) == 1
        stats = c.driver.stats()
        assert stats["slave.2.timeouts"] == stats["slave.2.errors"] == 4
        assert stats["slave.2.online"] == 0
        assert stats["slave.1.overruns"] == stats["slave.3.overruns"] == 0
        assert stats["slave.1.errors"] == stats["slave.3.errors"] == 0
        assert stats["timeouts"] == 4
        assert c.rejects() == [], "silence is counted, not dead-lettered"

        slaves[1].powered = True
        cycles = c.driver.cycles
        clock.advance(INTERVAL)
        await c.next_idle(cycles)
        assert len(c.samples("freezer-1")) == 2
        assert c.driver.stats()["slave.2.online"] == 1
    finally:
        await bus.stop()


async def test_a_corrupted_frame_and_an_exception_are_counted_and_kept(
    pty_pair: PtyPair, collect: Any
) -> None:
    slaves = _slaves()
    bus = ModbusBusSim(slaves)
    await bus.start_serial(pty_pair.a)
    try:
        clock = ManualClock()
        slaves[0].corrupt_next = 1
        slaves[1].exception_code = 2
        c = collect(_config(pty_pair.b), clock)
        await c.next_idle(0)
        crc, exc = sorted(c.rejects(), key=lambda r: r.reason)
        assert (crc.reason, crc.source, crc.dead_letter) == ("crc", "modbus:bus1:1", True)
        assert crc.raw[:3] == bytes([1, 4, 4]), "slave 1, function 04, 4 bytes"
        assert len(crc.raw) == 9 and not rtu_crc_ok(crc.raw)
        assert crc.topic == "slave 1 input 1+2"
        assert exc.reason == "exception"
        assert exc.raw[:3] == bytes([2, 0x83, 2]) and rtu_crc_ok(exc.raw)
        assert "exception 2 (illegal data address)" in exc.detail
        assert c.samples("room") == [] and c.samples("freezer-1") == []
        stats = c.driver.stats()
        assert (stats["rejects.crc"], stats["rejects.exception"]) == (1, 1)
        assert stats["slave.1.errors"] == 1 and stats["slave.1.timeouts"] == 0

        slaves[1].exception_code = 0
        cycles = c.driver.cycles
        clock.advance(INTERVAL)
        await c.next_idle(cycles)
        assert len(c.samples("room")) == 1 and len(c.samples("freezer-1")) == 1
    finally:
        await bus.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("framer", ["socket", "rtu"])
async def test_modbus_tcp_goes_through_the_same_path(framer: str, collect: Any) -> None:
    slaves = _slaves()
    bus = ModbusBusSim(slaves)
    port = _free_port()
    await bus.start_tcp("127.0.0.1", port, framer=framer)
    try:
        clock = ManualClock()
        config = _config(None, transport="tcp", host="127.0.0.1", tcp_port=port, framer=framer)
        slaves[2].powered = False
        c = collect(config, clock)
        await c.next_idle(0)
        assert [s.temp_c for s in c.samples("freezer-1")] == [-21.4]
        assert c.samples("freezer-2") == []
        assert c.driver.stats()["slave.3.timeouts"] == 1
        cycles = c.driver.cycles
        clock.advance(INTERVAL)
        await c.next_idle(cycles)
        assert len(c.samples("room")) == 2, "a silent unit id does not drop the connection"
    finally:
        await bus.stop()


async def test_a_missing_port_is_a_disconnect_for_the_supervisor(collect: Any) -> None:
    from gateway.core.errors import DriverDisconnected

    c = collect(_config("/nonexistent/ttyUSB9"), ManualClock())
    assert c.task is not None
    await c.task
    assert isinstance(c.error, DriverDisconnected)
    assert "cannot open /nonexistent/ttyUSB9" in str(c.error)


async def test_an_unplugged_adapter_is_a_disconnect(collect: Any) -> None:
    from gateway.core.errors import DriverDisconnected

    pty = PtyPair()
    bus = ModbusBusSim(_slaves())
    await bus.start_serial(pty.a)
    try:
        clock = ManualClock()
        c = collect(_config(pty.b), clock)
        await c.next_idle(0)
        pty.close()  # socat ends: both ptys hang up, as a USB adapter pulled out
        clock.advance(INTERVAL)
        assert c.task is not None
        async with asyncio.timeout(10):
            await c.task
        assert isinstance(c.error, DriverDisconnected), c.error
        assert c.driver.stats()["disconnects"] == 1
    finally:
        await bus.stop()
        pty.close()


async def test_a_tcp_server_going_away_is_a_disconnect(collect: Any) -> None:
    from gateway.core.errors import DriverDisconnected

    bus = ModbusBusSim(_slaves())
    port = _free_port()
    await bus.start_tcp("127.0.0.1", port)
    clock = ManualClock()
    c = collect(_config(None, transport="tcp", host="127.0.0.1", tcp_port=port), clock)
    await c.next_idle(0)
    await bus.stop()  # the converter or PLC closes the connection
    clock.advance(INTERVAL)
    assert c.task is not None
    async with asyncio.timeout(10):
        await c.task
    assert isinstance(c.error, DriverDisconnected), c.error
