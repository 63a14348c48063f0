"""A multi-probe sensor board simulator behind a pseudo-terminal.

The board opens a pty, puts its slave side in raw mode and writes ``$CCR`` lines into
the master side; the gateway's serial driver opens the slave like any tty. Because a
new pty gets a new ``/dev/pts/N``, the board keeps a symlink (``link_path``) pointing
at the current slave: configure the driver with the symlink, and unplug/replug keeps
working like a ``/dev/serial/by-id/...`` path does on real hardware.

Everything the board sends is recorded in :attr:`SensorBoardSim.sent` so tests can
compare what arrived with what left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import termios
import time
import tty
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from drivers.serial.protocol import encode_reading, encode_status
from firmware_sim.faults import Fault, FaultInjector
from firmware_sim.thermal import ColdRoom, Probe, ZoneModel
from gateway.core.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class SentReading:
    """A reading line that left the board and decodes (sentinel/frozen lines included)."""

    probe: str
    seq: int
    ts_ms: int | None
    temp_c: float
    fault: Fault = Fault.NONE


@dataclass(slots=True)
class SentLog:
    """What the board put on the wire, by kind."""

    valid: defaultdict[str, list[SentReading]] = field(default_factory=lambda: defaultdict(list))
    checksum: int = 0
    garbage: int = 0
    dropped: int = 0
    status: int = 0
    unplugged: int = 0  # readings taken by run() while unplugged: they went nowhere
    overrun_flushes: int = 0  # times nobody read the port and the board discarded its backlog

    def count(self, probe: str) -> int:
        """Number of valid reading lines sent for ``probe``."""
        return len(self.valid.get(probe, ()))

    @property
    def total_valid(self) -> int:
        """Number of valid reading lines sent for all probes."""
        return sum(len(v) for v in self.valid.values())

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.valid.clear()
        self.checksum = self.garbage = self.dropped = self.status = 0
        self.unplugged = self.overrun_flushes = 0


class BoardUnpluggedError(RuntimeError):
    """The board was unplugged while a write was pending."""


def default_probes(count: int, seed: int = 0) -> dict[str, Probe]:
    """``count`` probes named "1".."count", all in one cold room, each with its own noise."""
    room = ColdRoom(seed=seed)
    return {str(i): Probe(room, seed=seed * 1000 + i) for i in range(1, count + 1)}


class SensorBoardSim:
    """A simulated sensor board writing protocol lines to a pty."""

    def __init__(
        self,
        probes: Mapping[str, Probe] | int = 4,
        *,
        board: str = "B1",
        interval_s: float = 1.0,
        speed: float = 1.0,
        faults: FaultInjector | None = None,
        device_clock: bool = True,
        start_ms: int | None = None,
        fw: str = "sim-1.0",
        status_every_s: float = 60.0,
        battery_v: float | None = 3.6,
        rh: float | None = None,
        link_dir: Path | None = None,
        clock: Clock | None = None,
        seed: int = 0,
    ) -> None:
        self.probes: dict[str, Probe] = (
            default_probes(probes, seed) if isinstance(probes, int) else dict(probes)
        )
        if not self.probes:
            msg = "a board needs at least one probe"
            raise ValueError(msg)
        self.board = board
        self.interval_s = interval_s
        self.speed = speed
        self.faults = faults or FaultInjector()
        self.device_clock = device_clock
        self.fw = fw
        self.status_every_s = status_every_s
        self.battery_v = battery_v
        self.rh = rh
        self.sent = SentLog()
        self._clock: Clock = clock or SystemClock()
        self._zones: list[ZoneModel] = list(
            {id(p.zone): p.zone for p in self.probes.values()}.values()
        )
        self._order = list(self.probes)
        self._pos = 0
        self._seq: dict[str, int] = dict.fromkeys(self._order, 0)
        self._last_value: dict[str, float] = {}
        self.sim_ms = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._start_sim_ms = self.sim_ms
        self._next_status_ms = self.sim_ms
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if link_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="ccboard-")
            link_dir = Path(self._own_dir.name)
        self.link_path = link_dir / f"board-{board}"
        self._master: int | None = None
        self._slave: int | None = None
        self._write_wait: tuple[asyncio.AbstractEventLoop, int, asyncio.Future[None]] | None = None
        self.port = ""
        self.plug()

    # -- the cable ---------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        """True while the pty exists."""
        return self._master is not None

    def plug(self) -> None:
        """Open a new pty (raw mode) and point ``link_path`` at its slave."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.port)
        tmp.replace(self.link_path)  # atomic: a reader never sees a missing link

    def unplug(self) -> None:
        """Close both pty ends and remove the link: the reader sees an error or EOF."""
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if self._write_wait is not None:
            # Deregister before closing so a reused fd number never meets a stale watch.
            loop, waiting_fd, fut = self._write_wait
            self._write_wait = None
            loop.remove_writer(waiting_fd)
            if not fut.done():
                fut.set_exception(BoardUnpluggedError(str(self.link_path)))
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def replug(self) -> None:
        """Unplug if needed, then plug in again (new pty, same ``link_path``)."""
        self.unplug()
        self.plug()

    def close(self) -> None:
        """Unplug and remove the board's temporary directory."""
        self.unplug()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> SensorBoardSim:
        """Use the board as a context manager that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the board."""
        self.close()

    # -- what the firmware says ---------------------------------------------------

    def _advance(self) -> None:
        self.sim_ms += round(self.interval_s * 1000)
        for zone in self._zones:
            zone.step(self.interval_s)

    def _next_reading(self) -> bytes:
        """The bytes for the next probe in turn (may be empty, or hold garbage first)."""
        if self._pos == 0:
            self._advance()
        probe_id = self._order[self._pos]
        self._pos = (self._pos + 1) % len(self._order)
        probe = self.probes[probe_id]
        self._seq[probe_id] += 1
        seq = self._seq[probe_id]
        out = b""
        if self.faults.wants_garbage():
            out += self.faults.garbage_line()
            self.sent.garbage += 1
        fault = self.faults.decide(probe_id)
        if fault is Fault.DROP:
            self.sent.dropped += 1
            return out
        if fault is Fault.SENTINEL:
            temp = self.faults.sentinel_c()
        elif fault is Fault.FROZEN and probe_id in self._last_value:
            temp = self._last_value[probe_id]
        else:
            temp = probe.read_c()
        temp = round(temp, 2)  # what goes on the wire
        if fault is not Fault.SENTINEL:
            self._last_value[probe_id] = temp
        ts_ms = self.sim_ms if self.device_clock else None
        line = encode_reading(
            self.board,
            probe_id,
            seq,
            temp,
            device_ts_ms=ts_ms,
            rh=self.rh,
            battery_v=self.battery_v,
        )
        if fault is Fault.CHECKSUM:
            self.sent.checksum += 1
            return out + self.faults.corrupt_checksum(line)
        self.sent.valid[probe_id].append(SentReading(probe_id, seq, ts_ms, temp, fault))
        return out + line

    def status_line(self) -> bytes:
        """A ``$CCS`` status line for now (and count it as sent)."""
        self.sent.status += 1
        uptime_s = (self.sim_ms - self._start_sim_ms) // 1000
        return encode_status(self.board, uptime_s, self.fw)

    def reading_lines(self, n: int) -> bytes:
        """The next ``n`` reading lines, round-robin over the probes, recorded as sent."""
        return b"".join(self._next_reading() for _ in range(n))

    def round_lines(self) -> bytes:
        """One reading per probe, plus a status line when one is due."""
        out = self.reading_lines(len(self._order) - self._pos)
        if self.status_every_s > 0 and self.sim_ms >= self._next_status_ms:
            self._next_status_ms = self.sim_ms + round(self.status_every_s * 1000)
            out += self.status_line()
        return out

    # -- writing ------------------------------------------------------------------

    async def send_lines(self, n: int) -> None:
        """Burst: send the next ``n`` reading lines now, waiting while the pty is full."""
        if not self.plugged:
            raise BoardUnpluggedError(str(self.link_path))
        await self.write(self.reading_lines(n))

    def _lost_round(self) -> None:
        """A round taken while unplugged: time and seq move on, nothing is recorded as sent."""
        recorded = self.sent
        self.sent = SentLog()
        try:
            self.round_lines()
        finally:
            lost, self.sent = self.sent, recorded
        self.sent.unplugged += lost.total_valid + lost.checksum + lost.dropped

    async def send_status(self) -> None:
        """Send one status line now."""
        await self.write(self.status_line())

    async def write(self, data: bytes) -> None:
        """Write raw bytes, waiting for room; BoardUnpluggedError if unplugged meanwhile."""
        view = memoryview(data)
        while view:
            master = self._master
            if master is None:
                raise BoardUnpluggedError(str(self.link_path))
            try:
                view = view[os.write(master, view) :]
            except BlockingIOError:
                await self._writable(master)

    async def _writable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        loop.add_writer(fd, fut.set_result, None)
        self._write_wait = (loop, fd, fut)
        try:
            await fut
        finally:
            if self._write_wait is not None and self._write_wait[2] is fut:
                self._write_wait = None
                loop.remove_writer(fd)

    def _write_or_flush(self, data: bytes) -> None:
        """Free-running write: if nobody drains the port, discard its backlog (UART-like)."""
        master, slave = self._master, self._slave
        if master is None or slave is None:
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(master, view) :]
            except BlockingIOError:
                termios.tcflush(slave, termios.TCIFLUSH)
                self.sent.overrun_flushes += 1

    async def run(self, rounds: int | None = None) -> None:
        """Send one round every ``interval_s / speed`` seconds, forever or ``rounds`` times.

        Lines written while nobody reads are lost like on a real UART (a board has
        no flow control), so start the reader before the board when counting.
        """
        done = 0
        while rounds is None or done < rounds:
            if self.plugged:
                self._write_or_flush(self.round_lines())
            else:
                self._lost_round()
            done += 1
            await self._clock.sleep(self.interval_s / self.speed)
