"""A bounded scan of one RS-485 line (or TCP endpoint) for answering Modbus slaves.

Used by ``coldchain discover --modbus``. For each baud rate, every slave id in the range
gets one read of holding register 0: any frame back (values or an exception) means a
device with that id is there. A found slave is then tried against the ready point maps
(drivers/modbus/probes.py); a map whose reads succeed and whose values are plausible
(-40..85 °C, 0..100 %RH) is suggested. The scan costs at most
``len(bauds) * len(slaves) * timeout_s`` and stops after the first rate that answers
unless asked to try them all (slaves on one line share one rate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import drivers.modbus.driver  # noqa: F401  (its import quiets pymodbus' per-timeout log)
from drivers.modbus.points import ModbusPoint
from drivers.modbus.probes import PROBES, probe_points
from drivers.modbus.registers import BadValue, plan_blocks, point_value

PLAUSIBLE = {"temp": (-40.0, 85.0), "rh": (0.0, 100.0), "battery": (0.0, 60.0)}

Progress = Callable[[int, int, int, int], None]  # baud, done, total, found


@dataclass(slots=True)
class FoundSlave:
    """A slave that answered, and the ready map its registers fit (if any)."""

    slave: int
    baudrate: int
    probe: str | None = None
    readings: dict[str, float] = field(default_factory=dict)
    answered_with_exception: bool = False


def estimate_s(bauds: Sequence[int], slaves: Sequence[int], timeout_s: float) -> float:
    """The longest the scan can take (every id silent at every rate)."""
    return len(bauds) * len(slaves) * timeout_s


async def _read(client: Any, register: str, start: int, count: int, slave: int) -> Any:
    from pymodbus.exceptions import ModbusException

    read = client.read_holding_registers if register == "holding" else client.read_input_registers
    try:
        return await read(start, count=count, device_id=slave)
    except ModbusException:
        return None


async def identify(client: Any, slave: int) -> tuple[str | None, dict[str, float]]:
    """The first ready map whose points read plausibly on this slave."""
    for name in PROBES:
        points = probe_points(name, "probe")
        values = await _read_points(client, slave, points)
        if values is not None:
            return name, values
    return None, {}


async def _read_points(
    client: Any, slave: int, points: Sequence[ModbusPoint]
) -> dict[str, float] | None:
    values: dict[str, float] = {}
    for block in plan_blocks(points):
        response = await _read(client, block.register, block.start, block.count, slave)
        if response is None or response.isError():
            return None
        for p in block.points:
            try:
                v = point_value(p, block, list(response.registers))
            except BadValue:
                return None
            low, high = PLAUSIBLE[p.kind]
            if not low <= v <= high:
                return None
            values[p.kind] = v
    return values


async def scan_line(
    make_client: Callable[[int], Any],
    bauds: Sequence[int],
    slaves: Sequence[int],
    progress: Progress | None = None,
    all_bauds: bool = False,
) -> list[FoundSlave]:
    """Scan ``slaves`` at each rate in ``bauds``; ``make_client(baud)`` gives a client."""
    found: list[FoundSlave] = []
    for baud in bauds:
        client = make_client(baud)
        if not await client.connect():
            client.close()
            msg = f"cannot open the port at {baud} baud"
            raise OSError(msg)
        try:
            here: list[FoundSlave] = []
            for i, slave in enumerate(slaves):
                response = await _read(client, "holding", 0, 1, slave)
                if response is not None:
                    hit = FoundSlave(slave, baud, answered_with_exception=response.isError())
                    hit.probe, hit.readings = await identify(client, slave)
                    here.append(hit)
                if progress is not None:
                    progress(baud, i + 1, len(slaves), len(found) + len(here))
        finally:
            client.close()
        found.extend(here)
        if here and not all_bauds:
            break
    return found


def serial_client(port: str, parity: str, stopbits: int, timeout_s: float) -> Callable[[int], Any]:
    """A factory of scan clients on one tty, one per baud rate."""

    def make(baud: int) -> Any:
        from pymodbus.client import AsyncModbusSerialClient

        client = AsyncModbusSerialClient(
            port,
            baudrate=baud,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        client.set_max_no_responses(1 << 30)
        return client

    return make
