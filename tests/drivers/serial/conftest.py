"""Fixtures for the serial driver tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from serial_collector import Collector

from drivers.serial.driver import SerialDriver


@pytest.fixture
async def collectors() -> AsyncIterator[Callable[[SerialDriver], Collector]]:
    """Factory of started collectors; all are stopped after the test."""
    made: list[Collector] = []

    def make(driver: SerialDriver) -> Collector:
        collector = Collector(driver)
        collector.start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        await collector.stop()
