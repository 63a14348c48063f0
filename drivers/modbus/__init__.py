"""Modbus RTU (RS-485) and Modbus TCP transmitters, polled with pymodbus' asyncio client."""

from __future__ import annotations

from drivers.base import Driver, DriverSpec
from drivers.modbus.config import ModbusDriverConfig
from gateway.core.clock import Clock


def _create(config: ModbusDriverConfig, clock: Clock) -> Driver:
    from drivers.modbus.driver import ModbusDriver  # lazy: pymodbus loads only to run

    return ModbusDriver(config, clock)


SPEC = DriverSpec(
    config=ModbusDriverConfig, create=_create, summary="Modbus RTU/TCP slaves, polled"
)
