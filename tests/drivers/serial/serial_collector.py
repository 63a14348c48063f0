"""A collector that runs a SerialDriver like the gateway's supervisor (test helper)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

from drivers.serial.driver import SerialDriver
from gateway.core.errors import DriverDisconnected
from gateway.core.model import RawSample, Reject


class Collector:
    """Runs ``driver.deliveries()`` in a task, reconnecting like a tiny supervisor."""

    def __init__(self, driver: SerialDriver, retry_s: float = 0.01) -> None:
        self.driver = driver
        self.retry_s = retry_s
        self.samples: list[RawSample] = []
        self.rejects: list[Reject] = []
        self.deliveries = 0
        self.disconnects: list[DriverDisconnected] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def reject_reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejects)

    async def _run(self) -> None:
        while True:
            try:
                async for delivery in self.driver.deliveries():
                    self.samples.extend(delivery.samples)
                    self.rejects.extend(delivery.rejects)
                    self.deliveries += 1
                    delivery.ack()
                    self._changed.set()
            except DriverDisconnected as exc:
                self.disconnects.append(exc)
                self._changed.set()
                # Retry pace of this toy supervisor, not a wait for a condition.
                await asyncio.sleep(self.retry_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.driver.close()

    async def wait_for(self, condition: Callable[[], bool], within_s: float = 4.0) -> None:
        """Wait until ``condition()`` holds, re-checking after every delivery or disconnect."""
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_connected(self, within_s: float = 4.0) -> None:
        async with asyncio.timeout(within_s):
            await self.driver.connected.wait()
