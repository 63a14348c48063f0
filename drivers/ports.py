"""Open ports kept between two gateways of one process (a SIGHUP reload).

Closing and reopening a tty loses what the device sends meanwhile (pyserial flushes the
input on open, a real UART drops bytes while closed, DTR toggles reset some boards). A
driver stopping for a reload parks its open port here with whatever state it needs (for
the serial driver: the transport and a partial line); the next gateway's driver for the
same port and settings claims it. A claim with other settings closes it first; unclaimed
ports close after ``PARK_S``, and the reload sweeps them once the new gateway is up.
Any driver that owns a tty (serial, Modbus RTU) can use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any, Final

log = logging.getLogger(__name__)

PARK_S: Final = 60.0  # a safety net: the reload sweeps unclaimed ports once it is up


class ParkedPorts:
    """Held ports by path: (settings key, held state, closer, timer, loop)."""

    def __init__(self) -> None:
        self._held: dict[
            str,
            tuple[
                Hashable, Any, Callable[[Any], None], asyncio.TimerHandle, asyncio.AbstractEventLoop
            ],
        ] = {}

    def park(self, port: str, settings: Hashable, held: Any, close: Callable[[Any], None]) -> None:
        """Keep ``held`` open for the next claim of ``port`` with the same ``settings``."""
        self.close(port)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(PARK_S, self.close, port)
        self._held[port] = (settings, held, close, timer, loop)

    def claim(self, port: str, settings: Hashable) -> Any:
        """The parked state of ``port`` if parked with these settings, else None."""
        entry = self._held.get(port)
        if entry is None:
            return None
        parked_settings, held, _, timer, loop = entry
        if parked_settings != settings or loop is not asyncio.get_running_loop():
            self.close(port)  # other settings, or parked by another event loop: reopen
            return None
        del self._held[port]
        timer.cancel()
        return held

    def close(self, port: str) -> None:
        """Close a parked port (no-op if none)."""
        entry = self._held.pop(port, None)
        if entry is None:
            return
        _, held, close, timer, _ = entry
        timer.cancel()
        try:
            close(held)
        except RuntimeError as exc:  # its event loop is already closed
            log.debug("%s: parked port of a closed loop: %s", port, exc)
        log.info("%s: parked port closed", port)

    def close_all(self) -> None:
        """Close every parked port."""
        for port in list(self._held):
            self.close(port)


PARKED = ParkedPorts()


def close_parked_ports() -> None:
    """Close every port still parked (the process is ending, or the reload is done)."""
    PARKED.close_all()
