"""Excursion rules on event time: the single-event detector and the cumulative budget.

Both count time the same way (:mod:`gateway.sop.intervals`): each zone value stands from
its timestamp until the next value, for at most the zone's max gap; a longer silence is
unknown time unless the values on both sides are out of range (then it is out of range).

Single event (:class:`ExcursionDetector`, one per subject such as a zone)::

    inside --out of range--> pending --run lasted the alarm delay--> alarmed
      ^                         |                                      |
      +--back inside by the hysteresis margin, or unknown time---------+
         ("aborted" while pending, "cleared" once alarmed)

- A run starts at the first out-of-range value. It goes on while values are out of range
  or inside the range but not by the hysteresis margin (a noisy probe hovering around the
  limit is one run), and ends at the first value back inside by the margin, or where
  unknown time begins (a silence longer than the max gap not bridged by out-of-range values
  on both sides).
- The alarm is raised when the run has lasted the delay, at exactly ``start + delay`` in
  event time (:func:`~gateway.sop.intervals.reached`): by the timer (:meth:`check`) when
  the last value still stands then, else by the next value when it shows the run went on.
  ``raised_at_ns`` is always ``start + delay``, whichever path saw it first, so the live
  engine and a replay of its journal report the same alarm time.
- Each closed :class:`Excursion` carries its time out of range, counted as the budget
  counts it, so the two rules never disagree about one run.
- Readings older than the newest seen are ignored and counted (``out_of_order``);
  non-finite values are ignored and counted (``ignored``): upstream flags them.
- If an excursion crosses from one side of the range to the other without a reading
  back inside, it stays one excursion with the direction of its first reading; ``min_c``
  and ``max_c`` record both extremes.

Cumulative (:class:`CumulativeBudget`, one per shipment): each out-of-range value counts
for its interval while the shipment is in custody (between :meth:`~CumulativeBudget.resume`
and :meth:`~CumulativeBudget.pause`); unknown time is collected beside it. The total never
resets; the state moves ok -> warn -> violated, each transition once, at the exact crossing
time inside the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gateway.sop.intervals import reached, stand
from gateway.sop.profiles import ProductProfile

_NS_PER_S = 1_000_000_000
_NEVER = 2**63 - 1

Direction = Literal["high", "low"]
DetectorState = Literal["inside", "pending", "alarmed"]
ExcursionEventKind = Literal["raised", "cleared", "aborted"]
BudgetState = Literal["ok", "warn", "violated"]
EndedBy = Literal["reading", "unknown"]


def _seconds_to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


@dataclass(slots=True, frozen=True)
class Excursion:
    """A closed run: from the first out-of-range value to the value (or unknown time) ending it.

    ``out_of_range_s`` counts each out-of-range value for its interval, as the budget does;
    ``ended_by`` is "unknown" when a silence ended it rather than a reading back inside.
    """

    subject: str
    profile: str
    direction: Direction
    started_at_ns: int
    ended_at_ns: int
    peak_c: float
    min_c: float
    max_c: float
    alarmed: bool
    raised_at_ns: int | None = None
    out_of_range_s: float = 0.0
    ended_by: EndedBy = "reading"

    @property
    def duration_s(self) -> float:
        """Seconds from the start to the end."""
        return (self.ended_at_ns - self.started_at_ns) / _NS_PER_S


@dataclass(slots=True, frozen=True)
class ExcursionEvent:
    """A transition of the detector: an alarm raised, an alarm cleared, or a short one aborted.

    ``excursion`` is set on "cleared" and "aborted" (the closed excursion); ``peak_c`` is the
    extreme in the excursion's direction so far.
    """

    kind: ExcursionEventKind
    subject: str
    profile: str
    direction: Direction
    started_at_ns: int
    at_ns: int
    peak_c: float
    raised_at_ns: int | None = None
    by_timer: bool = False
    excursion: Excursion | None = None


@dataclass(slots=True)
class _Open:
    direction: Direction
    started_at_ns: int
    min_c: float
    max_c: float
    raised_at_ns: int | None = None
    out_ns: int = 0

    @property
    def peak_c(self) -> float:
        return self.max_c if self.direction == "high" else self.min_c

    def see(self, temp_c: float) -> None:
        self.min_c = min(self.min_c, temp_c)
        self.max_c = max(self.max_c, temp_c)


@dataclass(slots=True, frozen=True)
class DetectorSnapshot:
    """What a detector knows, to carry across a restart (see ``ZoneMonitor.restore``)."""

    state: DetectorState
    started_at_ns: int | None
    raised_at_ns: int | None


class ExcursionDetector:
    """Single-event excursion state machine for one subject, on event time."""

    def __init__(
        self, profile: ProductProfile, subject: str, *, max_gap_ns: int | None = None
    ) -> None:
        self.profile = profile
        self.subject = subject
        self.max_gap_ns = max_gap_ns
        self._delay_ns = _seconds_to_ns(profile.alarm_delay_s)
        self._open: _Open | None = None
        self._state: DetectorState = "inside"
        self._last: tuple[int, float] | None = None  # the last value: it stands for now
        self._read_at_ns = 0  # when the last value was read (it stands until then + max gap)
        self._last_ts_ns: int | None = None
        self.out_of_order = 0
        self.ignored = 0

    @property
    def state(self) -> DetectorState:
        """Where the machine is: inside, pending (out of range, delay running) or alarmed."""
        return self._state

    @property
    def started_at_ns(self) -> int | None:
        """Start of the open excursion (pending or alarmed), else None."""
        return None if self._open is None else self._open.started_at_ns

    @property
    def raised_at_ns(self) -> int | None:
        """When the open excursion's alarm was raised, else None."""
        return None if self._open is None else self._open.raised_at_ns

    @property
    def peak_c(self) -> float | None:
        """The open excursion's extreme in its direction, else None."""
        return None if self._open is None else self._open.peak_c

    @property
    def direction(self) -> Direction | None:
        """The open excursion's direction, else None."""
        return None if self._open is None else self._open.direction

    def _known_until(self) -> int:
        if self._last is None:
            return _NEVER
        return _NEVER if self.max_gap_ns is None else self._read_at_ns + self.max_gap_ns

    @property
    def pending_deadline_ns(self) -> int | None:
        """When the pending run raises if the last value still stands then, else None."""
        if self._state != "pending" or self._open is None:
            return None
        deadline = self._open.started_at_ns + self._delay_ns
        return deadline if deadline <= self._known_until() else None

    def snapshot(self) -> DetectorSnapshot:
        """The state to compare with (or restore from) the journal after a restart."""
        return DetectorSnapshot(self._state, self.started_at_ns, self.raised_at_ns)

    def observe(
        self, ts_ns: int, temp_c: float, *, read_at_ns: int | None = None
    ) -> list[ExcursionEvent]:
        """Feed one usable value (non-decreasing ts); returns the transitions it caused.

        ``read_at_ns`` is when the value was read if earlier than ``ts_ns``: the trace seeds
        a custody interval with the value the zone had when the shipment arrived.
        """
        if not math.isfinite(temp_c):
            self.ignored += 1
            return []
        if self._last_ts_ns is not None and ts_ns < self._last_ts_ns:
            self.out_of_order += 1
            return []
        self._last_ts_ns = ts_ns
        profile = self.profile
        out = profile.out_of_range(temp_c)
        events = self._advance(ts_ns, out)
        current = self._open
        if current is None:
            if out:
                high = profile.max_c is not None and temp_c > profile.max_c
                self._open = _Open("high" if high else "low", ts_ns, temp_c, temp_c)
                self._state = "pending"
        elif profile.back_inside(temp_c):
            kind: ExcursionEventKind = "aborted" if current.raised_at_ns is None else "cleared"
            events.append(self._close(kind, ts_ns))
        else:
            current.see(temp_c)
        self._last = (ts_ns, temp_c)
        self._read_at_ns = ts_ns if read_at_ns is None else min(read_at_ns, ts_ns)
        if self._state == "pending":
            events.extend(self._raise_if_due(ts_ns, by_timer=False))
        return events

    def check(self, now_ns: int) -> list[ExcursionEvent]:
        """Timer hook: raise a pending run whose delay ran out while its last value stands."""
        if self._state != "pending" or self._open is None:
            return []
        return self._raise_if_due(min(now_ns, self._known_until()), by_timer=True)

    def _advance(self, to_ns: int, out_after: bool) -> list[ExcursionEvent]:
        """Close the interval of the last value at ``to_ns`` (a new value arrived there)."""
        current, last = self._open, self._last
        if current is None or last is None:
            return []
        last_ts, last_temp = last
        st = stand(
            last_ts,
            to_ns,
            out_before=self.profile.out_of_range(last_temp),
            out_after=out_after,
            known_until_ns=self._known_until(),
        )
        current.out_ns += st.out_ns
        events: list[ExcursionEvent] = []
        if self._state == "pending":
            events.extend(self._raise_if_due(st.known_end_ns, by_timer=False))
        if not st.bridged:
            kind: ExcursionEventKind = "aborted" if current.raised_at_ns is None else "cleared"
            events.append(self._close(kind, st.known_end_ns, ended_by="unknown"))
        return events

    def _raise_if_due(self, known_ns: int, *, by_timer: bool) -> list[ExcursionEvent]:
        current = self._open
        assert current is not None
        if not reached(known_ns - current.started_at_ns, self._delay_ns):
            return []
        at_ns = current.started_at_ns + self._delay_ns
        current.raised_at_ns = at_ns
        self._state = "alarmed"
        return [
            ExcursionEvent(
                kind="raised",
                subject=self.subject,
                profile=self.profile.name,
                direction=current.direction,
                started_at_ns=current.started_at_ns,
                at_ns=at_ns,
                peak_c=current.peak_c,
                raised_at_ns=at_ns,
                by_timer=by_timer,
            )
        ]

    def _close(
        self, kind: ExcursionEventKind, at_ns: int, *, ended_by: EndedBy = "reading"
    ) -> ExcursionEvent:
        current = self._open
        assert current is not None
        excursion = Excursion(
            subject=self.subject,
            profile=self.profile.name,
            direction=current.direction,
            started_at_ns=current.started_at_ns,
            ended_at_ns=at_ns,
            peak_c=current.peak_c,
            min_c=current.min_c,
            max_c=current.max_c,
            alarmed=current.raised_at_ns is not None,
            raised_at_ns=current.raised_at_ns,
            out_of_range_s=current.out_ns / _NS_PER_S,
            ended_by=ended_by,
        )
        self._open = None
        self._state = "inside"
        return ExcursionEvent(
            kind=kind,
            subject=self.subject,
            profile=self.profile.name,
            direction=current.direction,
            started_at_ns=current.started_at_ns,
            at_ns=at_ns,
            peak_c=current.peak_c,
            raised_at_ns=current.raised_at_ns,
            excursion=excursion,
        )

    def open_excursion(self, end_ns: int) -> Excursion | None:
        """The open run as if it ended at ``end_ns`` (a custody boundary, "as of"), or None.

        Its time out of range includes the last value's interval up to ``end_ns`` (capped at
        the max gap); nothing in the detector changes.
        """
        current, last = self._open, self._last
        if current is None or last is None:
            return None
        st = stand(
            last[0],
            max(end_ns, last[0]),
            out_before=self.profile.out_of_range(last[1]),
            out_after=None,
            known_until_ns=self._known_until(),
        )
        return Excursion(
            subject=self.subject,
            profile=self.profile.name,
            direction=current.direction,
            started_at_ns=current.started_at_ns,
            ended_at_ns=max(end_ns, current.started_at_ns),
            peak_c=current.peak_c,
            min_c=current.min_c,
            max_c=current.max_c,
            alarmed=current.raised_at_ns is not None,
            raised_at_ns=current.raised_at_ns,
            out_of_range_s=(current.out_ns + st.out_ns) / _NS_PER_S,
            ended_by="reading",
        )


