"""Register maths: which blocks to read, and how registers become values.

Pure functions, no I/O: the driver plans its reads once from the config and decodes
every answer here, so the tests can check scale, sign and word order without a bus.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.modbus.points import MAX_REGISTERS_PER_READ, ModbusPoint, RegisterType

_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


class BadValue(ValueError):
    """Registers that do not give a value we can trust (NaN, a 'no reading' code)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers of one type from ``start``."""

    register: RegisterType
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    @property
    def function_code(self) -> int:
        """03 read holding registers, 04 read input registers."""
        return 3 if self.register == "holding" else 4


def plan_blocks(points: Sequence[ModbusPoint]) -> list[Block]:
    """Group points into as few reads as possible without reading unmapped registers.

    Only adjacent or overlapping points share a read: many cheap transmitters answer a
    read that touches an unmapped register with exception 02 (illegal data address), so
    a gap is never bridged.
    """
    blocks: list[Block] = []
    for register in ("holding", "input"):
        mine = sorted((p for p in points if p.table == register), key=lambda p: p.address)
        start = end = -1
        members: list[ModbusPoint] = []
        for p in mine:
            p_end = p.address + p.words
            if members and p.address <= end and max(end, p_end) - start <= MAX_REGISTERS_PER_READ:
                end = max(end, p_end)
                members.append(p)
                continue
            if members:
                blocks.append(Block(register, start, end - start, tuple(members)))
            start, end, members = p.address, p_end, [p]
        if members:
            blocks.append(Block(register, start, end - start, tuple(members)))
    return blocks


def raw_value(
    registers: Sequence[int], type_: str, word_order: str, byte_order: str
) -> int | float:
    """The integer or float the registers hold, before scale and offset."""
    words = [r & 0xFFFF for r in registers]
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(_STRUCT[type_], data)[0]
    return value


def point_value(point: ModbusPoint, block: Block, registers: Sequence[int]) -> float:
    """The engineering value of one point from its block's registers.

    Raises BadValue for a value the device marks as invalid or a float that is not a
    number: such a value is refused, never stored as if it were a reading.
    """
    first = point.address - block.start
    regs = registers[first : first + point.words]
    if len(regs) != point.words:
        msg = f"short answer: {len(registers)} registers for {block.count}"
        raise BadValue(msg)
    raw = raw_value(regs, point.type, point.word_order, point.byte_order)
    if isinstance(raw, int) and raw in point.invalid:
        msg = f"{point.kind} raw {raw} is the device's 'no reading' value"
        raise BadValue(msg)
    if isinstance(raw, float) and not math.isfinite(raw):
        msg = f"{point.kind} float32 is {raw}"
        raise BadValue(msg)
    # round away binary noise (0.1 * -214 = -21.400000000000002); 6 decimals is far
    # below any transmitter's resolution
    return round(raw * point.scale + point.offset, 6)


def registers_bytes(registers: Sequence[int]) -> bytes:
    """Registers as the bytes they arrived as (for a dead letter)."""
    return b"".join((r & 0xFFFF).to_bytes(2, "big") for r in registers)


def encode_value(point: ModbusPoint, value: float) -> list[int]:
    """Registers a device would hold for ``value`` (the simulator's side of point_value)."""
    raw_f = (value - point.offset) / point.scale
    raw: int | float = raw_f if point.type == "float32" else round(raw_f)
    data = struct.pack(_STRUCT[point.type], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.word_order == "little":
        words.reverse()
    if point.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words
