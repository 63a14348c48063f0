"""Clocks: the wall clock for production and a manual clock that tests advance.

Rules run on event time (a reading's own timestamp); deadlines, backoff and
batching run on a clock the code receives, so tests and the simulator drive time.
Times are integer nanoseconds since the Unix epoch (UTC) in the hot path and
timezone-aware datetimes at the edges.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

NS_PER_S = 1_000_000_000


def ns_to_datetime(ns: int) -> datetime:
    """Epoch nanoseconds to an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, tz=UTC)


def datetime_to_ns(dt: datetime) -> int:
    """Aware datetime to epoch nanoseconds; naive datetimes are refused."""
    if dt.tzinfo is None:
        msg = "naive datetime: every time in the gateway carries a timezone"
        raise ValueError(msg)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def iso_utc(ns: int) -> str:
    """Epoch nanoseconds as an ISO 8601 UTC string with a Z suffix (millisecond precision)."""
    return ns_to_datetime(ns).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock(Protocol):
    """What the gateway asks of time."""

    def now_ns(self) -> int:
        """Wall-clock time, epoch nanoseconds UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this long on this clock."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        """Wall-clock time, epoch nanoseconds UTC."""
        return time.time_ns()

    def monotonic(self) -> float:
        """Seconds from time.monotonic()."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Sleepers wake when the clock passes their deadline, so timer-driven code runs
    in simulated time without real waiting.
    """

    def __init__(self, start_ns: int = 1_767_225_600 * NS_PER_S) -> None:
        self._now_ns = start_ns
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_ns(self) -> int:
        """Current simulated wall time."""
        return self._now_ns

    def monotonic(self) -> float:
        """Current simulated monotonic seconds."""
        return self._mono

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock is advanced past now + seconds."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline passed."""
        self._mono += seconds
        self._now_ns += int(seconds * NS_PER_S)
        due = [s for s in self._sleepers if s[0] <= self._mono]
        self._sleepers = [s for s in self._sleepers if s[0] > self._mono]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
