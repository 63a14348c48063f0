"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1, STOPPING=1, RELOADING=1.

A datagram to the unix socket named by NOTIFY_SOCKET (``@`` = abstract namespace). The
watchdog is fed from a task on the event loop, so a blocked or stuck loop stops the
pings and systemd restarts the daemon (WatchdogSec= in the unit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notify messages when running under systemd; does nothing otherwise."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s: float | None = None
        self.failures = 0  # notify datagrams that could not be sent
        if usec and (pid is None or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET is set."""
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send KEY=VALUE lines; False (and a debug log) when not under systemd or it fails."""
        if not self._address:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the event loop: a manager that stopped reading (queue full)
                # costs a dropped STATUS/WATCHDOG, which it would then notice itself.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as exc:
            self.failures += 1
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

    async def watchdog(self) -> None:
        """Ping WATCHDOG=1 at half the watchdog interval, from the event loop, forever."""
        if self.watchdog_s is None:
            return
        period = self.watchdog_s / 2
        while True:
            self.notify("WATCHDOG=1")
            # Wall-clock sleep on purpose: the watchdog measures real time, not sim time.
            started = time.monotonic()
            await asyncio.sleep(period)
            late = time.monotonic() - started - period
            if late > period:
                log.warning("event loop was blocked for %.1f s (watchdog)", late + period)
