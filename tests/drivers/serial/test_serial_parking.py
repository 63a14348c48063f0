"""A serial port parked across a reload keeps what the board sends meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from drivers.ports import close_parked_ports
from drivers.serial.config import SerialDriverConfig
from drivers.serial.driver import SerialDriver
from firmware_sim.board import SensorBoardSim
from gateway.core.clock import SystemClock
from gateway.core.metrics import Counters
from gateway.core.model import Delivery
from gateway.runtime.reconnect import supervise

pytestmark = pytest.mark.integration

PROBES = {"1": "p1", "2": "p2"}


class CountingIngest:
    """Stands in for Ingest.submit: counts samples."""

    def __init__(self) -> None:
        self.samples = 0

    async def submit(self, driver: str, delivery: Delivery) -> None:
        self.samples += len(delivery.samples)


async def _run_driver(port: str, park: bool, while_running: float) -> int:
    driver = SerialDriver(
        SerialDriverConfig(name="b", port=port, board="A1", probes=PROBES), SystemClock()
    )
    ingest = CountingIngest()
    stop = asyncio.Event()
    task = asyncio.create_task(
        supervise(driver, ingest, Counters(), SystemClock(), stop=stop)  # type: ignore[arg-type]
    )
    async with asyncio.timeout(5):
        await driver.connected.wait()
    await asyncio.sleep(while_running)
    driver.park_on_close = park
    stop.set()
    await task
    return ingest.samples


@pytest.mark.parametrize("replugged", [False, True], ids=["port-alive", "port-died-while-parked"])
async def test_lines_sent_while_parked_reach_the_next_driver(replugged: bool) -> None:
    with SensorBoardSim(2, board="A1") as board:
        try:
            first = asyncio.create_task(_run_driver(str(board.link_path), True, 0.3))
            await asyncio.sleep(0.1)
            await board.send_lines(20)
            assert await first == 20
            await board.send_lines(40)  # nobody reads: the parked transport buffers it
            await asyncio.sleep(0.2)
            if replugged:  # a USB glitch while parked: the reader holds data and an error
                board.unplug()
                await asyncio.sleep(0.1)
                board.plug()
            assert await _run_driver(str(board.link_path), False, 0.5) == 40
        finally:
            close_parked_ports()
