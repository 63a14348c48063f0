"""Config block of the Modbus driver: ``[[drivers.modbus]]``, one block per bus.

A bus is one RS-485 line on one tty (Modbus RTU) or one TCP endpoint (Modbus TCP, or RTU
frames through a serial-to-Ethernet converter). Its devices (slaves) are polled in turn;
each device names the registers to read (``points``) or a ready point map (``probe``,
see :mod:`drivers.modbus.probes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from drivers.base import DriverConfig
from drivers.modbus.points import ModbusPoint, Strict
from drivers.modbus.probes import PROBES, probe_points


class ModbusDevice(Strict):
    """One slave on the bus: its id, how often to poll it, and what to read."""

    slave: int = Field(ge=1, le=247, description="Modbus slave id (unit id for TCP)")
    poll_interval_s: float = Field(default=10.0, ge=0.1, le=86_400)
    probe: str | None = Field(
        default=None, description="a ready point map (drivers/modbus/README.md), with sensor"
    )
    sensor: str | None = Field(default=None, description="sensor id for the probe's points")
    points: list[ModbusPoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_read(self) -> ModbusDevice:
        if self.probe is not None:
            if self.probe not in PROBES:
                known = ", ".join(sorted(PROBES))
                msg = f"unknown probe {self.probe!r} (known: {known})"
                raise ValueError(msg)
            if self.sensor is None:
                msg = f"probe {self.probe!r} needs sensor = <sensor id>"
                raise ValueError(msg)
        elif self.sensor is not None:
            msg = "sensor is only used with probe; give each point its own sensor"
            raise ValueError(msg)
        if self.probe is None and not self.points:
            msg = "give probe (a ready point map) or points"
            raise ValueError(msg)
        seen: set[tuple[str, str]] = set()
        by_sensor: dict[str, set[str]] = {}
        for p in self.all_points():
            if (p.sensor, p.kind) in seen:
                msg = f"sensor {p.sensor!r} has two {p.kind} points"
                raise ValueError(msg)
            seen.add((p.sensor, p.kind))
            by_sensor.setdefault(p.sensor, set()).add(p.kind)
        for sensor, kinds in by_sensor.items():
            if "temp" not in kinds:
                msg = f"sensor {sensor!r} has {'/'.join(sorted(kinds))} but no temp point"
                raise ValueError(msg)
        return self

    def all_points(self) -> list[ModbusPoint]:
        """The probe's points (for this device's sensor) followed by the explicit ones."""
        out: list[ModbusPoint] = []
        if self.probe is not None and self.sensor is not None:
            out.extend(probe_points(self.probe, self.sensor))
        out.extend(self.points)
        return out


class ModbusDriverConfig(DriverConfig):
    """One Modbus bus: an RS-485 line on a tty (RTU) or a TCP endpoint, and its slaves."""

    transport: Literal["rtu", "tcp"] = "rtu"
    port: str | None = Field(default=None, description="rtu: tty path, best /dev/serial/by-id/...")
    host: str | None = Field(default=None, description="tcp: host name or address")
    tcp_port: int = Field(default=502, ge=1, le=65535)
    framer: Literal["auto", "rtu", "socket"] = Field(
        default="auto",
        description="auto: rtu on a tty, socket (MBAP) on tcp; rtu on tcp for RS-485"
        " converters that pass RTU frames through unchanged",
    )
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(
        default=0.5, ge=0.02, le=10, description="wait this long for a slave's answer"
    )
    gap_ms: float = Field(
        default=10.0, ge=0, le=5000, description="silence between two requests on the bus"
    )
    local_echo: bool = Field(
        default=False, description="the RS-485 adapter echoes what it sends (2-wire, no auto RX)"
    )
    devices: list[ModbusDevice] = Field(min_length=1)

    @model_validator(mode="after")
    def _endpoint(self) -> ModbusDriverConfig:
        if self.transport == "rtu" and not self.port:
            msg = 'transport = "rtu" needs port (the tty of the RS-485 adapter)'
            raise ValueError(msg)
        if self.transport == "tcp" and not self.host:
            msg = 'transport = "tcp" needs host'
            raise ValueError(msg)
        if self.transport == "rtu" and self.framer == "socket":
            msg = 'framer = "socket" (MBAP) exists only on tcp'
            raise ValueError(msg)
        slaves = [d.slave for d in self.devices]
        dup = sorted({s for s in slaves if slaves.count(s) > 1})
        if dup:
            msg = f"slave id {dup[0]} appears twice on one bus (each device needs its own id)"
            raise ValueError(msg)
        return self

    @property
    def effective_framer(self) -> Literal["rtu", "socket"]:
        """The framing on the wire."""
        if self.framer != "auto":
            return self.framer
        return "rtu" if self.transport == "rtu" else "socket"

    @property
    def endpoint(self) -> str:
        """Where the bus is, for logs and messages."""
        if self.transport == "rtu":
            return str(self.port)
        return f"{self.host}:{self.tcp_port}"

    def sensor_refs(self) -> Iterator[tuple[str, str]]:
        """Every point's sensor (and each probe's)."""
        for i, device in enumerate(self.devices):
            if device.sensor is not None:
                yield f"devices[{i}].sensor", device.sensor
            for j, point in enumerate(device.points):
                yield f"devices[{i}].points[{j}].sensor", point.sensor

    def resources(self) -> Iterator[str]:
        """RTU: the tty (one master per RS-485 line; a serial driver on it is refused too).

        TCP: each unit behind the endpoint, so two blocks cannot poll (and store) one
        device twice; two buses on one TCP gateway with different units are fine.
        """
        if self.transport == "rtu" and self.port:
            yield f"tty:{self.port}"
        elif self.transport == "tcp":
            for d in self.devices:
                yield f"modbus-tcp:{self.host}:{self.tcp_port}:{d.slave}"
