"""How long one value stands, what a gap counts as, and when a limit counts as reached.

This is the one place the edge cases a claim turns on are decided; every rule (the single
excursion, the cumulative budget, MKT, dwell) and the trace call it, so no two parts of the
gateway can give two answers for one set of readings (docs/sop-semantics.md has the table).

- A value stands from its timestamp until the next value, for at most ``max_gap``. Time
  after that is *unknown*, unless the values on both sides of the silence are out of range:
  then the whole silence is out of range (the probe was out before and after; nothing says
  it came back in between).
- A limit is reached at exactly the limit: "for at least the delay" alarms at the delay, a
  dwell limit or a budget reached exactly is a violation (:func:`reached`).
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000
DEFAULT_MAX_GAP_INTERVALS = 3.0
"""A zone value stands for this many of its slowest sensor's intervals (the stale limit)."""


def reached(elapsed_ns: int, limit_ns: int) -> bool:
    """True when ``elapsed`` has reached ``limit``; exactly the limit counts."""
    return elapsed_ns >= limit_ns


@dataclass(frozen=True, slots=True)
class Stand:
    """How the interval ``[start, end)`` after one value counts.

    ``known_end_ns`` is where the value stops standing (``end_ns`` unless unknown time
    follows); ``out_ns`` is the time out of range; ``[known_end_ns, end_ns)`` is unknown.
    """

    start_ns: int
    end_ns: int
    known_end_ns: int
    out_ns: int

    @property
    def unknown_ns(self) -> int:
        """Nanoseconds of the interval whose temperature is unknown."""
        return self.end_ns - self.known_end_ns

    @property
    def bridged(self) -> bool:
        """True when the whole interval counts as known (no unknown part)."""
        return self.known_end_ns == self.end_ns


def stand(
    start_ns: int,
    end_ns: int,
    *,
    out_before: bool,
    out_after: bool | None,
    known_until_ns: int,
) -> Stand:
    """Count ``[start, end)``: the value before it stands until ``known_until_ns``.

    ``known_until_ns`` is the earlier value's timestamp plus its max gap. ``out_after`` is
    whether the value that ends the interval is out of range (None: no value ends it, the
    interval ends at a custody boundary or "now"). A silence with out-of-range values on
    both sides counts whole as out of range.
    """
    if end_ns <= start_ns:
        return Stand(start_ns, start_ns, start_ns, 0)
    if end_ns <= known_until_ns or (out_before and out_after is True):
        return Stand(start_ns, end_ns, end_ns, end_ns - start_ns if out_before else 0)
    known_end = max(start_ns, known_until_ns)
    return Stand(start_ns, end_ns, known_end, known_end - start_ns if out_before else 0)


def max_gap_ns(intervals_s: list[float], max_gap_s: float | None) -> int:
    """A zone's max gap: the profile's ``max_gap_s``, else 3 x its slowest sensor's interval."""
    if max_gap_s is not None:
        return round(max_gap_s * NS_PER_S)
    slowest = max(intervals_s, default=60.0)
    return round(DEFAULT_MAX_GAP_INTERVALS * slowest * NS_PER_S)
