"""The one reconnect loop: runs a driver, reconnects it with backoff and jitter.

Drivers do not retry on their own (STYLE: errors while connecting are retried by the
supervisor); they raise DriverDisconnected and this loop calls them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from drivers.base import Driver
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import DriverDisconnected, DriverError
from gateway.core.metrics import Counters
from gateway.core.model import Delivery
from gateway.ingest.batcher import Ingest

log = logging.getLogger(__name__)


async def supervise(
    driver: Driver,
    ingest: Ingest,
    counters: Counters,
    clock: Clock,
    backoff: Backoff | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a driver: feed its deliveries to the ingest, reconnect when it drops.

    Runs forever, or until ``stop`` is set. A stop is graceful: every delivery the driver
    has already produced is handed to the ingest, and the driver is interrupted only
    while it waits for input (its port or connection then closes with nothing half-read).
    Cancelling the task instead ends it at once (a delivery being submitted is lost).
    """
    backoff = backoff or Backoff(initial=0.5, maximum=30.0)
    stop = stop or asyncio.Event()
    stopping = asyncio.ensure_future(stop.wait())
    name = driver.name
    first_attempt = True
    try:
        while not stop.is_set():
            try:
                if not first_attempt:
                    counters.reconnects[name] += 1
                first_attempt = False
                stream = driver.deliveries()
                try:
                    while (delivery := await _next(stream, stopping)) is not None:
                        if not counters.connected.get(name):
                            counters.connected[name] = True
                            log.info("driver connected", extra={"component": name})
                        backoff.reset()
                        if delivery.samples or delivery.rejects:
                            await ingest.submit(name, delivery)
                finally:
                    aclose = getattr(stream, "aclose", None)  # async generators
                    if aclose is not None and not getattr(stream, "ag_running", False):
                        await aclose()
                if stop.is_set():
                    break
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
            await _sleep_unless(clock, delay, stopping)
    finally:
        stopping.cancel()
        counters.connected[name] = False


async def _next(stream: AsyncIterator[Delivery], stopping: asyncio.Future[Any]) -> Delivery | None:
    """The stream's next delivery; None when it ended or stop was requested.

    After a stop the stream gets one more loop turn to hand over what it holds without
    waiting on I/O; if it is still waiting for input after that, it is cancelled there.
    The generator is never left running: whatever happens, this returns or raises only
    once the pull has finished (so the stream can always be closed afterwards).
    """
    pull = asyncio.ensure_future(_pull(stream))
    try:
        if not stopping.done():
            await asyncio.wait({pull, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not pull.done():
            await asyncio.sleep(0)  # one turn: a delivery that needs no I/O completes here
    except asyncio.CancelledError:
        await _cancel_and_settle(pull)
        raise
    if not pull.done():
        await _cancel_and_settle(pull)
        return None
    return pull.result()


async def _cancel_and_settle(pull: asyncio.Future[Delivery | None]) -> None:
    """Cancel a pull and wait until it has really finished, even if cancelled meanwhile."""
    pull.cancel()
    cancelled_again = False
    while not pull.done():
        try:
            await asyncio.wait({pull})
        except asyncio.CancelledError:
            cancelled_again = True
            pull.cancel()
    if not pull.cancelled() and pull.exception() is not None:
        # the driver failed while closing (e.g. the broker went away): nothing to hand over
        log.debug("driver stream ended with %r while stopping", pull.exception())
    if cancelled_again:
        raise asyncio.CancelledError


async def _pull(stream: AsyncIterator[Delivery]) -> Delivery | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def _sleep_unless(clock: Clock, delay: float, stopping: asyncio.Future[Any]) -> None:
    """clock.sleep(delay), cut short by a stop request."""
    if stopping.done():
        return
    sleeper = asyncio.ensure_future(clock.sleep(delay))
    try:
        await asyncio.wait({sleeper, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
