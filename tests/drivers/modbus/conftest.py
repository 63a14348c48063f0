"""Fixtures: a socat pty pair with pymodbus' own server on one end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from drivers.modbus.config import ModbusDriverConfig
from drivers.modbus.driver import ModbusDriver
from firmware_sim.modbus_bus import PtyPair
from gateway.core.model import Delivery


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    """Two ptys joined by socat: the simulator opens ``a``, the gateway ``b``."""
    with PtyPair() as pair:
        yield pair


class Collector:
    """Runs a driver's deliveries() in a task and keeps what it yields."""

    def __init__(self, driver: ModbusDriver) -> None:
        self.driver = driver
        self.deliveries: list[Delivery] = []
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def _run(self) -> None:
        try:
            async for delivery in self.driver.deliveries():
                self.deliveries.append(delivery)
        except Exception as exc:  # the test inspects it
            self.error = exc

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def samples(self, sensor: str) -> list[Any]:
        return [s for d in self.deliveries for s in d.samples if s.sensor == sensor]

    def rejects(self) -> list[Any]:
        return [r for d in self.deliveries for r in d.rejects]

    async def next_idle(self, after_cycles: int, timeout: float = 20.0) -> None:
        """Wait until the driver finished the round due now and waits for the next one."""
        async with asyncio.timeout(timeout):
            while not (self.driver.idle.is_set() and self.driver.cycles > after_cycles):
                if self.error is not None:
                    raise self.error
                await asyncio.sleep(0.01)


@pytest.fixture
async def collect() -> AsyncIterator[Callable[[ModbusDriverConfig, Any], Collector]]:
    """Factory: a started collector for a driver built from a config and a clock."""
    made: list[Collector] = []

    def make(config: ModbusDriverConfig, clock: Any) -> Collector:
        c = Collector(ModbusDriver(config, clock))
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.stop()
