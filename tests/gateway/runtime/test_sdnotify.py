"""systemd notify: READY and WATCHDOG on a real unix datagram socket; a blocked loop stops pings."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from pathlib import Path

from gateway.config import parse_config
from gateway.runtime.daemon import Gateway
from gateway.runtime.sdnotify import SystemdNotifier


class NotifySocket:
    """A unix datagram socket standing in for systemd, recording (time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times_of(self, field: str) -> list[float]:
        """When messages containing a field arrived."""
        return [t for t, m in list(self.messages) if field in m.split("\n")]

    def close(self) -> None:
        """Stop reading and close."""
        self._stop.set()
        self._thread.join()
        self.sock.close()


async def test_ready_and_watchdog_pings_stop_when_the_loop_blocks(tmp_path: Path) -> None:
    systemd = NotifySocket(tmp_path / "notify.sock")
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    )
    config = parse_config({"hub": {"id": "h"}, "journal": {"path": str(tmp_path / "j.db")}})
    gateway = Gateway(config, notifier=notifier)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(5):
            while not systemd.times_of("READY=1") or len(systemd.times_of("WATCHDOG=1")) < 5:
                await asyncio.sleep(0.05)
        blocked_from = time.monotonic()
        time.sleep(1.0)  # noqa: ASYNC251 - the point: block the event loop for a second
        blocked_to = time.monotonic()
        async with asyncio.timeout(5):
            while not [t for t in systemd.times_of("WATCHDOG=1") if t > blocked_to]:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        systemd.close()
    pings = systemd.times_of("WATCHDOG=1")
    during = [t for t in pings if blocked_from + 0.05 < t < blocked_to]
    assert during == [], "no watchdog ping while the loop is blocked"
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 0.9
    assert sorted(gaps)[len(gaps) // 2] < 0.3, "normally every ~0.1 s"
    assert systemd.times_of("STOPPING=1"), "STOPPING=1 at shutdown"


def test_abstract_socket_names_and_watchdog_pid() -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": "@sd/notify", "WATCHDOG_USEC": "30000000"})
    assert n.enabled
    assert n.watchdog_s == 30.0
    other = SystemdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None, "the watchdog belongs to another process"
    assert not SystemdNotifier({}).notify("READY=1")


def test_notify_never_blocks_when_the_manager_stops_reading(tmp_path: Path) -> None:
    """A listener that never reads fills its queue; notify() then fails fast, counted."""
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
        started = time.monotonic()
        results = [notifier.notify(f"STATUS={'x' * 1000} {i}") for i in range(2000)]
        elapsed = time.monotonic() - started
        assert results[0] is True
        assert results[-1] is False  # the queue filled up and later sends were refused
        assert notifier.failures == results.count(False) > 0
        assert elapsed < 10  # a blocking sendto() would hang here forever
        first = listener.recv(4096).decode()
        assert first == f"STATUS={'x' * 1000} 0"
    finally:
        listener.close()
