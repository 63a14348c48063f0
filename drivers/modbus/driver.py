"""Modbus driver: polls the slaves of one bus in turn with pymodbus' asyncio client.

RTU on a tty and TCP (MBAP, or RTU frames through a converter) run the same code; only
the client differs. Each request waits at most ``timeout_s`` (no retries): a dead or
slow slave costs exactly its own timeout per poll, is counted under its id and marked
offline, and its sensors go stale in sensor health; the other slaves keep their
schedule. An answer that is not a register read (bad CRC, garbled, exception code) is
counted and dead-lettered with the bytes that came in.

The poll schedule runs on the injected clock; the timeout and the inter-request gap
are wire time and run on the event loop's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.modbus.config import ModbusDevice, ModbusDriverConfig
from drivers.modbus.registers import BadValue, Block, plan_blocks, point_value, registers_bytes
from gateway.core.clock import Clock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery, RawSample, Reject

log = logging.getLogger(__name__)

# Reject reasons (counter labels; keep them stable).
REASON_CRC = "crc"
REASON_EXCEPTION = "exception"
REASON_BAD_FRAME = "bad_frame"
REASON_BAD_VALUE = "bad_value"

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

# pymodbus logs every timeout at ERROR; this driver counts and reports each one itself
# (per slave, with an offline/online line on each change), so its own log stays quiet.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_crc_ok(frame: bytes) -> bool:
    """True when the last two bytes are the frame's CRC (low byte first)."""
    if len(frame) < 4:
        return False
    return crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little")


@dataclass(slots=True)
class SlaveState:
    """Schedule and counters of one slave."""

    device: ModbusDevice
    blocks: list[Block]
    due: float = 0.0
    online: bool = True
    ok: int = 0
    timeouts: int = 0
    errors: int = 0
    overruns: int = 0
    consecutive_failures: int = 0


@dataclass(slots=True)
class ModbusStats:
    """Counters of one bus, kept across reconnects."""

    connects: int = 0
    disconnects: int = 0
    polls: int = 0
    requests: int = 0
    responses: int = 0
    samples: int = 0
    timeouts: int = 0
    rejects: Counter[str] = field(default_factory=Counter)


class _Wire:
    """What went over the wire for the request in flight (pymodbus' trace_packet hook).

    pymodbus drops a frame whose CRC fails, or that it cannot decode, without telling the
    caller (the request then times out). The hook sees each received buffer, so the bytes
    can still be classified and kept.
    """

    def __init__(self) -> None:
        self.sent = b""
        self._rx: list[bytes] = []

    def trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent = data
            self._rx = []
        elif self._rx and data.startswith(self._rx[-1]):
            self._rx[-1] = data  # pymodbus passes its whole receive buffer each time
        else:
            self._rx.append(data)
        return data

    @property
    def received(self) -> bytes:
        return b"".join(self._rx)


