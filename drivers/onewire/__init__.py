"""DS18B20 / DS1822 / MAX31850 thermometers on a Linux w1 bus (sysfs), e.g. a Pi's GPIO 4."""

from __future__ import annotations

from drivers.base import Driver, DriverSpec
from drivers.onewire.config import OneWireDriverConfig
from gateway.core.clock import Clock


def _create(config: OneWireDriverConfig, clock: Clock) -> Driver:
    from drivers.onewire.driver import OneWireDriver  # lazy, as every driver

    return OneWireDriver(config, clock)


SPEC = DriverSpec(
    config=OneWireDriverConfig, create=_create, summary="DS18B20-family probes on a w1 bus"
)
