"""The one reconnect loop: runs a driver, reconnects it with backoff and jitter.

Drivers do not retry on their own (STYLE: errors while connecting are retried by the
supervisor); they raise DriverDisconnected and this loop calls them again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.errors import DriverDisconnected, DriverError
from gateway.ingest import Ingest
from gateway.metrics import Counters
from gateway.model import Delivery

log = logging.getLogger(__name__)


class Driver(Protocol):
    """What every input driver offers (see drivers.REGISTRY)."""

    name: str

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Connect, yield an empty delivery once connected, then data until it goes away."""
        ...

    async def close(self) -> None:
        """Release the port or connection."""
        ...


async def supervise(
    driver: Driver,
    ingest: Ingest,
    counters: Counters,
    clock: Clock,
    backoff: Backoff | None = None,
) -> None:
    """Run a driver forever: feed its deliveries to the ingest, reconnect when it drops."""
    backoff = backoff or Backoff(initial=0.5, maximum=30.0)
    name = driver.name
    first_attempt = True
    while True:
        try:
            if not first_attempt:
                counters.reconnects[name] += 1
            first_attempt = False
            async for delivery in driver.deliveries():
                if not counters.connected.get(name):
                    counters.connected[name] = True
                    log.info("driver connected", extra={"component": name})
                backoff.reset()
                if delivery.samples or delivery.rejects:
                    await ingest.submit(name, delivery)
            reason = "stream ended"
        except DriverDisconnected as exc:
            reason = str(exc) or type(exc).__name__
        except DriverError as exc:
            reason = f"driver error: {exc}"
        counters.connected[name] = False
        counters.error(name, reason)
        delay = backoff.next()
        log.warning(
            "driver disconnected; retrying in %.1f s: %s",
            delay,
            reason,
            extra={"component": name},
        )
        await clock.sleep(delay)
