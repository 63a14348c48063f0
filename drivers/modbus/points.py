"""A Modbus point: which registers hold a value and how to turn them into it.

Its own module so the ready point maps (``probes``) and the config can both use it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RegisterType = Literal["holding", "input"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]
PointKind = Literal["temp", "rh", "battery"]

MAX_REGISTERS_PER_READ = 125  # Modbus application protocol v1.1b3, function codes 03/04

WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


class Strict(BaseModel):
    """Unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusPoint(Strict):
    """One value read from a device's registers: ``value = raw * scale + offset``.

    The register type is written ``register = "input"`` in the config (the field is
    ``table`` in Python: pydantic reserves the name ``register``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sensor: str = Field(min_length=1, description="sensor id in [[sensors]]")
    kind: PointKind = Field(default="temp", description="temp (°C), rh (%), battery (V)")
    table: RegisterType = Field(
        default="holding",
        alias="register",
        description="register = holding (function 03) or input (function 04)",
    )
    address: int = Field(ge=0, le=65535, description="0-based register address (PDU address)")
    type: DataType = "int16"
    word_order: Order = Field(
        default="big", description="32-bit types: big = high word first (ABCD), little = CDAB"
    )
    byte_order: Order = Field(
        default="big", description="within each register: big = as sent (AB), little = BA"
    )
    scale: float = 1.0
    offset: float = 0.0
    invalid: list[int] = Field(
        default_factory=list,
        description="raw values the device sends for 'no reading' (e.g. 32767): refused",
    )

    @property
    def words(self) -> int:
        """How many 16-bit registers the value spans."""
        return WORDS[self.type]
