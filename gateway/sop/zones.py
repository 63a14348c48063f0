"""Zone excursion monitoring: committed readings -> zone value -> excursion events.

Each zone with a product profile has one :class:`ExcursionDetector` and, with an MKT
limit, one :class:`MktJudge`. The zone's value at a reading's time (:class:`ZoneValues`)
is the worst (or the median) of its sensors' latest usable readings; sensors silent for
longer than ``STALE_INTERVALS`` of their interval drop out, so a dead probe cannot hold a
zone in alarm (sensor health reports it separately). An unprofiled zone's value is the
mean of its fresh sensors (shipments sitting there still burn their budgets).

The trace (gateway/trace/series.py) computes its zone values with the same
:class:`ZoneValues` and judges them with the same detector, budget and MKT judge, so the
claim report and the live alerts cannot disagree. Rules run on event time;
``check(now_ns)`` is the timer that raises a pending excursion when readings stop arriving.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.config import GatewayConfig, SensorConfig, ZoneConfig
from gateway.core.model import UNUSABLE_MASK, Reading
from gateway.sop.excursion import ExcursionDetector, ExcursionEvent
from gateway.sop.intervals import DEFAULT_MAX_GAP_INTERVALS, max_gap_ns
from gateway.sop.mkt import RollingMkt
from gateway.sop.profiles import ProductProfile

STALE_INTERVALS = DEFAULT_MAX_GAP_INTERVALS
MKT_SAMPLE_S = 60.0  # one zone value per minute into the rolling MKT: 30 days = 43k points
MKT_MIN_COVERAGE = 0.5  # judge MKT only once the window is at least half covered
_NS_PER_S = 1_000_000_000


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
    covered_s: float = 0.0  # seconds of the window the readings stand for (max gap each)


def usable(quality: int) -> bool:
    """True when the SOP rules may use a reading with these quality flags."""
    return not quality & UNUSABLE_MASK


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


def aggregate_value(
    profile: ProductProfile | None, aggregate: str, fresh: list[float]
) -> float | None:
    """The zone value of its fresh sensors' values: worst, median, or mean without a profile."""
    if not fresh:
        return None
    if profile is None:
        return round(statistics.fmean(fresh), 4)
    if aggregate == "median":
        return float(statistics.median(fresh))
    return _worst(profile, fresh)


class ZoneValues:
    """One zone's latest usable reading per sensor and its value at a time (live and trace)."""

    def __init__(
        self, profile: ProductProfile | None, aggregate: str, stale_ns: Mapping[str, int]
    ) -> None:
        self.profile = profile
        self.aggregate = aggregate
        self.stale_ns = stale_ns
        self.latest: dict[str, tuple[int, float]] = {}
        self.newest_ns: int | None = None
        self.late = 0

    def update(self, sensor: str, ts_ns: int, temp_c: float) -> float | None:
        """Take one usable reading; the zone value at its time, or None.

        None for a late reading: older than the sensor's latest (kept, not used) or than the
        zone's newest value (it updates the sensor, but the zone's past is not re-judged).
        """
        previous = self.latest.get(sensor)
        if previous is not None and ts_ns < previous[0]:
            self.late += 1
            return None
        self.latest[sensor] = (ts_ns, temp_c)
        if self.newest_ns is not None and ts_ns < self.newest_ns:
            self.late += 1
            return None
        self.newest_ns = ts_ns
        return self.value_at(ts_ns)

    def value_at(self, at_ns: int) -> float | None:
        """Worst/median (mean if unprofiled) of the sensors fresh at ``at_ns``, or None."""
        stale = self.stale_ns
        # A reading a little ahead of at_ns (a device clock ahead of ours) counts as fresh.
        fresh = [
            temp for sensor, (ts, temp) in self.latest.items() if at_ns - ts <= stale.get(sensor, 0)
        ]
        return aggregate_value(self.profile, self.aggregate, fresh)


