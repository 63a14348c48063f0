"""1-Wire driver: reads each probe's sysfs file in a worker thread, on the gateway clock.

A ``w1_slave`` read blocks for the conversion (750 ms at 12 bits): one dedicated thread
per driver does the reads in turn so the event loop never waits on the kernel, and a
slow bus never occupies the default executor. A CRC ``NO``, an empty read and a
MAX31850 thermocouple fault are counted and dead-lettered with the file's text; a
device whose directory is gone is counted as missing (its sensor goes stale in sensor
health) and read again on every poll, so it comes back on its own. The power-on 85.0
and the -127 "disconnected" code pass through as values: the normaliser flags them
(``SENTINEL``) as for every driver.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from drivers.onewire.config import OneWireDriverConfig
from drivers.onewire.w1 import W1Error, parse_temperature, parse_w1_slave
from gateway.core.clock import Clock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery, RawSample, Reject

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 512  # w1_slave is 76 bytes; bound what a broken filesystem could hand us
_MISSING = "missing"


@dataclass(slots=True)
class DeviceState:
    """Counters of one probe."""

    ok: int = 0
    errors: int = 0
    missing: int = 0
    present: bool = True


@dataclass(slots=True)
class OneWireStats:
    """Counters of one driver, kept across reconnects."""

    polls: int = 0
    reads: int = 0
    samples: int = 0
    rejects: Counter[str] = field(default_factory=Counter)


def read_device(root: Path, device: str, file: str) -> str | OSError:
    """One sysfs read (runs in the worker thread); an OSError is returned, not raised."""
    try:
        with (root / device / file).open("rb") as f:
            return f.read(MAX_FILE_BYTES).decode("ascii", errors="replace")
    except OSError as exc:
        return exc


class OneWireDriver:
    """The configured thermometers of one w1 sysfs tree."""

    def __init__(self, config: OneWireDriverConfig, clock: Clock) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._root = Path(config.sysfs_root)
        self._counts = OneWireStats()
        self._devices = {d: DeviceState() for d in config.sensors}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._source = f"onewire:{config.name}"
        self.cycles = 0
        self.idle = asyncio.Event()  # set while waiting for the next poll

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Check the bus exists, then read every probe once per ``poll_interval_s``."""
        if not self._root.is_dir():
            msg = (
                f"{self.name}: no w1 bus at {self._root}"
                " (is dtoverlay=w1-gpio in /boot/firmware/config.txt?)"
            )
            raise DriverDisconnected(msg)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"w1-{self.name}"
        )
        loop = asyncio.get_running_loop()
        try:
            yield Delivery()
            next_due = self._clock.monotonic()
            while True:
                delivery = await self._poll(loop)
                if delivery.samples or delivery.rejects:
                    yield delivery
                next_due += self.config.poll_interval_s
                wait = next_due - self._clock.monotonic()
                if wait <= 0:  # reads took longer than the interval: skip, do not pile up
                    next_due = self._clock.monotonic()
                self.cycles += 1
                self.idle.set()
                await self._clock.sleep(max(wait, 0.0))
                self.idle.clear()
        finally:
            await self.close()

    async def _poll(self, loop: asyncio.AbstractEventLoop) -> Delivery:
        assert self._pool is not None
        self._counts.polls += 1
        root, file = self._root, self.config.file
        results = []
        for device in self.config.sensors:
            result = await loop.run_in_executor(self._pool, read_device, root, device, file)
            results.append((device, result))
        now_ns = self._clock.now_ns()
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        for device, result in results:
            state = self._devices[device]
            if isinstance(result, FileNotFoundError):
                state.missing += 1
                if state.present:
                    state.present = False
                    log.warning("%s: %s is gone from %s", self.name, device, root)
                continue
            if not state.present:
                state.present = True
                log.info("%s: %s is back", self.name, device)
            self._counts.reads += 1
            try:
                if isinstance(result, OSError):
                    raise W1Error("read_error", f"{type(result).__name__}: {result.strerror}")
                if file == "w1_slave":
                    temp = parse_w1_slave(result, device[:2]).temp_c
                else:
                    temp = parse_temperature(result)
            except W1Error as exc:
                state.errors += 1
                self._counts.rejects[exc.reason] += 1
                raw = b"" if isinstance(result, OSError) else result.encode("ascii")
                rejects.append(
                    Reject(
                        reason=exc.reason,
                        source=self._source,
                        raw=raw,
                        topic=f"{device}/{file}",
                        detail=str(exc),
                        dead_letter=True,
                    )
                )
                continue
            state.ok += 1
            samples.append(
                RawSample(
                    sensor=self.config.sensors[device],
                    temp_c=temp,
                    ts_ns=None,  # a DS18B20 has no clock: the read time is the reading's
                    received_ns=now_ns,
                    source=self._source,
                )
            )
        self._counts.samples += len(samples)
        return Delivery(samples=samples, rejects=rejects)

    def keep_open_for_reload(self) -> None:
        """Nothing to keep: sysfs files are read fresh every poll."""

    def stats(self) -> Mapping[str, int]:
        """Polls, reads, rejects by reason, and per device: ok, errors, missing, present."""
        c = self._counts
        out = {"polls": c.polls, "reads": c.reads, "samples": c.samples}
        out.update({f"rejects.{reason}": n for reason, n in sorted(c.rejects.items())})
        for device, s in self._devices.items():
            out[f"device.{device}.ok"] = s.ok
            out[f"device.{device}.errors"] = s.errors
            out[f"device.{device}.{_MISSING}"] = s.missing
            out[f"device.{device}.present"] = int(s.present)
        return out

    async def close(self) -> None:
        """Stop the worker thread (a read in progress finishes on its own); safe twice."""
        pool, self._pool = self._pool, None
        self.idle.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