@dataclass(slots=True, frozen=True)
class BudgetEvent:
    """The cumulative budget crossed its warn fraction or was spent, at ``at_ns``."""

    kind: Literal["warn", "violated"]
    subject: str
    profile: str
    at_ns: int
    spent_s: float
    remaining_s: float
    budget_s: float


class CumulativeBudget:
    """Time out of range for one shipment over its custody intervals; never resets.

    Unknown time (silences the intervals function cannot bridge) is summed in
    ``unknown_s`` and listed in ``unknown_spans``; it never counts as spent here, the
    verdict decides what it means (the profile's ``unknown_time``).
    """

    def __init__(
        self,
        profile: ProductProfile,
        subject: str = "",
        *,
        in_custody: bool = True,
        max_gap_ns: int | None = None,
    ) -> None:
        self.profile = profile
        self.subject = subject
        self.max_gap_ns = max_gap_ns
        self._budget_ns = _seconds_to_ns(profile.budget_s)
        self._warn_ns = round(self._budget_ns * profile.budget_warn_fraction)
        self._spent_ns = 0
        self._unknown_ns = 0
        self.unknown_spans: list[tuple[int, int]] = []
        self._state: BudgetState = "ok"
        self._in_custody = in_custody
        # the last value in custody: (interval start, °C, it stands until)
        self._last: tuple[int, float, int] | None = None
        self._unseeded_from: int | None = None  # custody began with no value standing
        self._resumed_ns: int | None = None  # when custody (re)started
        self._seed_read_at: int | None = None  # when the value seeding it was read
        self._fresh_since_resume = False  # a value inside the interval was counted
        self._unseeded_gap_ns: int | None = None
        self._last_ts_ns: int | None = None
        self.out_of_order = 0
        self.ignored = 0

    @property
    def spent_s(self) -> float:
        """Seconds out of range counted so far (closed intervals only)."""
        return self._spent_ns / _NS_PER_S

    @property
    def unknown_s(self) -> float:
        """Seconds of custody whose temperature is unknown (closed intervals only)."""
        return self._unknown_ns / _NS_PER_S

    @property
    def remaining_s(self) -> float:
        """Seconds of budget left, never below zero."""
        return max(0, self._budget_ns - self._spent_ns) / _NS_PER_S

    @property
    def state(self) -> BudgetState:
        """ok, warn (warn fraction spent) or violated (budget spent); only moves forward."""
        return self._state

    @property
    def in_custody(self) -> bool:
        """True while intervals count (between resume and pause)."""
        return self._in_custody

    @property
    def violation_deadline_ns(self) -> int | None:
        """When the budget runs out if the last value stands that long, else None."""
        if self._state == "violated" or self._last is None:
            return None
        ts_ns, temp_c, known_until = self._last
        if not self.profile.out_of_range(temp_c):
            return None
        deadline = ts_ns + max(0, self._budget_ns - self._spent_ns)
        return deadline if deadline <= known_until else None

    def add_interval(self, start_ns: int, end_ns: int, temp_c: float) -> list[BudgetEvent]:
        """Count [start, end) if temp_c is out of range; custody is the caller's business here."""
        if end_ns <= start_ns or not self.profile.out_of_range(temp_c):
            return []
        before = self._spent_ns
        self._spent_ns += end_ns - start_ns
        return self._transitions(start_ns, before, self._spent_ns)

    def _stands_until(self, value_ts_ns: int, max_gap_ns: int | None) -> int:
        gap = self.max_gap_ns if max_gap_ns is None else max_gap_ns
        return _NEVER if gap is None else value_ts_ns + gap

    def observe(
        self, ts_ns: int, temp_c: float, *, max_gap_ns: int | None = None
    ) -> list[BudgetEvent]:
        """Feed one usable value of the shipment's zone; the previous one's interval closes.

        ``max_gap_ns`` is how long this value may stand (default: the budget's).
        """
        if not math.isfinite(temp_c):
            self.ignored += 1
            return []
        if self._reseed(ts_ns, temp_c, max_gap_ns):
            return []
        if self._last_ts_ns is not None and ts_ns < self._last_ts_ns:
            self.out_of_order += 1
            return []
        self._last_ts_ns = ts_ns
        if not self._in_custody:
            return []
        self._fresh_since_resume = True
        events = self._close_interval(ts_ns, self.profile.out_of_range(temp_c))
        self._last = (ts_ns, temp_c, self._stands_until(ts_ns, max_gap_ns))
        return events

    def _reseed(self, ts_ns: int, temp_c: float, max_gap_ns: int | None) -> bool:
        """A value read before the arrival but committed after it: the value standing then.

        The trace seeds an interval with the last value before the arrival that still
        stands at it, whenever that value reached the journal; so does the live budget,
        as long as no value inside the interval has been counted yet.
        """
        resumed = self._resumed_ns
        if resumed is None or not self._in_custody or self._fresh_since_resume:
            return False
        if ts_ns >= resumed or (self._seed_read_at is not None and ts_ns < self._seed_read_at):
            return False
        if self._stands_until(ts_ns, max_gap_ns) < resumed:
            return False
        self._last = (resumed, temp_c, self._stands_until(ts_ns, max_gap_ns))
        self._seed_read_at = ts_ns
        self._unseeded_from = None
        return True

    def pause(self, ts_ns: int) -> list[BudgetEvent]:
        """The shipment left the tracked zones at ts_ns: count up to there, then stop."""
        if not self._in_custody:
            return []
        events = self._close_interval(ts_ns, None)
        self._in_custody = False
        self._last = None
        self._unseeded_from = None
        return events

    def resume(
        self,
        ts_ns: int,
        temp_c: float | None = None,
        *,
        value_ts_ns: int | None = None,
        max_gap_ns: int | None = None,
    ) -> None:
        """The shipment is back in custody at ts_ns; the zone's value then seeds the interval.

        ``value_ts_ns`` is when that value was read (it stands until then + max gap).
        """
        if self._in_custody:
            return  # a duplicate resume must not drop the open interval
        self._in_custody = True
        self._resumed_ns = ts_ns
        self._fresh_since_resume = False
        read_at = ts_ns if value_ts_ns is None else min(value_ts_ns, ts_ns)
        if (
            temp_c is None
            or not math.isfinite(temp_c)
            or self._stands_until(read_at, max_gap_ns) < ts_ns  # too old to stand at arrival
        ):
            self._last = None
            self._seed_read_at = None
            self._unseeded_from = ts_ns
            self._unseeded_gap_ns = self.max_gap_ns if max_gap_ns is None else max_gap_ns
        else:
            self._last = (ts_ns, temp_c, self._stands_until(read_at, max_gap_ns))
            self._seed_read_at = read_at
        if self._last_ts_ns is None or ts_ns > self._last_ts_ns:
            self._last_ts_ns = ts_ns

    def check(self, now_ns: int) -> list[BudgetEvent]:
        """Timer hook: emit transitions the open out-of-range interval reaches by now_ns.

        ``spent_s`` still counts closed intervals only; the next value commits the time.
        """
        if self._last is None:
            return []
        ts_ns, temp_c, known_until = self._last
        end = min(now_ns, known_until)
        if end <= ts_ns or not self.profile.out_of_range(temp_c):
            return []
        return self._transitions(ts_ns, self._spent_ns, self._spent_ns + end - ts_ns)

    def _close_interval(self, end_ns: int, out_after: bool | None) -> list[BudgetEvent]:
        if self._last is None:
            start = self._unseeded_from
            self._unseeded_from = None
            gap = self._unseeded_gap_ns
            if start is not None and gap is not None and end_ns - start > gap:
                self._unknown(start, end_ns)
            return []
        start_ns, temp_c, known_until = self._last
        self._last = None
        st = stand(
            start_ns,
            end_ns,
            out_before=self.profile.out_of_range(temp_c),
            out_after=out_after,
            known_until_ns=known_until,
        )
        if st.unknown_ns:
            self._unknown(st.known_end_ns, st.end_ns)
        if not st.out_ns:
            return []
        before = self._spent_ns
        self._spent_ns += st.out_ns
        return self._transitions(start_ns, before, self._spent_ns)

    def _unknown(self, start_ns: int, end_ns: int) -> None:
        self._unknown_ns += end_ns - start_ns
        self.unknown_spans.append((start_ns, end_ns))

    def _transitions(self, start_ns: int, before_ns: int, after_ns: int) -> list[BudgetEvent]:
        events: list[BudgetEvent] = []
        if self._state == "ok" and after_ns > 0 and after_ns >= self._warn_ns:
            self._state = "warn"
            events.append(self._event("warn", start_ns, before_ns, self._warn_ns))
        if self._state == "warn" and after_ns > 0 and after_ns >= self._budget_ns:
            self._state = "violated"
            events.append(self._event("violated", start_ns, before_ns, self._budget_ns))
        return events

    def _event(
        self, kind: Literal["warn", "violated"], start_ns: int, before_ns: int, threshold_ns: int
    ) -> BudgetEvent:
        # The threshold was crossed inside this interval: at start + what was still missing.
        # For a zero threshold (a zero budget) that is the start of the first counted time.
        crossed_ns = max(threshold_ns, before_ns)
        at_ns = start_ns + (crossed_ns - before_ns)
        return BudgetEvent(
            kind=kind,
            subject=self.subject,
            profile=self.profile.name,
            at_ns=at_ns,
            spent_s=crossed_ns / _NS_PER_S,
            remaining_s=max(0, self._budget_ns - crossed_ns) / _NS_PER_S,
            budget_s=self.profile.budget_s,
        )
