"""Ingest: normalise driver deliveries and commit them to the journal in batches.

A delivery is acknowledged upstream (MQTT PUBACK) only after the batch holding it is
committed. Batches close on a row count or a time bound, whichever comes first, so the
journal never fsyncs per reading; a batch of at least a tenth of the row bound also
closes when the queue runs dry (a burst stalled on the upstream inflight window).

Every sample passes the input bounds first (gateway/ingest/bounds.py): a number the
journal or the rules cannot hold is dead-lettered, never written. A redelivered copy of
a journaled reading is skipped, a conflicting one refused (gateway/journal/identity.py),
before anything observes it. A commit the storage fails (disk full, I/O) is retried,
never dropped: the drivers feel it as backpressure (the queue is bounded) and nothing is
acknowledged. A commit SQLite refuses for the records themselves is bisected and the
offenders dead-lettered (``_store``), so one poison message can never stop the readings
behind it.

The time bound adapts to what the readings mean, not only to the load: each delivery is
normalised and shown to the observers (the SOP engine) as it joins the batch, and a batch
whose readings change an alert stops waiting: it takes what is already queued and
commits. So a quiet trickle waits out the whole bound (a commit, an fsync and its page
writes every ``commit_interval_ms``, which is what wears an SD card) while an excursion is
journaled, and its alert after it, within a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.errors import JournalError, JournalRefused, JournalUnwritable
from gateway.core.metrics import Counters
from gateway.core.model import Delivery, Quality, Reading, Reject
from gateway.ingest.bounds import screen
from gateway.ingest.normalize import Normalizer
from gateway.journal.health import JournalHealth
from gateway.journal.identity import ReadingIdentity, Screened
from gateway.journal.store import JournalRunner

log = logging.getLogger(__name__)

CommitListener = Callable[[Sequence[Reading]], None]
# Sees a delivery's readings before they are committed; True = something waits on this
# batch (an alert transition): commit it now instead of waiting out the interval.
Observer = Callable[[Sequence[Reading]], bool]
RejectListener = Callable[[Sequence[Reject]], None]


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
        health: JournalHealth | None = None,
    ) -> None:
        self._runner = runner
        self._health = health
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
        self._refusals: list[Reject] = []  # every reject of the batch being built
        self._reject_listeners: list[RejectListener] = []
        self._identity = ReadingIdentity()
        self._identity_loaded = False
        self.last_id = 0

    def on_observe(self, observer: Observer) -> None:
        """Show observer every delivery's readings as they join a batch (before the commit).

        Observers keep what they conclude until the commit listeners run: nothing they
        derive may be journaled before the readings it derives from.
        """
        self._observers.append(observer)

    def on_rejects(self, listener: RejectListener) -> None:
        """Call listener with every committed batch's rejects (the identity alerts)."""
        self._reject_listeners.append(listener)

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
        if not self._identity_loaded:
            await self._runner.call(self._identity.load, self._runner.journal.connection)
            self._identity_loaded = True
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            rows = len(first.delivery.samples)
            urgent = await self._take(first)
            deadline = loop.time() + self._interval
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    # Urgent: no more waiting, but what is already queued joins first
                    # (in a burst, an alert storm must not cut the batches into slivers).
                    if urgent or rows >= self._early_rows:
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
                urgent = await self._take(item) or urgent
            await self._commit(batch)

    async def _take(self, pending: _Pending) -> bool:
        """Bound, normalise and de-duplicate a delivery joining the batch; count its rejects.

        Then show its new readings to the observers. Only a delivery with readings behind
        their sensor's newest journaled time waits for a journal lookup.
        """
        delivery = pending.delivery
        counters = self._counters
        samples, out_of_bounds = screen(delivery.samples, delivery.origins)
        result = self._normalizer.normalize(samples)
        readings: Sequence[Reading] = result.readings
        rejects: list[Reject] = [*delivery.rejects, *out_of_bounds, *result.rejects]
        behind = self._identity.behind(readings) if readings else None
        if behind is not None:
            try:
                screened = await self._runner.call(
                    self._identity.resolve, self._runner.journal.connection, readings, behind
                )
            except Exception as exc:  # the journal cannot be read: keep them (at least once)
                log.error("journal lookup for redeliveries failed, keeping them: %s", exc)
                screened = Screened(readings)
            readings = screened.fresh
            rejects.extend(screened.conflicts)
            if screened.duplicates:
                counters.duplicates[pending.driver] += len(screened.duplicates)
        pending.readings = readings
        for reject in rejects:
            counters.drop(pending.driver, reject.reason)
            self._refusals.append(reject)
            if reject.dead_letter:
                self._dead.append(reject)
        urgent = False
        if readings:
            for observer in self._observers:
                urgent = observer(readings) or urgent
        return urgent

    async def _commit(self, batch: list[_Pending]) -> None:
        readings: list[Reading] = []
        for pending in batch:
            readings.extend(pending.readings)
        dead, self._dead = self._dead, []
        refusals, self._refusals = self._refusals, []
        counters = self._counters
        backoff = Backoff(initial=0.2, maximum=10.0)
        now_ns = self._clock.now_ns()
        while True:
            try:
                stored = await self._runner.call(self._store, readings, dead, now_ns)
                break
            except JournalError as exc:
                counters.error("journal", str(exc))
                if self._health is not None and isinstance(exc, JournalUnwritable):
                    self._health.failed("ingest", exc, self._clock.now_ns())
                delay = backoff.next()
                log.error("journal commit failed, retrying in %.1f s: %s", delay, exc)
                await self._clock.sleep(delay)
        if self._health is not None and not self._health.writable:
            self._health.recovered(self._clock.now_ns())
        self._identity.committed()
        self.last_id = max(self.last_id, stored.last_id)
        if stored.refused:
            refused = {id(r) for r in stored.refused}
            readings = [r for r in readings if id(r) not in refused]
        for reject in stored.dead:
            counters.drop(self._driver_of(batch, reject.source), reject.reason)
        counters.committed += len(readings)
        counters.dead_lettered += len(dead) + len(stored.dead) - len(stored.refused_dead)
        for r in readings:
            if r.quality:
                for flag in Quality(r.quality):
                    counters.flagged[flag.name or str(int(flag))] += 1
        for pending in batch:
            try:
                pending.delivery.ack()
            except Exception as exc:
                # Committed but not acknowledged: the broker redelivers and the journal
                # skips the copy (gateway/journal/identity.py).
                counters.error(pending.driver, f"ack failed: {exc}")
        for listener in self._listeners:
            listener(readings)
        if refusals:
            for reject_listener in self._reject_listeners:
                reject_listener(refusals)

    @staticmethod
    def _driver_of(batch: Sequence[_Pending], source: str) -> str:
        """The driver whose readings carry a source (counters are by driver)."""
        for pending in batch:
            if any(r.source == source for r in pending.readings[:1]):
                return pending.driver
        return "journal"

    def _store(self, readings: list[Reading], dead: list[Reject], now_ns: int) -> _Stored:
        """Commit on the journal thread; a batch SQLite refuses is bisected (poison guard).

        A refusal of the records themselves (JournalRefused: a value SQLite cannot bind
        or store, whatever got past the bounds) must not block the readings around it:
        the batch is split in halves until the offending records are alone, each is
        dead-lettered with the error and the rest is committed. A storage failure
        (JournalUnwritable) is raised: the caller retries the whole batch.
        """
        journal = self._runner.journal
        out = _Stored()
        try:
            out.last_id = journal.commit_batch(readings, dead, now_ns)
        except JournalRefused as exc:
            if len(readings) + len(dead) <= 1:
                record: Reading | Reject = readings[0] if readings else dead[0]
                offender = _refused(record, exc)
                log.error("journal refused a record; dead-lettered: %s", offender.detail)
                try:
                    out.last_id = journal.commit_batch([], [offender], now_ns)
                except JournalRefused as again:
                    # A plain dead letter refused too: the journal, not the record, is wrong.
                    msg = f"journal refuses even a dead letter: {again}"
                    raise JournalUnwritable(msg) from again
                out.dead.append(offender)
                if isinstance(record, Reading):
                    out.refused.append(record)
                else:
                    out.refused_dead.append(record)
                return out
            # Halves of readings-then-dead-letters: each call gets strictly fewer.
            half = (len(readings) + len(dead)) // 2
            parts: tuple[tuple[list[Reading], list[Reject]], ...]
            if half <= len(readings):
                parts = ((readings[:half], []), (readings[half:], dead))
            else:
                cut = half - len(readings)
                parts = ((readings, dead[:cut]), ([], dead[cut:]))
            for part_r, part_d in parts:
                out.merge(self._store(part_r, part_d, now_ns))
        return out


