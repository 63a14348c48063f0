"""Ingest: normalise driver deliveries and commit them to the journal in batches.

A delivery is acknowledged upstream (MQTT PUBACK) only after the batch holding it is
committed. Batches close on a row count or a time bound, whichever comes first, so the
journal never fsyncs per reading; a batch of at least a tenth of the row bound also
closes when the queue runs dry (a burst stalled on the upstream inflight window). A failed
commit is retried, never dropped: the drivers feel it as backpressure (the queue is
bounded) and nothing is acknowledged.

The time bound adapts to what the readings mean, not only to the load: each delivery is
normalised and shown to the observers (the SOP engine) as it joins the batch, and a batch
whose readings change an alert closes at once. So a quiet trickle waits out the whole
bound (a commit, an fsync and its page writes every ``commit_interval_ms``, which is what
wears an SD card) while an excursion is journaled, and its alert after it, within a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import JournalError
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, Quality, Reading, Reject
from gateway.ingest.normalize import Normalizer
from gateway.journal.store import JournalRunner

log = logging.getLogger(__name__)

CommitListener = Callable[[Sequence[Reading]], None]
# Sees a delivery's readings before they are committed; True = something waits on this
# batch (an alert transition): commit it now instead of waiting out the interval.
Observer = Callable[[Sequence[Reading]], bool]


@dataclass(slots=True)
class _Pending:
    driver: str
    delivery: Delivery
    readings: Sequence[Reading] = ()


class Ingest:
    """The single writer of readings into the journal."""

    def __init__(
        self,
        runner: JournalRunner,
        normalizer: Normalizer,
        counters: Counters,
        clock: Clock,
        commit_interval_s: float = 0.02,
        commit_max_rows: int = 5000,
        queue_deliveries: int = 1000,
    ) -> None:
        self._runner = runner
        self._normalizer = normalizer
        self._counters = counters
        self._clock = clock
        self._interval = commit_interval_s
        self._max_rows = commit_max_rows
        # A batch this large commits as soon as the queue runs dry instead of waiting out
        # the interval: during a burst, the drivers stop delivering exactly when their
        # upstream window is full of unacknowledged messages (Mosquitto's
        # max_inflight_messages), and only this commit's acks reopen it. A trickle
        # (200 sensors at 1 Hz) never reaches it and keeps the time bound.
        self._early_rows = max(1, commit_max_rows // 10)
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(queue_deliveries)
        self._listeners: list[CommitListener] = []
        self._observers: list[Observer] = []
        self._dead: list[Reject] = []  # dead letters of the batch being built
        self.last_id = 0

    def on_observe(self, observer: Observer) -> None:
        """Show observer every delivery's readings as they join a batch (before the commit).

        Observers keep what they conclude until the commit listeners run: nothing they
        derive may be journaled before the readings it derives from.
        """
        self._observers.append(observer)

    def on_commit(self, listener: CommitListener) -> None:
        """Call listener with every committed batch of readings (SOP engine, sinks)."""
        self._listeners.append(listener)

    async def submit(self, driver: str, delivery: Delivery) -> None:
        """Queue a delivery for the next commit; waits when the journal falls behind."""
        self._counters.received[driver] += len(delivery.samples)
        await self._queue.put(_Pending(driver, delivery))

    async def close(self) -> None:
        """Ask run() to commit what is queued and return."""
        await self._queue.put(None)

    async def run(self) -> None:
        """Commit batches until close() is called."""
        loop = asyncio.get_running_loop()
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            rows = len(first.delivery.samples)
            urgent = self._take(first)
            deadline = loop.time() + self._interval
            while rows < self._max_rows and not urgent:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    if rows >= self._early_rows:
                        break
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            item = await self._queue.get()
                    except TimeoutError:
                        break
                if item is None:
                    closing = True
                    break
                batch.append(item)
                rows += len(item.delivery.samples)
                urgent = self._take(item)
            await self._commit(batch)

    def _take(self, pending: _Pending) -> bool:
        """Normalise a delivery joining the batch, count its rejects, show it to observers."""
        result = self._normalizer.normalize(pending.delivery.samples)
        pending.readings = result.readings
        for reject in (*pending.delivery.rejects, *result.rejects):
            self._counters.drop(pending.driver, reject.reason)
            if reject.dead_letter:
                self._dead.append(reject)
        urgent = False
        if result.readings:
            for observer in self._observers:
                urgent = observer(result.readings) or urgent
        return urgent

    async def _commit(self, batch: list[_Pending]) -> None:
        readings: list[Reading] = []
        for pending in batch:
            readings.extend(pending.readings)
        dead, self._dead = self._dead, []
        counters = self._counters
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            try:
                self.last_id = await self._runner.call(
                    self._runner.journal.commit_batch, readings, dead, self._clock.now_ns()
                )
                break
            except JournalError as exc:
                counters.error("journal", str(exc))
                delay = backoff.next()
                log.error("journal commit failed, retrying in %.1f s: %s", delay, exc)
                await self._clock.sleep(delay)
        counters.committed += len(readings)
        counters.dead_lettered += len(dead)
        for r in readings:
            if r.quality:
                for flag in Quality(r.quality):
                    counters.flagged[flag.name or str(int(flag))] += 1
        for pending in batch:
            try:
                pending.delivery.ack()
            except Exception as exc:
                # Committed but not acknowledged: the broker redelivers and the replay is
                # idempotent downstream (same measurement, tags and timestamp).
                counters.error(pending.driver, f"ack failed: {exc}")
        for listener in self._listeners:
            listener(readings)
