"""Forward journaled readings to InfluxDB, in order, behind a per-sink cursor.

The cursor advances only after the server confirmed a batch (2xx). While the server is
down the backlog stays in the journal and drains in order afterwards; a replay rewrites
identical points (same measurement, tags and timestamp), so it never duplicates.
A batch the server refuses for good is split until the offending record is found; that
record is quarantined in the journal (kept, counted, visible) and the rest moves on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import SinkRejected, SinkUnavailable
from gateway.core.metrics import Counters
from gateway.journal.store import JournalRunner
from gateway.outbox.streams import STREAM_READINGS, Stream

log = logging.getLogger(__name__)

# Statuses that blame the bytes of the batch, not the server or the config.
_BAD_BATCH_STATUSES = frozenset({400, 413, 422})
# Single records quarantined in a row after which refusals are taken for a schema
# conflict (every record fails) and the backlog is held instead.
SYSTEMATIC_REFUSALS = 20


class LineWriter(Protocol):
    """A sink that takes a body of line protocol (see gateway.sinks.influx)."""

    async def write(self, body: bytes, points: int) -> None:
        """Deliver the body or raise SinkUnavailable / SinkRejected."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InfluxForwarder:
    """Drains journal streams into one line-protocol sink, earlier streams first."""

    def __init__(
        self,
        sink_name: str,
        runner: JournalRunner,
        writer: LineWriter,
        streams: list[Stream],
        counters: Counters,
        clock: Clock,
        batch_size: int = 5000,
        max_backoff_s: float = 30.0,
        cursor_save_s: float = 0.0,
    ) -> None:
        self.name = sink_name
        # A cursor is saved at most this often (0: after every batch). Each save is a
        # journal transaction of its own (an fsync and a page written per stream), while
        # a cursor that lags only means re-sending points the server already has after a
        # crash, which overwrite themselves (same measurement, tags and timestamp).
        self._cursor_save_s = cursor_save_s
        self._saved: dict[str, int] = {}
        self._saved_at = float("-inf")
        self._runner = runner
        self._writer = writer
        self._streams = streams
        self._counters = counters
        self._clock = clock
        self._batch_size = batch_size
        self._limits: dict[str, int] = {}  # per stream: halved while narrowing down a 400
        self._refused_in_a_row: dict[str, int] = {}
        self._backoff = Backoff(initial=0.5, maximum=max_backoff_s)
        self._wake = asyncio.Event()
        self.cursors: dict[str, int] = {}
        self.caught_up = asyncio.Event()

    @property
    def cursor(self) -> int:
        """Position on the readings stream (for status and shutdown)."""
        return self.cursors.get(STREAM_READINGS, 0)

    @property
    def writer(self) -> LineWriter:
        """The sink this forwarder writes to."""
        return self._writer

    def wake(self, *_: object) -> None:
        """New records are in the journal: stop waiting (an ingest commit listener)."""
        self._wake.set()

    async def run(self) -> None:
        """Forward until cancelled; each round restarts from the first (most urgent) stream."""
        journal = self._runner.journal
        for stream in self._streams:
            self.cursors[stream.name] = await self._runner.call(
                journal.cursor, self.name, stream.name
            )
            self._saved[stream.name] = self.cursors[stream.name]
        while True:
            for stream in self._streams:
                last, count, body = await self._runner.call(
                    stream.fetch,
                    journal,
                    self.cursors[stream.name],
                    self._limits.get(stream.name, self._batch_size),
                )
                if count:
                    self.caught_up.clear()
                    await self._deliver(stream.name, last, count, body)
                    break
            else:
                self.caught_up.set()
                self._wake.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _hold(self, level: int, msg: str, what: int, stream: str, exc: Exception) -> None:
        """Log why the backlog waits, then back off (the next delay goes into the message)."""
        delay = self._backoff.next()
        log.log(level, msg, what, stream, delay, exc, extra={"component": self.name})
        await self._clock.sleep(delay)

    async def _deliver(self, stream: str, last: int, count: int, body: bytes) -> None:
        counters = self._counters
        journal = self._runner.journal
        try:
            await self._writer.write(body, count)
        except SinkUnavailable as exc:
            counters.write_failures[self.name] += 1
            counters.connected[self.name] = False
            counters.error(self.name, str(exc))
            await self._hold(
                logging.WARNING,
                "sink unavailable, %d %s wait in the journal; retry in %.1f s: %s",
                count,
                stream,
                exc,
            )
            return
        except SinkRejected as exc:
            counters.write_failures[self.name] += 1
            counters.error(self.name, str(exc))
            if getattr(exc, "status", 400) not in _BAD_BATCH_STATUSES:
                # 401/403/404: wrong credentials or a missing database. The data is fine;
                # hold the backlog until an operator fixes the config.
                await self._hold(
                    logging.ERROR,
                    "sink refuses every write (fix the config); %d %s wait; retry in %.1f s: %s",
                    count,
                    stream,
                    exc,
                )
                return
            if count > 1:
                # Narrow down: the refused record is in one half.
                self._limits[stream] = max(1, count // 2)
                return
            refused = self._refused_in_a_row.get(stream, 0) + 1
            if refused > SYSTEMATIC_REFUSALS:
                # Record after record refused: not a bad record but a schema conflict
                # (e.g. a field written with another type before). Quarantining would
                # empty the whole backlog one record at a time; hold it instead.
                await self._hold(
                    logging.ERROR,
                    "sink refused %d %s records in a row: a schema conflict, not bad data;"
                    " holding the backlog until it is fixed; retry in %.1f s: %s",
                    refused - 1,
                    stream,
                    exc,
                )
                return
            self._refused_in_a_row[stream] = refused
            await self._runner.call(
                journal.quarantine, self.name, stream, last, str(exc)[:500], self._clock.now_ns()
            )
            counters.quarantined[self.name] += 1
            self._saved_at = float("-inf")  # a quarantine is saved with its cursor at once
            log.error(
                "%s record %d refused by the server, quarantined: %s",
                stream,
                last,
                exc,
                extra={"component": self.name},
            )
        else:
            counters.written[self.name] += count
            counters.connected[self.name] = True
            self._backoff.reset()
            self._refused_in_a_row[stream] = 0
            limit = self._limits.get(stream, self._batch_size)
            if limit < self._batch_size:
                self._limits[stream] = min(self._batch_size, limit * 2)
        self.cursors[stream] = last
        if self._clock.monotonic() - self._saved_at >= self._cursor_save_s:
            await self.save_cursors()

    async def save_cursors(self) -> None:
        """Journal the cursors that moved since the last save, in one transaction."""
        moved = {k: v for k, v in self.cursors.items() if self._saved.get(k) != v}
        self._saved_at = self._clock.monotonic()
        if moved:
            await self._runner.call(
                self._runner.journal.set_cursors, self.name, moved, self._clock.now_ns()
            )
            self._saved.update(moved)
