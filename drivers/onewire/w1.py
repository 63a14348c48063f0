"""Reading the Linux w1 sysfs files of DS18B20-family thermometers and the MAX31850.

The kernel's w1_therm driver (drivers/w1/slaves/w1_therm.c) writes ``w1_slave`` as two
lines, the nine scratchpad bytes each time::

    73 01 4b 46 7f ff 0d 10 41 : crc=41 YES
    73 01 4b 46 7f ff 0d 10 41 t=23187

The first line is what it just read and whether its CRC-8 matched; the second starts
with the last scratchpad that did match and ends with ``t=`` computed from the new read
(so after ``NO`` the ``t=`` value is garbage). A failed conversion gives an empty read.
``temperature`` holds only the millidegrees, computed without any CRC check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE1 = re.compile(r"((?:[0-9a-f]{2} ){9}): crc=([0-9a-f]{2}) (YES|NO)")
_LINE2 = re.compile(r"((?:[0-9a-f]{2} ){9})t=(-?\d+)")
_MAX31850_FAULTS = {1: "open circuit", 2: "short to GND", 4: "short to VDD"}


class W1Error(ValueError):
    """A w1 read that gives no trustworthy temperature; ``reason`` is its counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim CRC-8 (poly x^8+x^5+x^4+1, reflected 0x8C), as the DS18B20 sends it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


@dataclass(frozen=True, slots=True)
class W1Reading:
    """A temperature read from one device."""

    temp_c: float
    scratchpad: bytes


def parse_w1_slave(text: str, family: str) -> W1Reading:
    """Decode a ``w1_slave`` file; raises W1Error with the reason to count."""
    if not text.strip():
        raise W1Error("read_error", "empty read: the conversion failed (bus error, no power)")
    lines = text.strip().splitlines()
    m1 = _LINE1.fullmatch(lines[0].strip())
    m2 = _LINE2.fullmatch(lines[1].strip()) if len(lines) == 2 else None
    if m1 is None or m2 is None:
        raise W1Error("bad_format", "not the kernel's w1_slave format")
    scratchpad = bytes.fromhex(m1.group(1))
    if m1.group(3) != "YES":
        raise W1Error("crc", f"CRC check failed (crc={m1.group(2)} NO): noise on the bus")
    if not any(scratchpad):
        raise W1Error("bad_value", "all-zero scratchpad: data line shorted to GND?")
    if family == "3b":
        return W1Reading(max31850_temp(scratchpad), scratchpad)
    return W1Reading(int(m2.group(2)) / 1000, scratchpad)


def max31850_temp(scratchpad: bytes) -> float:
    """MAX31850 thermocouple temperature (14-bit, 0.25 °C); its fault bits raise W1Error.

    Byte 0 bit 0 is the fault flag and byte 2 bits 0-2 say which; the kernel's ``t=``
    treats these bits as temperature, so the value is computed from the bytes here.
    """
    word = int.from_bytes(scratchpad[0:2], "little", signed=True)
    if word & 1:
        fault = _MAX31850_FAULTS.get(scratchpad[2] & 0x07, f"fault bits {scratchpad[2] & 7:03b}")
        raise W1Error("thermocouple_fault", f"MAX31850 reports a thermocouple fault: {fault}")
    return (word >> 2) * 0.25


def parse_temperature(text: str) -> float:
    """Decode a ``temperature`` file (millidegrees)."""
    value = text.strip()
    if not value:
        raise W1Error("read_error", "empty read: the conversion failed (bus error, no power)")
    if not re.fullmatch(r"-?\d+", value):
        raise W1Error("bad_format", "not a millidegree integer")
    return int(value) / 1000


def render_w1_slave(scratchpad: bytes, t_milli: int, *, crc_ok: bool | None = None) -> str:
    """The text the kernel writes for this scratchpad (tests and the simulator use it).

    ``crc_ok`` None: the verdict follows the bytes' own CRC, as in the kernel.
    """
    hexes = " ".join(f"{b:02x}" for b in scratchpad) + " "
    crc = crc8_maxim(scratchpad[:8])
    ok = crc == scratchpad[8] if crc_ok is None else crc_ok
    return f"{hexes}: crc={crc:02x} {'YES' if ok else 'NO'}\n{hexes}t={t_milli}\n"


def kernel_millidegrees(scratchpad: bytes) -> int:
    """``t=`` as w1_DS18B20_convert_temp computes it: ``(s16)word * 1000 / 16`` in C.

    C division truncates toward zero (raw -1 gives -62, not -63).
    """
    word = int.from_bytes(scratchpad[0:2], "little", signed=True)
    return int(word * 1000 / 16)


def ds18b20_scratchpad(temp_c: float, config: int = 0x7F) -> bytes:
    """A DS18B20 scratchpad holding ``temp_c`` (12-bit), with a valid CRC."""
    raw = round(temp_c * 16) & 0xFFFF
    body = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, config, 0xFF, 0x0C, 0x10])
    return body + bytes([crc8_maxim(body)])
