"""Input drivers. The registry below is the one place that names them.

Driver name = folder name = config table name (``[[drivers.<name>]]``); a test checks
that the registry and gateway.config.DriversConfig agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.mqtt.driver import MqttDriver
from drivers.serial.driver import SerialDriver

REGISTRY: dict[str, Callable[..., Any]] = {
    "serial": SerialDriver,
    "mqtt": MqttDriver,
}