class ModbusDriver:
    """The slaves of one RS-485 line or TCP endpoint, polled in turn."""

    def __init__(self, config: ModbusDriverConfig, clock: Clock) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._counts = ModbusStats()
        self._slaves = [SlaveState(d, plan_blocks(d.all_points())) for d in config.devices]
        self._client: Any = None
        self._wire = _Wire()
        self._source = f"modbus:{config.name}"
        # Set while connected; tests wait on it. ``cycles`` counts finished poll rounds.
        self.connected = asyncio.Event()
        self.cycles = 0
        self.idle = asyncio.Event()  # set while waiting for the next poll to be due

    def _make_client(self) -> Any:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        c = self.config
        framer = FramerType.RTU if c.effective_framer == "rtu" else FramerType.SOCKET
        # retries=0 and reconnect_delay=0: the poll loop decides what a silence costs,
        # and reconnecting is the supervisor's job (STYLE: drivers never retry).
        common: dict[str, Any] = {
            "framer": framer,
            "timeout": c.timeout_s,
            "retries": 0,
            "reconnect_delay": 0,
            "trace_packet": self._wire.trace,
            "name": c.name,
        }
        if c.transport == "rtu":
            client: Any = AsyncModbusSerialClient(
                str(c.port),
                baudrate=c.baudrate,
                parity=c.parity,
                stopbits=c.stopbits,
                bytesize=c.bytesize,
                handle_local_echo=c.local_echo,
                **common,
            )
        else:
            client = AsyncModbusTcpClient(str(c.host), port=c.tcp_port, **common)
        # A dead slave must not make pymodbus drop the connection (its default after
        # retries + 3 silent requests on TCP): silence is counted per slave here.
        client.set_max_no_responses(1 << 30)
        return client

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Connect, then poll each slave when due and yield its readings and rejects."""
        client = self._make_client()
        try:
            ok = await client.connect()
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            client.close()
            msg = f"{self.name}: cannot open {self.config.endpoint}: {exc}"
            raise DriverDisconnected(msg) from exc
        if not ok:
            client.close()
            msg = f"{self.name}: cannot open {self.config.endpoint}"
            raise DriverDisconnected(msg)
        self._client = client
        self._counts.connects += 1
        self.connected.set()
        log.info("%s: connected to %s", self.name, self.config.endpoint)
        now = self._clock.monotonic()
        for s in self._slaves:
            s.due = now
        try:
            yield Delivery()  # the driver contract: an empty delivery says "connected"
            while True:
                now = self._clock.monotonic()
                due = sorted((s for s in self._slaves if s.due <= now), key=lambda s: s.due)
                if not due:
                    self.idle.set()
                    self.cycles += 1
                    await self._clock.sleep(min(s.due for s in self._slaves) - now)
                    self.idle.clear()
                    continue
                for slave in due:
                    delivery = await self._poll(client, slave)
                    slave.due += slave.device.poll_interval_s
                    if slave.due <= self._clock.monotonic():
                        # the bus could not keep this slave's rate: skip, do not pile up
                        slave.overruns += 1
                        slave.due = self._clock.monotonic() + slave.device.poll_interval_s
                    if delivery.samples or delivery.rejects:
                        yield delivery
                    if not client.connected:
                        self._counts.disconnects += 1
                        msg = f"{self.name}: {self.config.endpoint} went away"
                        raise DriverDisconnected(msg)
                    if self.config.gap_ms:
                        await asyncio.sleep(self.config.gap_ms / 1000)
        finally:
            await self.close()

    async def _poll(self, client: Any, slave: SlaveState) -> Delivery:
        """Read every block of one slave; stop at its first silence (one timeout per poll)."""
        from pymodbus.exceptions import ConnectionException, ModbusException

        self._counts.polls += 1
        dev = slave.device
        values: dict[str, dict[str, float]] = {}
        rejects: list[Reject] = []
        failed = False
        for i, block in enumerate(slave.blocks):
            if i and self.config.gap_ms:
                await asyncio.sleep(self.config.gap_ms / 1000)
            read = (
                client.read_holding_registers
                if block.register == "holding"
                else client.read_input_registers
            )
            self._counts.requests += 1
            try:
                response = await read(block.start, count=block.count, device_id=dev.slave)
            except ConnectionException as exc:
                self._counts.disconnects += 1
                msg = f"{self.name}: {self.config.endpoint} went away: {exc}"
                raise DriverDisconnected(msg) from exc
            except ModbusException:
                failed = True
                reject = self._silence(slave, block)
                if reject is not None:
                    rejects.append(reject)
                break
            if response.isError():
                failed = True
                rejects.append(self._exception(slave, block, response))
                break
            self._counts.responses += 1
            registers = list(response.registers)
            for point in block.points:
                try:
                    value = point_value(point, block, registers)
                except BadValue as exc:
                    rejects.append(
                        self._reject(
                            REASON_BAD_VALUE, slave, block, registers_bytes(registers), str(exc)
                        )
                    )
                    continue
                values.setdefault(point.sensor, {})[point.kind] = value
        self._account(slave, failed)
        now_ns = self._clock.now_ns()
        samples = []
        for sensor, kinds in values.items():
            if "temp" not in kinds:
                continue  # its temperature was refused above; rh alone is no reading
            samples.append(
                RawSample(
                    sensor=sensor,
                    temp_c=kinds["temp"],
                    ts_ns=None,  # transmitters have no clock: the receive time is used
                    received_ns=now_ns,
                    source=f"{self._source}:{dev.slave}",
                    rh=kinds.get("rh"),
                    battery_v=kinds.get("battery"),
                )
            )
        self._counts.samples += len(samples)
        for r in rejects:
            self._counts.rejects[r.reason] += 1
        return Delivery(samples=samples, rejects=rejects)

    def _silence(self, slave: SlaveState, block: Block) -> Reject | None:
        """No usable answer in time: a plain timeout, or bytes pymodbus could not use."""
        rx = self._wire.received
        if not rx:
            self._counts.timeouts += 1
            slave.timeouts += 1
            return None
        if self.config.effective_framer == "rtu" and len(rx) >= 4:
            if not rtu_crc_ok(rx):
                return self._reject(REASON_CRC, slave, block, rx, "CRC does not match the frame")
            if rx[0] != slave.device.slave:
                detail = (
                    f"a frame from slave {rx[0]} while waiting for {slave.device.slave}:"
                    " a late answer (raise timeout_s) or two devices with one id"
                )
                return self._reject(REASON_BAD_FRAME, slave, block, rx, detail)
        return self._reject(REASON_BAD_FRAME, slave, block, rx, "answer could not be decoded")

    def _exception(self, slave: SlaveState, block: Block, response: Any) -> Reject:
        code = int(getattr(response, "exception_code", 0))
        name = EXCEPTION_NAMES.get(code, "unknown")
        detail = f"exception {code} ({name}) to function {block.function_code:02d}"
        return self._reject(REASON_EXCEPTION, slave, block, self._wire.received, detail)

    def _reject(
        self, reason: str, slave: SlaveState, block: Block, raw: bytes, detail: str
    ) -> Reject:
        return Reject(
            reason=reason,
            source=f"{self._source}:{slave.device.slave}",
            raw=raw,
            topic=f"slave {slave.device.slave} {block.register} {block.start}+{block.count}",
            detail=detail,
            dead_letter=True,
        )

    def _account(self, slave: SlaveState, failed: bool) -> None:
        if not failed:
            slave.ok += 1
            slave.consecutive_failures = 0
            if not slave.online:
                slave.online = True
                log.info("%s: slave %d answers again", self.name, slave.device.slave)
            return
        slave.errors += 1
        slave.consecutive_failures += 1
        if slave.online:
            slave.online = False
            log.warning(
                "%s: slave %d on %s does not answer (each poll costs %.2f s until it does)",
                self.name,
                slave.device.slave,
                self.config.endpoint,
                self.config.timeout_s,
            )

    def keep_open_for_reload(self) -> None:
        """Nothing to keep: a poll interrupted by a reload is simply made again."""

    def stats(self) -> Mapping[str, int]:
        """Bus counters, rejects by reason, and per slave: ok, timeouts, errors, online."""
        c = self._counts
        out = {
            "connects": c.connects,
            "disconnects": c.disconnects,
            "polls": c.polls,
            "requests": c.requests,
            "responses": c.responses,
            "samples": c.samples,
            "timeouts": c.timeouts,
        }
        out.update({f"rejects.{reason}": n for reason, n in sorted(c.rejects.items())})
        for s in self._slaves:
            key = f"slave.{s.device.slave}"
            out[f"{key}.ok"] = s.ok
            out[f"{key}.timeouts"] = s.timeouts
            out[f"{key}.errors"] = s.errors
            out[f"{key}.overruns"] = s.overruns
            out[f"{key}.online"] = int(s.online)
        return out

    async def close(self) -> None:
        """Close the port or connection; safe to call twice."""
        client, self._client = self._client, None
        self.connected.clear()
        self.idle.clear()
        if client is not None:
            client.close()
