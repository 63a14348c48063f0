"""A notifier process for the SIGKILL test: real journal, real SMTP, time from a file.

usage: crash_child.py CONFIG CLOCK_FILE [--raise]

The test writes epoch nanoseconds into CLOCK_FILE to move time (sleeps poll it), and reads
``round_at`` beside it: the clock time of the last completed notifier round. SIGTERM stops
the notifier the way the daemon does (in-flight sends finish) and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from gateway.alerts.store import AlertStore, Severity
from gateway.config import load_config
from gateway.core.metrics import Counters
from gateway.journal.store import Journal, JournalRunner
from gateway.notify.service import build_notifier


class FileClock:
    """Wall time read from a file the test writes; sleep waits for the file to pass it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now_ns(self) -> int:
        """The time in the file."""
        return int(self.path.read_text())

    def monotonic(self) -> float:
        """Seconds of file time."""
        return self.now_ns() / 1e9

    async def sleep(self, seconds: float) -> None:
        """Until the file's time has moved seconds on (polled in real time)."""
        until = self.now_ns() + int(seconds * 1e9)
        while self.now_ns() < until:
            await asyncio.sleep(0.02)


async def main(config_path: str, clock_path: str, raise_first: bool) -> None:
    config = load_config(config_path)
    clock = FileClock(Path(clock_path))
    round_at = Path(clock_path).with_name("round_at")
    journal = Journal(config.journal.path)
    runner = JournalRunner(journal)
    alerts = AlertStore(journal.connection, config.hub.id)
    notifier = build_notifier(config, journal, runner, alerts, Counters(), clock)
    assert notifier is not None
    original = notifier.round

    async def counted() -> bool:
        at = clock.now_ns()
        busy = await original()
        tmp = round_at.with_suffix(".tmp")
        tmp.write_text(str(at))
        tmp.replace(round_at)
        return busy

    notifier.round = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(notifier.run())
    if raise_first:  # after the notifier's first round, as in a running gateway
        while notifier.rounds < 1:
            await asyncio.sleep(0.01)
        now = clock.now_ns()
        await runner.call(
            alerts.raise_alert, "excursion", "cold-room-1", Severity.CRITICAL, now, now,
            9.5, 8.0, "zone cold-room-1 high excursion: 9.50 °C against chilled limit 8 °C",
        )  # fmt: skip
        notifier.wake()
    await stop.wait()
    await notifier.close()
    task.cancel()
    runner.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--raise" in sys.argv[3:]))