REFUSED = "journal_refused"


def _refused(record: Reading | Reject, exc: Exception) -> Reject:
    """The dead letter of a record the journal refused, bounded and bindable."""
    if isinstance(record, Reject):
        raw = record.raw if isinstance(record.raw, bytes) else repr(record.raw).encode()
        topic = record.topic if isinstance(record.topic, str) else repr(record.topic)
        return Reject(
            reason=REFUSED,
            source=str(record.source)[:200],
            raw=raw[:2048],
            topic=topic[:200],
            detail=f"dead letter {str(record.reason)[:60]!r}: {exc}"[:500],
            dead_letter=True,
        )
    return Reject(
        reason=REFUSED,
        source=str(record.source)[:200],
        raw=repr(record).encode()[:2048],
        detail=f"reading of {str(record.sensor)[:64]!r}: {exc}"[:500],
        dead_letter=True,
    )


@dataclass(slots=True)
class _Stored:
    """What one guarded commit did."""

    last_id: int = 0
    dead: list[Reject] = field(default_factory=list)  # dead letters of refused records
    refused: list[Reading] = field(default_factory=list)  # readings not written
    refused_dead: list[Reject] = field(default_factory=list)  # dead letters not written

    def merge(self, other: _Stored) -> None:
        self.last_id = max(self.last_id, other.last_id)
        self.dead.extend(other.dead)
        self.refused.extend(other.refused)
        self.refused_dead.extend(other.refused_dead)
