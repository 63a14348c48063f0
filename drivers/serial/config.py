"""Config block of the serial sensor-board driver: ``[[drivers.serial]]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SerialDriverConfig(BaseModel):
    """One multi-probe sensor board on one tty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="instance name, unique")
    port: str = Field(description="tty path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(default=115200, gt=0)
    board: str | None = Field(
        default=None, description="expected board id; lines from another board are rejected"
    )
    probes: dict[str, str] = Field(
        description="probe channel on the board -> sensor id in [[sensors]]", min_length=1
    )
    max_line_bytes: int = Field(default=256, ge=32, le=4096)
