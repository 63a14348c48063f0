"""Zone excursion monitoring: committed readings -> zone value -> excursion events.

Each zone with a product profile has one :class:`ExcursionDetector`. The zone's value at a
reading's time is the worst (or the median) of its sensors' latest usable readings;
sensors silent for longer than ``STALE_INTERVALS`` of their interval drop out, so a dead
probe cannot hold a zone in alarm (sensor health reports it separately).
Rules run on event time; ``check(now_ns)`` is the timer that raises a pending excursion
when readings stop arriving.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config import GatewayConfig
from gateway.core.model import UNUSABLE_MASK, Reading
from gateway.sop.excursion import ExcursionDetector, ExcursionEvent
from gateway.sop.mkt import RollingMkt
from gateway.sop.profiles import ProductProfile

STALE_INTERVALS = 3.0
MKT_SAMPLE_S = 60.0  # one zone value per minute into the rolling MKT: 30 days = 43k points
MKT_MIN_COVERAGE = 0.5  # judge MKT only once the window is at least half covered
MKT_MAX_GAP_S = 3600.0  # a longer silence is a data gap, not an hour at the last value


@dataclass(slots=True, frozen=True)
class MktEvent:
    """A zone's rolling mean kinetic temperature crossed its profile's limit, or came back."""

    kind: str  # "raised" | "cleared"
    subject: str
    profile: str
    at_ns: int
    value_c: float
    limit_c: float
    window_s: float
    dh_kj_per_mol: float


def severity(profile: ProductProfile, temp_c: float) -> float:
    """How far outside the band a value is (positive = out of range, negative = inside)."""
    out = float("-inf")
    if profile.max_c is not None:
        out = max(out, temp_c - profile.max_c)
    if profile.min_c is not None:
        out = max(out, profile.min_c - temp_c)
    return out


def _worst(profile: ProductProfile, values: list[float]) -> float:
    """max(values, key=severity) (ties to the first), without a call per value."""
    hi, lo = profile.max_c, profile.min_c
    if len(values) == 1:
        return values[0]
    if lo is None and hi is not None:
        return max(values)
    if hi is None and lo is not None:
        return min(values)
    if hi is not None and lo is not None:
        return max(values, key=lambda t: max(t - hi, lo - t))
    return values[0]  # no bounds: every value is equally (un)remarkable


@dataclass(slots=True)
class _Zone:
    profile: ProductProfile
    aggregate: str
    detector: ExcursionDetector
    latest: dict[str, tuple[int, float]] = field(default_factory=dict)
    mkt: RollingMkt | None = None
    mkt_last_ns: int = 0
    mkt_first_ns: int | None = None
    mkt_high: bool = False


class ZoneMonitor:
    """Feeds every profiled zone's detector from committed readings."""

    def __init__(self, config: GatewayConfig) -> None:
        profiles = config.all_profiles()
        self._interval_ns = {s.id: int(s.interval_s * 1e9) for s in config.sensors}
        self._zones: dict[str, _Zone] = {}
        # Latest usable reading per sensor of every zone, profiled or not (handoff temps).
        self._latest: dict[str, dict[str, tuple[int, float]]] = {z.id: {} for z in config.zones}
        for zone in config.zones:
            if zone.profile is None:
                continue
            profile = profiles[zone.profile]
            mkt = (
                RollingMkt(profile.mkt_window_s, profile.dh_over_r_k, max_gap_s=MKT_MAX_GAP_S)
                if profile.mkt_limit_c is not None
                else None
            )
            self._zones[zone.id] = _Zone(
                profile,
                zone.aggregate,
                ExcursionDetector(profile, zone.id),
                latest=self._latest[zone.id],
                mkt=mkt,
            )
        self.zone_values: list[tuple[str, int, float]] = []

    @property
    def zones(self) -> dict[str, ProductProfile]:
        """Monitored zones and their profiles."""
        return {zid: z.profile for zid, z in self._zones.items()}

    def detector(self, zone: str) -> ExcursionDetector:
        """The detector of one zone (status views and tests)."""
        return self._zones[zone].detector

    def observe(self, readings: Iterable[Reading]) -> list[ExcursionEvent | MktEvent]:
        """Evaluate a committed batch; returns the excursion transitions it caused.

        The zone values computed on the way are left in ``zone_values`` (zone, ts, °C) for
        rules that follow a zone rather than a sensor (shipment budgets).
        """
        events: list[ExcursionEvent | MktEvent] = []
        self.zone_values = []
        for r in readings:
            if r.quality & UNUSABLE_MASK:  # Quality(r.quality).usable, without an enum per reading
                continue
            self._latest.setdefault(r.zone, {})[r.sensor] = (r.ts_ns, r.temp_c)
            zone = self._zones.get(r.zone)
            if zone is None:
                # No profile to hold, but shipments may sit here (a warm dock burns budget).
                mean = self.zone_temperature(r.zone, r.ts_ns)
                if mean is not None:
                    self.zone_values.append((r.zone, r.ts_ns, mean))
                continue
            value = self._zone_value(zone, r.ts_ns)
            if value is not None:
                self.zone_values.append((r.zone, r.ts_ns, value))
                events.extend(zone.detector.observe(r.ts_ns, value))
                mkt_event = self._observe_mkt(zone, r.ts_ns, value)
                if mkt_event is not None:
                    events.append(mkt_event)
        return events

    def check(self, now_ns: int) -> list[ExcursionEvent]:
        """Timer: raise pending excursions whose alarm delay ran out without new readings."""
        events: list[ExcursionEvent] = []
        for zone in self._zones.values():
            events.extend(zone.detector.check(now_ns))
        return events

    def next_deadline_ns(self) -> int | None:
        """The earliest pending alarm deadline, if any."""
        deadlines = [
            d for z in self._zones.values() if (d := z.detector.pending_deadline_ns) is not None
        ]
        return min(deadlines, default=None)

    def _observe_mkt(self, zone: _Zone, ts_ns: int, value: float) -> MktEvent | None:
        mkt, profile = zone.mkt, zone.profile
        if mkt is None or profile.mkt_limit_c is None:
            return None
        if ts_ns - zone.mkt_last_ns < MKT_SAMPLE_S * 1e9:
            return None
        zone.mkt_last_ns = ts_ns
        if zone.mkt_first_ns is None:
            zone.mkt_first_ns = ts_ns
        mkt.observe(ts_ns, value)
        if ts_ns - zone.mkt_first_ns < MKT_MIN_COVERAGE * profile.mkt_window_s * 1e9:
            return None
        current = mkt.value()
        if current is None:
            return None
        high = current > profile.mkt_limit_c
        if high == zone.mkt_high:
            return None
        zone.mkt_high = high
        return MktEvent(
            "raised" if high else "cleared",
            zone.detector.subject,
            profile.name,
            ts_ns,
            current,
            profile.mkt_limit_c,
            profile.mkt_window_s,
            profile.dh_kj_per_mol,
        )

    def zone_temperature(self, zone: str, at_ns: int) -> float | None:
        """The zone's temperature now (worst/median of fresh sensors; mean if unprofiled)."""
        monitored = self._zones.get(zone)
        if monitored is not None:
            return self._zone_value(monitored, at_ns)
        fresh = self._fresh(self._latest.get(zone, {}), at_ns)
        return round(statistics.fmean(fresh), 4) if fresh else None

    def _fresh(self, latest: dict[str, tuple[int, float]], at_ns: int) -> list[float]:
        return [
            temp
            for sensor, (ts, temp) in latest.items()
            if at_ns - ts <= STALE_INTERVALS * self._interval_ns.get(sensor, 0)
        ]

    def _zone_value(self, zone: _Zone, at_ns: int) -> float | None:
        fresh = self._fresh(zone.latest, at_ns)
        if not fresh:
            return None
        if zone.aggregate == "median":
            return float(statistics.median(fresh))
        return _worst(zone.profile, fresh)
