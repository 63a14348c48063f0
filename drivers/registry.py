"""The one place that names the input drivers: name -> :class:`~drivers.base.DriverSpec`.

Name = folder = config table (``[[drivers.<name>]]``). Adding a driver is its folder
plus one line here; ``gateway.config`` builds its ``[drivers]`` tables from this mapping
and tests/test_registry.py checks each entry (folder, README with the config block).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from drivers import modbus, mqtt, onewire, serial
from drivers.base import DriverSpec

REGISTRY: Mapping[str, DriverSpec[Any]] = MappingProxyType(
    {
        "serial": serial.SPEC,
        "mqtt": mqtt.SPEC,
        "modbus": modbus.SPEC,
        "onewire": onewire.SPEC,
    }
)
