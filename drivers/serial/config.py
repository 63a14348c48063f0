"""Config block of the serial sensor-board driver: ``[[drivers.serial]]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from drivers.base import DriverConfig


class SerialDriverConfig(DriverConfig):
    """One multi-probe sensor board on one tty."""

    port: str = Field(description="tty path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(default=115200, gt=0)
    parity: Literal["N", "E", "O"] = Field(default="N", description="N none, E even, O odd")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    board: str | None = Field(
        default=None, description="expected board id; lines from another board are rejected"
    )
    probes: dict[str, str] = Field(
        description="probe channel on the board -> sensor id in [[sensors]]", min_length=1
    )
    max_line_bytes: int = Field(default=256, ge=32, le=4096)

    @property
    def line_settings(self) -> tuple[int, int, str, int]:
        """(baudrate, bytesize, parity, stopbits): what a port is opened with."""
        return (self.baudrate, self.bytesize, self.parity, self.stopbits)

    def sensor_refs(self) -> Iterator[tuple[str, str]]:
        """Each probe channel's sensor."""
        for channel, sensor in self.probes.items():
            yield f"probes.{channel}", sensor

    def resources(self) -> Iterator[str]:
        """The tty: one driver per port (each board needs its own)."""
        yield f"tty:{self.port}"
