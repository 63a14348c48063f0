"""Excursion rules on event time: the single-event detector and the cumulative budget.

Single event (:class:`ExcursionDetector`, one per subject such as a zone)::

    inside --out of range--> pending --out of range for >= alarm delay--> alarmed
      ^                         |                                            |
      +----back in range--------+ ("aborted", no alarm)                      |
      +----back inside by the hysteresis margin------------------------------+ ("cleared")

- The excursion starts at the first out-of-range reading, not when the alarm fires.
- "Continuously out of range" is judged on the readings' own timestamps: the alarm is
  raised by the first reading with ``ts - started_at >= alarm_delay`` while every reading
  since the start was out of range.
- Alarmed, a reading inside the range but not by the hysteresis margin keeps the alarm
  (no flapping); an out-of-range reading keeps it too.
- A sensor that goes silent must not hide an alarm: while pending, ``pending_deadline_ns``
  is ``started_at + alarm_delay`` and a timer calls :meth:`ExcursionDetector.check`. If the
  last known value is still out of range at the deadline the alarm is raised with
  ``raised_at`` = the deadline and ``by_timer`` = True. A reading that arrives later with an
  older timestamp and shows the excursion had ended does not un-raise it; it clears it.
- Readings older than the newest seen are ignored and counted (``out_of_order``);
  non-finite values are ignored and counted (``ignored``): upstream flags them.
- If an excursion crosses from one side of the range to the other without a reading
  inside, it stays one excursion with the direction of its first reading; ``min_c`` and
  ``max_c`` record both extremes.

Cumulative (:class:`CumulativeBudget`, one per shipment): each out-of-range sample counts
for its interval, until the next sample, while the shipment is in custody (between
:meth:`~CumulativeBudget.resume` and :meth:`~CumulativeBudget.pause`). The total never
resets; the state moves ok -> warn -> violated, each transition once, at the exact
crossing time inside the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gateway.sop.profiles import ProductProfile

_NS_PER_S = 1_000_000_000

Direction = Literal["high", "low"]
DetectorState = Literal["inside", "pending", "alarmed"]
ExcursionEventKind = Literal["raised", "cleared", "aborted"]
BudgetState = Literal["ok", "warn", "violated"]


def _seconds_to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


@dataclass(slots=True, frozen=True)
class Excursion:
    """A closed excursion: from the first out-of-range reading to the reading that ended it."""

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

    @property
    def peak_c(self) -> float:
        return self.max_c if self.direction == "high" else self.min_c

    def see(self, temp_c: float) -> None:
        self.min_c = min(self.min_c, temp_c)
        self.max_c = max(self.max_c, temp_c)


class ExcursionDetector:
    """Single-event excursion state machine for one subject, on event time."""

    def __init__(self, profile: ProductProfile, subject: str) -> None:
        self.profile = profile
        self.subject = subject
        self._delay_ns = _seconds_to_ns(profile.alarm_delay_s)
        self._open: _Open | None = None
        self._state: DetectorState = "inside"
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
    def pending_deadline_ns(self) -> int | None:
        """When the pending excursion raises if nothing changes (start + delay), else None."""
        if self._state != "pending" or self._open is None:
            return None
        return self._open.started_at_ns + self._delay_ns

    def observe(self, ts_ns: int, temp_c: float) -> list[ExcursionEvent]:
        """Feed one usable reading (non-decreasing ts); returns the transitions it caused."""
        if not math.isfinite(temp_c):
            self.ignored += 1
            return []
        if self._last_ts_ns is not None and ts_ns < self._last_ts_ns:
            self.out_of_order += 1
            return []
        self._last_ts_ns = ts_ns
        profile = self.profile
        if self._state == "inside":
            if not profile.out_of_range(temp_c):
                return []
            high = profile.max_c is not None and temp_c > profile.max_c
            self._open = _Open("high" if high else "low", ts_ns, temp_c, temp_c)
            self._state = "pending"
            return self._raise_if_due(ts_ns, by_timer=False)
        return self._observe_open(ts_ns, temp_c)

    def _observe_open(self, ts_ns: int, temp_c: float) -> list[ExcursionEvent]:
        profile = self.profile
        current = self._open
        assert current is not None
        if self._state == "pending":
            if profile.out_of_range(temp_c):
                current.see(temp_c)
                return self._raise_if_due(ts_ns, by_timer=False)
            return [self._close("aborted", ts_ns)]
        if profile.back_inside(temp_c):
            return [self._close("cleared", ts_ns)]
        current.see(temp_c)
        return []

    def check(self, now_ns: int) -> list[ExcursionEvent]:
        """Timer hook: raise a pending excursion whose deadline passed with no reading since."""
        deadline = self.pending_deadline_ns
        if deadline is None or now_ns < deadline:
            return []
        return self._raise_if_due(deadline, by_timer=True)

    def _raise_if_due(self, at_ns: int, *, by_timer: bool) -> list[ExcursionEvent]:
        current = self._open
        assert current is not None
        if at_ns - current.started_at_ns < self._delay_ns:
            return []
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

    def _close(self, kind: ExcursionEventKind, at_ns: int) -> ExcursionEvent:
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
    """Time out of range for one shipment over its custody intervals; never resets."""

    def __init__(
        self, profile: ProductProfile, subject: str = "", *, in_custody: bool = True
    ) -> None:
        self.profile = profile
        self.subject = subject
        self._budget_ns = _seconds_to_ns(profile.budget_s)
        self._warn_ns = round(self._budget_ns * profile.budget_warn_fraction)
        self._spent_ns = 0
        self._state: BudgetState = "ok"
        self._in_custody = in_custody
        self._last: tuple[int, float] | None = None  # last sample in custody
        self._last_ts_ns: int | None = None
        self.out_of_order = 0
        self.ignored = 0

    @property
    def spent_s(self) -> float:
        """Seconds out of range counted so far (closed intervals only)."""
        return self._spent_ns / _NS_PER_S

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
        """When the budget runs out if the last sample stays out of range, else None."""
        if self._state == "violated" or self._last is None:
            return None
        ts_ns, temp_c = self._last
        if not self.profile.out_of_range(temp_c):
            return None
        return ts_ns + max(0, self._budget_ns - self._spent_ns)

    def add_interval(self, start_ns: int, end_ns: int, temp_c: float) -> list[BudgetEvent]:
        """Count [start, end) if temp_c is out of range; custody is the caller's business here."""
        if end_ns <= start_ns or not self.profile.out_of_range(temp_c):
            return []
        before = self._spent_ns
        self._spent_ns += end_ns - start_ns
        return self._transitions(start_ns, before, self._spent_ns)

    def observe(self, ts_ns: int, temp_c: float) -> list[BudgetEvent]:
        """Feed one usable reading of the shipment's zone; the previous one's interval closes."""
        if not math.isfinite(temp_c):
            self.ignored += 1
            return []
        if self._last_ts_ns is not None and ts_ns < self._last_ts_ns:
            self.out_of_order += 1
            return []
        self._last_ts_ns = ts_ns
        if not self._in_custody:
            return []
        events = self._close_interval(ts_ns)
        self._last = (ts_ns, temp_c)
        return events

    def pause(self, ts_ns: int) -> list[BudgetEvent]:
        """The shipment left the tracked zones at ts_ns: count up to there, then stop."""
        if not self._in_custody:
            return []
        events = self._close_interval(ts_ns)
        self._in_custody = False
        self._last = None
        return events

    def resume(self, ts_ns: int, temp_c: float | None = None) -> None:
        """The shipment is back in custody at ts_ns; temp_c seeds the interval if known."""
        if self._in_custody:
            return  # a duplicate resume must not drop the open interval
        self._in_custody = True
        self._last = None if temp_c is None or not math.isfinite(temp_c) else (ts_ns, temp_c)
        if self._last_ts_ns is None or ts_ns > self._last_ts_ns:
            self._last_ts_ns = ts_ns

    def check(self, now_ns: int) -> list[BudgetEvent]:
        """Timer hook: emit transitions the open out-of-range interval reaches by now_ns.

        ``spent_s`` still counts closed intervals only; the next reading commits the time.
        """
        if self._last is None:
            return []
        ts_ns, temp_c = self._last
        if now_ns <= ts_ns or not self.profile.out_of_range(temp_c):
            return []
        return self._transitions(ts_ns, self._spent_ns, self._spent_ns + now_ns - ts_ns)

    def _close_interval(self, end_ns: int) -> list[BudgetEvent]:
        if self._last is None:
            return []
        start_ns, temp_c = self._last
        self._last = None
        return self.add_interval(start_ns, end_ns, temp_c)

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
