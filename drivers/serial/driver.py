"""Serial driver: reads ``$CCR`` lines from one board's tty and yields deliveries.

The driver opens the port once per :meth:`SerialDriver.deliveries` call and raises
:class:`~gateway.core.errors.DriverDisconnected` when the port goes away; reconnecting with
backoff is the supervisor's job, not the driver's.
"""

from __future__ import annotations

import asyncio
import logging
import termios
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

from drivers.ports import PARKED
from drivers.serial.config import SerialDriverConfig
from drivers.serial.protocol import REASON_LINE_TOO_LONG, LineDecoder
from gateway.core.clock import Clock
from gateway.core.errors import DriverDisconnected
from gateway.core.model import Delivery, RawSample, Reject

log = logging.getLogger(__name__)

OpenPort = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

MAX_SAMPLES_PER_DELIVERY = 500
READ_CHUNK_BYTES = 64 * 1024


async def open_serial_port(
    *, url: str, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a tty with pyserial-asyncio-fast (the production port factory)."""
    import serial_asyncio_fast

    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=url, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits
    )
    return reader, writer


@dataclass(slots=True)
class SerialStats:
    """Counters of one driver instance, kept across reconnects (for gateway_health)."""

    opens: int = 0
    disconnects: int = 0
    bytes_read: int = 0
    lines: int = 0
    samples: int = 0
    status_lines: int = 0
    partial_lines_discarded: int = 0
    rejects: Counter[str] = field(default_factory=Counter)


class LineSplitter:
    """Cuts a byte stream into lines, bounding line length and batching the results.

    After open the stream may start mid-line: bytes before the first line ending are
    discarded unless the stream starts with ``$`` (a sentence start). An overlong line
    becomes one ``line_too_long`` reject and the splitter resyncs at the next newline.
    """

    def __init__(
        self,
        decoder: LineDecoder,
        stats: SerialStats,
        max_samples: int = MAX_SAMPLES_PER_DELIVERY,
    ) -> None:
        self._decoder = decoder
        self._stats = stats
        self._max_samples = max_samples
        self._buf = bytearray()
        self._at_start = True
        self._skipping_partial = False
        self._overlong = False

    def feed(self, chunk: bytes, received_ns: int) -> Iterator[Delivery]:
        """Consume one chunk; yield deliveries of at most ``max_samples`` samples."""
        self._stats.bytes_read += len(chunk)
        if self._at_start and chunk:
            self._at_start = False
            self._skipping_partial = not chunk.startswith(b"$")
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        max_len = self._decoder.max_line_bytes
        buf = self._buf
        buf += chunk
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buf[start : end + 1])
            start = end + 1
            if self._skipping_partial:
                self._skipping_partial = False
                self._stats.partial_lines_discarded += 1
                continue
            if self._overlong:  # the tail of a line already rejected
                self._overlong = False
                continue
            self._stats.lines += 1
            result = self._decoder.decode_line(line, received_ns)
            if result is None:
                self._stats.status_lines += 1
            elif isinstance(result, RawSample):
                samples.append(result)
                if len(samples) >= self._max_samples:
                    yield self._delivery(samples, rejects)
                    samples, rejects = [], []
            else:
                rejects.append(result)
        del buf[:start]
        if len(buf) > max_len:
            # No newline within max_line_bytes: reject once, drop what we hold, and
            # keep dropping until the next newline.
            if not (self._overlong or self._skipping_partial):
                self._stats.lines += 1
                rejects.append(
                    self._decoder.reject(REASON_LINE_TOO_LONG, bytes(buf), f"> {max_len} bytes")
                )
                self._overlong = True
            buf.clear()
        if samples or rejects:
            yield self._delivery(samples, rejects)

    def rebind(self, decoder: LineDecoder, stats: SerialStats) -> None:
        """Continue the same byte stream for another driver (a port taken over on reload)."""
        self._decoder = decoder
        self._stats = stats

    def _delivery(self, samples: list[RawSample], rejects: list[Reject]) -> Delivery:
        self._stats.samples += len(samples)
        for reject in rejects:
            self._stats.rejects[reject.reason] += 1
        return Delivery(samples=samples, rejects=rejects)


def _take_buffered(reader: asyncio.StreamReader) -> bytes:
    """Bytes a StreamReader holds but will not return after an error (private buffer)."""
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray) or not buffer:
        return b""
    data = bytes(buffer)
    buffer.clear()
    return data


_Held = tuple[asyncio.StreamReader, asyncio.StreamWriter, LineSplitter]


def _close_held(held: _Held) -> None:
    held[1].close()


class SerialDriver:
    """One multi-probe sensor board on one tty."""

    def __init__(
        self,
        config: SerialDriverConfig,
        clock: Clock,
        open_port: OpenPort | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._counts = SerialStats()
        self._clock = clock
        self._open_port: OpenPort = open_port or open_serial_port
        self._decoder = LineDecoder.from_config(config)
        self._writer: asyncio.StreamWriter | None = None
        # Set before a config reload (keep_open_for_reload): a graceful stop parks the open
        # port (drivers.ports) instead of closing it, so no byte is lost in between.
        self.park_on_close = False
        # Set while a port is open; tests and health checks wait on it.
        self.connected = asyncio.Event()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Open the port and yield batches of decoded lines until it goes away."""
        port = self.config.port
        settings = self.config.line_settings
        held: _Held | None = PARKED.claim(port, settings)
        if held is not None:
            reader, writer, splitter = held
            splitter.rebind(self._decoder, self._counts)
            log.info("%s: took over %s, kept open across the reload", self.name, port)
        else:
            try:
                c = self.config
                reader, writer = await self._open_port(
                    url=port,
                    baudrate=c.baudrate,
                    bytesize=c.bytesize,
                    parity=c.parity,
                    stopbits=c.stopbits,
                )
            except (OSError, termios.error) as exc:  # serial.SerialException is an OSError
                msg = f"{self.name}: cannot open {port}: {exc}"
                raise DriverDisconnected(msg) from exc
            splitter = LineSplitter(self._decoder, self._counts)
            log.info("%s: opened %s", self.name, port)
        self._writer = writer
        self._counts.opens += 1
        self.connected.set()
        park = False
        try:
            yield Delivery()  # the driver contract: an empty delivery says "connected"
            while True:
                try:
                    chunk = await reader.read(READ_CHUNK_BYTES)
                except (OSError, termios.error) as exc:
                    # StreamReader raises a stored error before returning what it had
                    # buffered (bytes from a parked port, for one): hand those over first.
                    buffered = _take_buffered(reader)
                    if buffered:
                        for delivery in splitter.feed(buffered, self._clock.now_ns()):
                            yield delivery
                    self._counts.disconnects += 1
                    msg = f"{self.name}: {port} went away: {exc}"
                    raise DriverDisconnected(msg) from exc
                if not chunk:
                    self._counts.disconnects += 1
                    msg = f"{self.name}: {port} closed (EOF)"
                    raise DriverDisconnected(msg)
                for delivery in splitter.feed(chunk, self._clock.now_ns()):
                    yield delivery
        except asyncio.CancelledError:
            # Cancelled while waiting for input (the supervisor's graceful stop): the
            # splitter holds no half-fed chunk, so the port can be handed over intact.
            park = self.park_on_close
            raise
        finally:
            if park and self._writer is writer:
                self._writer = None
                self.connected.clear()
                PARKED.park(port, settings, (reader, writer, splitter), _close_held)
                log.info("%s: %s kept open for the next config", self.name, port)
            else:
                await self.close()

    def keep_open_for_reload(self) -> None:
        """A graceful stop parks the open port for the next gateway (no byte lost)."""
        self.park_on_close = True

    def stats(self) -> Mapping[str, int]:
        """Counters across reconnects; rejects by reason as ``rejects.<reason>``."""
        s = self._counts
        out = {
            "opens": s.opens,
            "disconnects": s.disconnects,
            "bytes_read": s.bytes_read,
            "lines": s.lines,
            "samples": s.samples,
            "status_lines": s.status_lines,
            "partial_lines_discarded": s.partial_lines_discarded,
        }
        out.update({f"rejects.{reason}": n for reason, n in sorted(s.rejects.items())})
        return out

    async def close(self) -> None:
        """Close the port if open; safe to call twice."""
        writer, self._writer = self._writer, None
        self.connected.clear()
        if writer is None:
            return
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, termios.error) as exc:
            # The transport already died with this error; it was reported by deliveries().
            log.debug("%s: close after error: %s", self.name, exc)
