"""Mean kinetic temperature (USP <1079.2>), batch and over a sliding window.

T_mkt = (dH/R) / -ln( sum(t_i * exp(-dH/(R*T_i))) / sum(t_i) ), T_i in kelvin, t_i the
time each sample stands for. A reading stands for the time until the next reading, for at
most ``max_gap_s`` (gateway.sop.intervals: a value stands for at most the max gap); the
window's last reading until the window end. The rest of a longer silence is unknown time:
it is left out of the weights, not credited to the reading before it, and not dropped
with that reading either (a warm reading before a silent probe still weighs its max gap).
The coverage (weighted seconds over the window) is reported beside the value.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

KELVIN_OFFSET = 273.15
DEFAULT_DH_OVER_R_K = 10_000.0
_NS_PER_S = 1_000_000_000


def _kelvin(temp_c: float) -> float:
    temp_k = temp_c + KELVIN_OFFSET
    if not temp_k > 0 or not math.isfinite(temp_k):
        msg = f"temperature {temp_c!r} °C is not a physical temperature"
        raise ValueError(msg)
    return temp_k


def mean_kinetic_temperature(
    samples: Sequence[tuple[float, float]], dh_over_r_k: float = DEFAULT_DH_OVER_R_K
) -> float:
    """MKT in °C of (temp_c, duration_s) samples; raises ValueError when no time is covered."""
    if dh_over_r_k <= 0:
        msg = "dh_over_r_k must be positive"
        raise ValueError(msg)
    exponents: list[float] = []
    weights: list[float] = []
    for temp_c, duration_s in samples:
        if not duration_s >= 0 or not math.isfinite(duration_s):
            msg = f"sample duration {duration_s!r} s must be finite and >= 0"
            raise ValueError(msg)
        temp_k = _kelvin(temp_c)
        if duration_s > 0:
            exponents.append(-dh_over_r_k / temp_k)
            weights.append(duration_s)
    if not weights:
        msg = "MKT needs at least one sample with a positive duration"
        raise ValueError(msg)
    # log-sum-exp keeps exp(-dH/RT) away from underflow for cold samples or a large dH.
    top = max(exponents)
    total = math.fsum(weights)
    scaled = math.fsum(w * math.exp(e - top) for w, e in zip(weights, exponents, strict=True))
    mkt_k = -dh_over_r_k / (top + math.log(scaled / total))
    mkt_c = mkt_k - KELVIN_OFFSET
    # Mathematically MKT lies within [min, max]; clamp away float rounding at the edges.
    hottest = max(t for (t, d) in samples if d > 0)
    coldest = min(t for (t, d) in samples if d > 0)
    return min(max(mkt_c, coldest), hottest)


def time_weighted_samples(
    readings: Sequence[tuple[int, float]],
    window_end_ns: int | None = None,
    max_gap_s: float | None = None,
) -> list[tuple[float, float]]:
    """(ts_ns, temp_c) readings to (temp_c, duration_s) samples, each until the next reading.

    The last reading stands until ``window_end_ns`` or, without one, for the median
    interval (1 s when there is no interval). A sample weighs at most ``max_gap_s``;
    zero-length samples are dropped.
    """
    ordered = sorted(readings, key=lambda r: r[0])
    if not ordered:
        return []
    durations = [(b[0] - a[0]) / _NS_PER_S for a, b in itertools.pairwise(ordered)]
    if window_end_ns is not None:
        last = max(0.0, (window_end_ns - ordered[-1][0]) / _NS_PER_S)
    else:
        known = [d for d in durations if d > 0 and (max_gap_s is None or d <= max_gap_s)]
        last = statistics.median(known) if known else 1.0
    durations.append(last)
    return [
        (temp_c, duration_s if max_gap_s is None else min(duration_s, max_gap_s))
        for (_, temp_c), duration_s in zip(ordered, durations, strict=True)
        if duration_s > 0
    ]


@dataclass(slots=True)
class _Entry:
    ts_ns: int
    temp_c: float
    weight_s: float = 0.0  # time until the next reading; 0 while it is the newest or a gap
    term: float = 0.0  # weight_s * exp(-dH / (R * T))


class RollingMkt:
    """MKT over a sliding window of readings, updated in O(1) amortised per reading.

    The window holds the readings with ``ts >= newest_ts - window_s``; each reading stands
    until the next one, so ``value()`` equals :func:`mean_kinetic_temperature` of
    :func:`time_weighted_samples` of the window with ``window_end_ns`` = the newest ts, or
    ``now_ns`` when given (the newest reading then stands until now).
    """

    def __init__(
        self,
        window_s: float,
        dh_over_r_k: float = DEFAULT_DH_OVER_R_K,
        max_gap_s: float | None = None,
    ) -> None:
        if not window_s > 0:
            msg = "window_s must be positive"
            raise ValueError(msg)
        if dh_over_r_k <= 0:
            msg = "dh_over_r_k must be positive"
            raise ValueError(msg)
        self._window_ns = round(window_s * _NS_PER_S)
        self._a = dh_over_r_k
        self._max_gap_s = max_gap_s
        self._entries: deque[_Entry] = deque()
        self._sum_terms = 0.0
        self._sum_weights = 0.0
        self._evicted_since_resum = 0
        self.out_of_order = 0

    def __len__(self) -> int:
        """Number of readings in the window."""
        return len(self._entries)

    def window(self) -> list[tuple[int, float]]:
        """The readings currently in the window as (ts_ns, temp_c), oldest first."""
        return [(e.ts_ns, e.temp_c) for e in self._entries]

    def observe(self, ts_ns: int, temp_c: float) -> None:
        """Add a reading; a reading older than the newest one is ignored and counted."""
        _kelvin(temp_c)  # refuse a non-physical value before it enters the sums
        entries = self._entries
        if entries:
            newest = entries[-1]
            if ts_ns < newest.ts_ns:
                self.out_of_order += 1
                return
            weight_s = (ts_ns - newest.ts_ns) / _NS_PER_S
            if self._max_gap_s is not None:
                weight_s = min(weight_s, self._max_gap_s)
            if weight_s > 0:
                newest.weight_s = weight_s
                newest.term = weight_s * math.exp(-self._a / (newest.temp_c + KELVIN_OFFSET))
                self._sum_weights += newest.weight_s
                self._sum_terms += newest.term
        entries.append(_Entry(ts_ns, temp_c))
        horizon = ts_ns - self._window_ns
        while entries[0].ts_ns < horizon:
            old = entries.popleft()
            self._sum_weights -= old.weight_s
            self._sum_terms -= old.term
            self._evicted_since_resum += 1
        # Subtracting terms accumulates rounding; re-add from scratch once per full turnover
        # of the window, which keeps the cost O(1) amortised.
        if self._evicted_since_resum >= len(entries):
            self._sum_weights = math.fsum(e.weight_s for e in entries)
            self._sum_terms = math.fsum(e.term for e in entries)
            self._evicted_since_resum = 0

    def covered_s(self) -> float:
        """Seconds of the window the readings stand for (each for at most the max gap)."""
        return max(0.0, self._sum_weights)

    def value(self, now_ns: int | None = None) -> float | None:
        """MKT in °C of the window, or None when it covers no time yet."""
        weights = self._sum_weights
        terms = self._sum_terms
        if now_ns is not None and self._entries:
            newest = self._entries[-1]
            extra = (now_ns - newest.ts_ns) / _NS_PER_S
            if self._max_gap_s is not None:
                extra = min(extra, self._max_gap_s)
            if extra > 0:
                weights += extra
                terms += extra * math.exp(-self._a / (newest.temp_c + KELVIN_OFFSET))
        if weights <= 0 or terms <= 0:
            return None
        mkt_c = -self._a / math.log(terms / weights) - KELVIN_OFFSET
        return mkt_c