class MktJudge:
    """The rolling-MKT rule: one zone value per MKT_SAMPLE_S, judged once half covered."""

    def __init__(self, profile: ProductProfile, max_gap_ns_: int) -> None:
        self.profile = profile
        # A sampled value stands until the next sample: at most a sample period + max gap.
        self.max_gap_s = MKT_SAMPLE_S + max_gap_ns_ / _NS_PER_S
        self.mkt = RollingMkt(profile.mkt_window_s, profile.dh_over_r_k, max_gap_s=self.max_gap_s)
        self.last_ns: int | None = None
        self.high = False

    def observe(self, ts_ns: int, value: float) -> float | None:
        """Sample a zone value; the window's MKT when the rule judges at ts_ns, else None."""
        if self.last_ns is not None and ts_ns - self.last_ns < MKT_SAMPLE_S * _NS_PER_S:
            return None
        self.last_ns = ts_ns
        self.mkt.observe(ts_ns, value)
        if self.mkt.covered_s() < MKT_MIN_COVERAGE * self.profile.mkt_window_s:
            return None
        return self.mkt.value()


@dataclass(slots=True)
class _Zone:
    profile: ProductProfile
    values: ZoneValues
    detector: ExcursionDetector
    mkt: MktJudge | None = None
    max_gap_ns: int = 0


def zone_max_gaps(
    zones: Iterable[ZoneConfig],
    sensors: Iterable[SensorConfig],
    profiles: Mapping[str, ProductProfile],
) -> dict[str, int]:
    """Each zone's max gap (ns): its profile's ``max_gap_s``, else 3 x its slowest sensor.

    The live engine and the trace both take a zone's max gap from here.
    """
    intervals: dict[str, list[float]] = {}
    for sensor in sensors:
        intervals.setdefault(sensor.zone, []).append(sensor.interval_s)
    out: dict[str, int] = {}
    for zone in zones:
        profile = profiles.get(zone.profile) if zone.profile else None
        gap_s = profile.max_gap_s if profile else None
        out[zone.id] = max_gap_ns(intervals.get(zone.id, []), gap_s)
    return out


class ZoneMonitor:
    """Feeds every profiled zone's detector from committed readings."""

    def __init__(self, config: GatewayConfig) -> None:
        profiles = config.all_profiles()
        stale = {s.id: round(STALE_INTERVALS * s.interval_s * _NS_PER_S) for s in config.sensors}
        self._zones: dict[str, _Zone] = {}
        self.max_gaps = zone_max_gaps(config.zones, config.sensors, profiles)
        # Zone values of every zone, profiled or not (handoff temperatures, budgets).
        self._values: dict[str, ZoneValues] = {}
        for zone in config.zones:
            profile = profiles[zone.profile] if zone.profile is not None else None
            self._values[zone.id] = ZoneValues(profile, zone.aggregate, stale)
            if profile is None:
                continue
            gap = self.max_gaps[zone.id]
            self._zones[zone.id] = _Zone(
                profile,
                self._values[zone.id],
                ExcursionDetector(profile, zone.id, max_gap_ns=gap),
                mkt=MktJudge(profile, gap) if profile.mkt_limit_c is not None else None,
                max_gap_ns=gap,
            )
        self._stale = stale
        self.zone_values: list[tuple[str, int, float]] = []

    @property
    def zones(self) -> dict[str, ProductProfile]:
        """Monitored zones and their profiles."""
        return {zid: z.profile for zid, z in self._zones.items()}

    def detector(self, zone: str) -> ExcursionDetector:
        """The detector of one zone (status views and tests)."""
        return self._zones[zone].detector

    def mkt_judge(self, zone: str) -> MktJudge | None:
        """The MKT rule of one zone, if its profile has an MKT limit."""
        return self._zones[zone].mkt

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
            values = self._values.get(r.zone)
            if values is None:
                values = self._values[r.zone] = ZoneValues(None, "worst", self._stale)
            value = values.update(r.sensor, r.ts_ns, r.temp_c)
            if value is None:
                continue
            self.zone_values.append((r.zone, r.ts_ns, value))
            zone = self._zones.get(r.zone)
            if zone is None:
                continue
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
        judge, profile = zone.mkt, zone.profile
        if judge is None or profile.mkt_limit_c is None:
            return None
        current = judge.observe(ts_ns, value)
        if current is None:
            return None
        high = current > profile.mkt_limit_c
        if high == judge.high:
            return None
        judge.high = high
        return MktEvent(
            "raised" if high else "cleared",
            zone.detector.subject,
            profile.name,
            ts_ns,
            current,
            profile.mkt_limit_c,
            profile.mkt_window_s,
            profile.dh_kj_per_mol,
            judge.mkt.covered_s(),
        )

    def zone_temperature(self, zone: str, at_ns: int) -> float | None:
        """The zone's temperature now (worst/median of fresh sensors; mean if unprofiled)."""
        values = self._values.get(zone)
        return None if values is None else values.value_at(at_ns)
