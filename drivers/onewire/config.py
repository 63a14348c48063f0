"""Config block of the 1-Wire driver: ``[[drivers.onewire]]``, one block per w1 bus tree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator

from drivers.base import DriverConfig

# Family codes (first two hex digits of the device id) of the temperature devices the
# kernel's w1_therm driver serves and this driver reads.
FAMILIES = {"28": "DS18B20", "22": "DS1822", "3b": "MAX31850", "10": "DS18S20", "42": "DS28EA00"}
DEVICE_ID = r"^[0-9a-f]{2}-[0-9a-f]{12}$"


class OneWireDriverConfig(DriverConfig):
    """Temperature probes on a Linux w1 bus, read from sysfs in a worker thread."""

    sysfs_root: str = Field(
        default="/sys/bus/w1/devices", description="where the kernel lists w1 devices"
    )
    file: Literal["w1_slave", "temperature"] = Field(
        default="w1_slave",
        description="w1_slave carries the scratchpad and its CRC verdict (recommended);"
        " temperature (kernel 5.10+) is the value only, without a CRC check",
    )
    poll_interval_s: float = Field(default=10.0, ge=1.0, le=86_400)
    sensors: dict[str, str] = Field(
        min_length=1, description="w1 device id (e.g. 28-0316a2794cff) -> sensor id"
    )

    @field_validator("sensors")
    @classmethod
    def _device_ids(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for device in value:
            if not re.fullmatch(DEVICE_ID, device):
                msg = f"{device!r} is not a w1 device id (family-serial, e.g. 28-0316a2794cff)"
                raise ValueError(msg)
            if device[:2] not in FAMILIES:
                known = ", ".join(f"{k} {v}" for k, v in FAMILIES.items())
                msg = f"{device}: family {device[:2]} is not a thermometer ({known})"
                raise ValueError(msg)
        return value

    def sensor_refs(self) -> Iterator[tuple[str, str]]:
        """Each device's sensor."""
        for device, sensor in self.sensors.items():
            yield f"sensors.{device}", sensor

    def resources(self) -> Iterator[str]:
        """Each probe: two blocks reading one device would store every reading twice."""
        for device in self.sensors:
            yield f"w1:{self.sysfs_root.rstrip('/')}/{device}"
