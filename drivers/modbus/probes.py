"""Ready point maps of common cheap RS-485 temperature/humidity transmitters.

``probe = "<name>"`` on a ``[[drivers.modbus.devices]]`` entry expands to these points for
the device's ``sensor``. Each map is taken from the maker's published register table
(sources in drivers/modbus/README.md and next to each entry); the values in
tests/drivers/modbus/test_probes.py are the worked examples those tables give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.modbus.points import ModbusPoint


@dataclass(frozen=True, slots=True)
class ProbeMap:
    """A transmitter model: its serial defaults and its points (without a sensor id)."""

    title: str
    source: str
    baudrate: int
    parity: str
    points: tuple[dict[str, Any], ...]


PROBES: dict[str, ProbeMap] = {
    # XY-MD02 (SHT20 inside): FC 04, input register 1 = temperature, 2 = humidity, both
    # x10; temperature is signed (0xFF33 = -20.5 °C). Default 9600 8N1, slave 1.
    "xy_md02": ProbeMap(
        title="XY-MD02 SHT20 transmitter",
        source="XY-MD02 manual (e.g. https://qariya.net/en/product/sht-20-temperature-humidity-sensor-modbus-rs485-high-precision)",
        baudrate=9600,
        parity="N",
        points=(
            {"kind": "temp", "register": "input", "address": 1, "type": "int16", "scale": 0.1},
            {"kind": "rh", "register": "input", "address": 2, "type": "uint16", "scale": 0.1},
        ),
    ),
    # SHT20 transmitters with registers from 0 (e.g. YTL-SHT20-RS485): FC 03/04, register
    # 0 = temperature (signed, x10), 1 = humidity (x10). Default 9600 8N1, slave 1.
    "sht20_r0": ProbeMap(
        title="SHT20 transmitter, registers from 0 (YTL-SHT20-RS485 and clones)",
        source="https://www.intelmanuf.cn/en/second_menu/英特隆RS485温湿度传感器使用说明书en.HTML",
        baudrate=9600,
        parity="N",
        points=(
            {"kind": "temp", "register": "holding", "address": 0, "type": "int16", "scale": 0.1},
            {"kind": "rh", "register": "holding", "address": 1, "type": "uint16", "scale": 0.1},
        ),
    ),
    # SHT30 DIN-rail transmitter (KinCony and clones): input registers 2-3 = temperature and
    # 4-5 = humidity as 32-bit floats. Its register 0 encodes negatives as 10000 + |t|*10,
    # which no standard type reads right, so the float registers are used.
    "sht30_din_float": ProbeMap(
        title="SHT30 DIN-rail transmitter, float registers (KinCony and clones)",
        source="https://shop.kincony.com/products/rs485-temperature-and-humidity-sensor-modbus-rtu-use-by-sht30",
        baudrate=9600,
        parity="N",
        points=(
            {"kind": "temp", "register": "input", "address": 2, "type": "float32"},
            {"kind": "rh", "register": "input", "address": 4, "type": "float32"},
        ),
    ),
}


def probe_points(name: str, sensor: str) -> list[ModbusPoint]:
    """The points of a ready map, all for ``sensor``."""
    return [ModbusPoint(sensor=sensor, **p) for p in PROBES[name].points]
