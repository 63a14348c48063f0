"""Simulated Modbus transmitters: pymodbus' own server answering for several slaves.

The server is the real protocol implementation (pymodbus ``ModbusSerialServer`` on one
end of a pty pair, or ``ModbusTcpServer`` on loopback); this module only decides what
the registers hold and what a broken bus looks like:

- each slave's registers hold its current readings, encoded exactly as its point map
  says (scale, sign, word and byte order), refreshed on every read;
- a slave can be switched off (it stays silent, as a dead RS-485 slave does), asked to
  answer with an exception code, or to send one corrupted frame;
- ``line_baud`` makes each answer wait the time request and answer take on a real
  RS-485 line at that rate (a pty has no baud rate), plus a turnaround time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.modbus.points import ModbusPoint
from drivers.modbus.probes import probe_points
from drivers.modbus.registers import encode_value
from firmware_sim.thermal import Probe, zone_from_name

_FC_HOLDING = 3
_FC_INPUT = 4


@dataclass
class SlaveSim:
    """One transmitter: its id, its point map and what it measures now.

    ``values`` maps a point's kind (``temp``, ``rh``, ``battery``) to the value it
    reports; ``read`` (if given) is called on each request instead, so a thermal model
    can drive it.
    """

    slave: int
    points: Sequence[ModbusPoint]
    values: dict[str, float] = field(default_factory=dict)
    read: Callable[[], Mapping[str, float]] | None = None
    powered: bool = True
    exception_code: int = 0  # answer every read with this Modbus exception (0: none)
    corrupt_next: int = 0  # corrupt this many of the next answers
    requests: int = 0
    probe: str | None = None  # the ready map it was made from, if any

    @classmethod
    def of_probe(cls, slave: int, probe: str, **values: float) -> SlaveSim:
        """A transmitter of a ready point map (drivers/modbus/probes.py)."""
        points = probe_points(probe, sensor=f"sim-{slave}")
        return cls(slave, points, values=dict(values), probe=probe)

    def current(self) -> Mapping[str, float]:
        """The readings it reports now."""
        return self.read() if self.read is not None else self.values

    def span(self, register: str) -> int:
        """Registers 0..span-1 of this type exist on the device."""
        ends = [p.address + p.words for p in self.points if p.table == register]
        return max(ends, default=0)


def char_bits(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Bits on the wire per byte: start + data + parity + stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def rtu_exchange_s(count: int, baud: int, bits: int = 10) -> float:
    """Wire time of one read request and its answer at ``baud``, with the 3.5-char gaps.

    Request: 8 bytes (id, fc, address, count, CRC); answer: 5 + 2*count bytes. Above
    19200 baud the spec fixes the inter-frame gap at 1.75 ms.
    """
    char_s = bits / baud
    gap = 0.00175 if baud > 19200 else 3.5 * char_s
    return (8 + 5 + 2 * count) * char_s + 2 * gap


class ModbusBusSim:
    """Several slaves behind one pymodbus server (serial or TCP)."""

    def __init__(
        self,
        slaves: Sequence[SlaveSim],
        *,
        line_baud: int | None = None,
        turnaround_s: float = 0.0,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
    ) -> None:
        self.slaves = {s.slave: s for s in slaves}
        self.line_baud = line_baud
        self.turnaround_s = turnaround_s
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._framer_socket = False

    def _devices(self) -> list[Any]:
        from pymodbus.simulator import DataType, SimData, SimDevice

        devices = []
        for s in self.slaves.values():
            bits = [SimData(0, values=False, datatype=DataType.BITS)]
            blocks = []
            for register in ("holding", "input"):
                span = s.span(register)
                blocks.append(
                    [SimData(0, count=span, values=0, datatype=DataType.REGISTERS)]
                    if span
                    else [SimData(0, datatype=DataType.INVALID)]
                )
            devices.append(
                SimDevice(
                    s.slave,
                    simdata=(bits, list(bits), blocks[0], blocks[1]),
                    action=functools.partial(self._on_read, s.slave),
                )
            )
        return devices

    async def _on_read(
        self,
        slave_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        """pymodbus calls this before it answers: fill in the live values, wait the wire."""
        del address, set_values
        slave = self.slaves[slave_id]
        slave.requests += 1
        if self.line_baud:
            bits = char_bits(self.bytesize, self.parity, self.stopbits)
            await asyncio.sleep(rtu_exchange_s(count, self.line_baud, bits) + self.turnaround_s)
        elif self.turnaround_s:
            await asyncio.sleep(self.turnaround_s)
        if slave.exception_code:
            from pymodbus.constants import ExcCodes

            return ExcCodes(slave.exception_code)
        register = "holding" if function_code == _FC_HOLDING else "input"
        now = slave.current()
        for p in slave.points:
            if p.table != register or p.kind not in now:
                continue
            for i, word in enumerate(encode_value(p, now[p.kind])):
                at = p.address + i - start_address
                if 0 <= at < len(registers):
                    registers[at] = word
        return None

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        """Server-side wire hook: silence switched-off and unknown slaves, corrupt frames."""
        if not sending or not data:
            return data
        unit = data[6] if self._framer_socket else data[0]
        slave = self.slaves.get(unit)
        if slave is None or not slave.powered:
            return b""  # nobody home: a real RS-485 line stays silent
        if slave.corrupt_next:
            slave.corrupt_next -= 1
            if self._framer_socket:
                return data[:7] + bytes([data[7] ^ 0x40]) + data[8:]
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # break the CRC
        return data

    async def start_serial(self, port: str, baudrate: int = 9600) -> None:
        """Serve RTU on ``port`` (one end of a pty pair)."""
        from pymodbus.server import ModbusSerialServer

        self._server = ModbusSerialServer(
            self._devices(),
            port=port,
            baudrate=baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            ignore_missing_devices=True,
            trace_packet=self._on_packet,
        )
        await self._serve()

    async def start_tcp(self, host: str, port: int, framer: str = "socket") -> None:
        """Serve Modbus TCP (MBAP) or RTU-over-TCP on ``host:port``."""
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusTcpServer

        self._framer_socket = framer == "socket"
        self._server = ModbusTcpServer(
            self._devices(),
            address=(host, port),
            framer=FramerType.SOCKET if self._framer_socket else FramerType.RTU,
            ignore_missing_devices=True,
            trace_packet=self._on_packet,
        )
        await self._serve()

    async def _serve(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


class PtyPair:
    """Two ptys joined back to back by Debian's socat: a null-modem cable in software.

    ``a`` and ``b`` are stable symlinks to the two ``/dev/pts/N`` ends.
    """

    def __init__(self, directory: Path | None = None) -> None:
        if shutil.which("socat") is None:
            msg = "socat is not installed (apt-get install socat)"
            raise RuntimeError(msg)
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="ccmodbus-")
        base = directory or Path(self._tmp.name if self._tmp else ".")
        self.a = str(base / "bus-a")
        self.b = str(base / "bus-b")
        self._proc = subprocess.Popen(
            [
                "socat",
                f"pty,raw,echo=0,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (Path(self.a).exists() and Path(self.b).exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                msg = "socat did not create the pty pair"
                raise RuntimeError(msg)
            time.sleep(0.01)

    def close(self) -> None:
        """Stop socat (both ends see a hang-up) and remove the links."""
        if self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThermalReader:
    """Readings from a thermal model, stepped by the wall time between two reads."""

    def __init__(self, probe: Probe, rh: float, speed: float = 1.0) -> None:
        self.probe = probe
        self.rh = rh
        self.speed = speed
        self._last = time.monotonic()

    def __call__(self) -> Mapping[str, float]:
        now = time.monotonic()
        self.probe.zone.step((now - self._last) * self.speed)
        self._last = now
        return {"temp": round(self.probe.read_c(), 1), "rh": self.rh}


MODELS = ("xy_md02", "sht20_r0", "sht30_din_float")


def default_cold_room(
    slaves: int = 3, seed: int = 0, speed: float = 1.0, compressor_fails_at_s: float | None = None
) -> Iterator[SlaveSim]:
    """A cold room and freezers: XY-MD02 at 1 (cold room), SHT20 at 2 and SHT30 float at 3
    (freezers), then the same again, each on its own seeded thermal model."""
    for i in range(slaves):
        kind = "cold_room" if i % 3 == 0 else "freezer"
        zone = zone_from_name(kind, seed + i, compressor_fails_at_s)
        reader = ThermalReader(
            Probe(zone, seed=seed * 1000 + i), rh=60.0 - 5 * (i % 3), speed=speed
        )
        sim = SlaveSim.of_probe(i + 1, MODELS[i % 3])
        sim.read = reader
        yield sim
