"""Serial multi-probe sensor boards over a tty (pyserial)."""

from __future__ import annotations

from drivers.base import Driver, DriverSpec
from drivers.serial.config import SerialDriverConfig
from gateway.core.clock import Clock


def _create(config: SerialDriverConfig, clock: Clock) -> Driver:
    from drivers.serial.driver import SerialDriver  # lazy: see drivers.base

    return SerialDriver(config, clock)


SPEC = DriverSpec(config=SerialDriverConfig, create=_create, summary="multi-probe boards on a tty")
