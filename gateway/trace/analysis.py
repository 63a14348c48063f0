"""The claim-grade trace of one shipment, computed from what the sources returned (pure).

Inputs: the shipment's custody steps, the readings of the zones it was in, the alerts on
the shipment, its zones and their sensors, the product profile and the sensor and zone
config. Output: a :class:`TraceResult` with everything the claim report shows.

How the numbers are made:

- Custody intervals run from one custody step to the next in the zone the earlier step
  names (consecutive steps in the same zone merge); ``handed_to_carrier`` ends custody. An
  interval still open at ``as_of_ns`` ends there.
- Zone value: at each usable reading of a zone (quality without SENTINEL, IMPOSSIBLE or
  SPIKE), the worst of the zone's sensors' latest usable readings, sensors silent for more
  than 3 intervals left out (as the SOP engine does, :func:`gateway.sop.zones.severity`). The
  value the zone had when the shipment arrived stands at the interval start.
- Min and max are over every usable sensor reading in custody; the time-weighted average
  and MKT are over the zone values, each standing until the next one, data gaps left out.
  The MKT window is the whole custody span; dH is the profile's.
- Excursions: :class:`ExcursionDetector` over the zone values of all intervals in order;
  cumulative time out of range: :class:`CumulativeBudget`, resumed and paused per interval.
- Data gap: a zone with no usable reading for more than 3 x its sensors' interval (the
  slowest sensor's) inside a custody interval. That time is "unknown", never "fine".

Verdict: ``reject`` when the budget is spent, an excursion outlasted the alarm delay, or
the custody hash chain is broken at or before one of this shipment's records (after them:
``review``); ``review`` for a data gap, the budget warn fraction
reached, an unacknowledged critical alert, a dwell violation, MKT above the profile's MKT
limit, or a chain that was not verified; ``accept`` otherwise. Every reason is a sentence.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config import SensorConfig, ZoneConfig
from gateway.core.clock import NS_PER_S, iso_utc
from gateway.core.model import UNUSABLE_MASK
from gateway.custody.events import CustodyKind
from gateway.sop.excursion import CumulativeBudget, ExcursionDetector
from gateway.sop.mkt import mean_kinetic_temperature, time_weighted_samples
from gateway.sop.profiles import ProductProfile
from gateway.sop.settings import DEFAULT_DWELL_RULES, DwellRule
from gateway.sop.zones import STALE_INTERVALS, severity
from gateway.trace.query import AlarmRecord, CustodyStep, TraceInputError, TracePoint

Verdict = Literal["accept", "review", "reject"]
ReasonLevel = Literal["reject", "review", "info"]
ChainStatus = Literal["verified", "broken", "not_verified"]

DEFAULT_INTERVAL_S = 60.0  # a sensor seen in the data but missing from the config
_RANK: dict[str, int] = {"info": 0, "review": 1, "reject": 2}


def usable(quality: int) -> bool:
    """True when the SOP rules may use a reading with these quality flags."""
    return not quality & UNUSABLE_MASK


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the verdict is what it is: level (reject/review/info), a code and a sentence."""

    level: ReasonLevel
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Handoff:
    """One custody step of the timeline, with the temperature at that moment."""

    ts_ns: int
    kind: str
    zone: str
    zone_kind: str | None
    actor: str
    carrier: str | None
    note: str | None
    temp_c: float | None
    temp_source: Literal["recorded", "readings", "unknown"]
    until_next_s: float | None
    seq: int | None = None
    hash: str | None = None


@dataclass(frozen=True, slots=True)
class CustodySpan:
    """Time the shipment spent in one zone."""

    zone: str
    zone_kind: str | None
    start_ns: int
    end_ns: int
    open: bool
    sensors: tuple[str, ...]
    readings: int
    usable_readings: int
    min_c: float | None
    max_c: float | None

    @property
    def duration_s(self) -> float:
        """Seconds in the zone."""
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True, slots=True)
class Extreme:
    """A temperature and when and where it was read."""

    temp_c: float
    ts_ns: int
    zone: str
    sensor: str


@dataclass(frozen=True, slots=True)
class TraceStats:
    """Min, max, time-weighted average and MKT over the custody span."""

    min: Extreme | None
    max: Extreme | None
    average_c: float | None
    mkt_c: float | None
    dh_kj_per_mol: float
    dh_over_r_k: float
    window_start_ns: int
    window_end_ns: int
    covered_s: float
    usable_readings: int


@dataclass(frozen=True, slots=True)
class ExcursionRecord:
    """Readings outside the profile's range, from the first such reading to the end."""

    direction: str
    start_ns: int
    end_ns: int
    peak_c: float
    zones: tuple[str, ...]
    alarmed: bool
    open: bool
    raised_ns: int | None

    @property
    def duration_s(self) -> float:
        """Seconds from start to end."""
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """Cumulative time out of range against the profile's budget."""

    budget_s: float
    spent_s: float
    remaining_s: float
    warn_fraction: float
    state: str
    warn_at_ns: int | None
    violated_at_ns: int | None


@dataclass(frozen=True, slots=True)
class DwellCheck:
    """One dwell rule applied to one custody step."""

    rule: str
    from_kind: str
    from_ns: int
    zone: str
    to_kind: str | None
    to_ns: int | None
    duration_s: float
    limit_s: float
    status: Literal["ok", "warn", "violated", "running"]


@dataclass(frozen=True, slots=True)
class DataGap:
    """Custody time with no usable reading of the zone: the temperature is unknown."""

    zone: str
    start_ns: int
    end_ns: int
    limit_s: float
    reason: str

    @property
    def duration_s(self) -> float:
        """Seconds without data."""
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True, slots=True)
class SensorFault:
    """A sensor that went silent or sent flagged readings while the shipment was there."""

    sensor: str
    zone: str
    kind: Literal["stale", "flagged"]
    start_ns: int
    end_ns: int
    detail: str


@dataclass(frozen=True, slots=True)
class SensorUsed:
    """A sensor whose readings the trace used, with its calibration."""

    sensor: str
    zone: str
    calibration_id: str | None
    interval_s: float
    configured: bool
    readings: int
    flagged: int


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The custody hash chain verification result as the report states it."""

    status: ChainStatus
    first_bad_seq: int | None = None
    reason: str = ""

    @classmethod
    def from_verification(cls, result: Any | None) -> ChainCheck:
        """From any object with ``ok``, ``first_bad_seq`` and ``reason`` (or None)."""
        if result is None:
            return cls("not_verified", None, "the custody hash chain was not verified")
        ok = bool(getattr(result, "ok", False))
        seq = getattr(result, "first_bad_seq", None)
        reason = str(getattr(result, "reason", "") or "")
        if ok:
            return cls("verified", None, reason or "every record matches its hash and link")
        return cls("broken", None if seq is None else int(seq), reason or "chain does not match")


@dataclass(slots=True)
class TraceResult:
    """Everything the claim report shows about one shipment."""

    shipment: str
    hub: str
    timezone: str
    as_of_ns: int
    profile: ProductProfile
    window_start_ns: int
    window_end_ns: int
    custody_open: bool
    timeline: list[Handoff]
    spans: list[CustodySpan]
    points: list[TracePoint]
    in_custody: list[bool]
    series: list[tuple[int, float, str]]
    stats: TraceStats
    excursions: list[ExcursionRecord]
    budget: BudgetResult
    dwell: list[DwellCheck]
    alarms: list[AlarmRecord]
    gaps: list[DataGap]
    faults: list[SensorFault]
    sensors: list[SensorUsed]
    chain: ChainCheck
    verdict: Verdict
    reasons: list[Reason] = field(default_factory=list)


# -- custody -------------------------------------------------------------------------


def custody_spans(steps: Sequence[CustodyStep], as_of_ns: int) -> list[tuple[str, int, int, bool]]:
    """(zone, start, end, open) per custody interval; same-zone steps merge (as the ledger)."""
    out: list[tuple[str, int, int | None]] = []
    for step in steps:
        if out and out[-1][2] is None:
            zone, start, _ = out[-1]
            if step.kind != CustodyKind.HANDED_TO_CARRIER and step.zone == zone:
                continue
            out[-1] = (zone, start, step.ts_ns)
        if step.kind != CustodyKind.HANDED_TO_CARRIER:
            out.append((step.zone, step.ts_ns, None))
    return [
        (zone, start, max(start, as_of_ns) if end is None else end, end is None)
        for zone, start, end in out
    ]


# -- readings per zone ---------------------------------------------------------------


class _ZoneData:
    """A zone's usable readings per sensor, for zone values at any time."""

    def __init__(self, profile: ProductProfile, stale_ns: Mapping[str, int]) -> None:
        self.profile = profile
        self.stale_ns = stale_ns
        self.times: dict[str, list[int]] = defaultdict(list)
        self.temps: dict[str, list[float]] = defaultdict(list)

    def add(self, p: TracePoint) -> None:
        self.times[p.sensor].append(p.ts_ns)
        self.temps[p.sensor].append(p.temp_c)

    def value_at(self, ts_ns: int) -> float | None:
        """The worst fresh sensor value at ts (latest reading at or before ts per sensor)."""
        fresh: list[float] = []
        for sensor, times in self.times.items():
            i = bisect.bisect_right(times, ts_ns) - 1
            if i >= 0 and ts_ns - times[i] <= self.stale_ns[sensor]:
                fresh.append(self.temps[sensor][i])
        if not fresh:
            return None
        return max(fresh, key=lambda t: severity(self.profile, t))


def _interval_ns(sensor: str, configured: Mapping[str, SensorConfig]) -> int:
    cfg = configured.get(sensor)
    return round((cfg.interval_s if cfg is not None else DEFAULT_INTERVAL_S) * NS_PER_S)


def zone_series(
    points: Sequence[TracePoint],
    profile: ProductProfile,
    stale_ns: Mapping[str, int],
    start_ns: int,
    end_ns: int,
) -> list[tuple[int, float]]:
    """Zone values (worst fresh sensor) at each usable reading in [start, end).

    ``points`` are one zone's usable readings by time and may begin before ``start_ns``:
    the value the zone had at ``start_ns`` is emitted there.
    """
    latest: dict[str, tuple[int, float]] = {}
    out: list[tuple[int, float]] = []
    seeded = False

    def value(at_ns: int) -> float | None:
        fresh = [t for s, (ts, t) in latest.items() if at_ns - ts <= stale_ns[s]]
        return max(fresh, key=lambda t: severity(profile, t)) if fresh else None

    for p in points:
        if p.ts_ns >= end_ns:
            break
        if p.ts_ns >= start_ns and not seeded:
            seeded = True
            if p.ts_ns > start_ns:
                seed = value(start_ns)
                if seed is not None:
                    out.append((start_ns, seed))
        latest[p.sensor] = (p.ts_ns, p.temp_c)
        if p.ts_ns < start_ns:
            continue
        v = value(p.ts_ns)
        assert v is not None  # the sensor just read is fresh
        if out and out[-1][0] == p.ts_ns:
            out[-1] = (p.ts_ns, v)
        else:
            out.append((p.ts_ns, v))
    if not seeded:
        seed = value(start_ns)
        if seed is not None:
            out.append((start_ns, seed))
    return out


def _silences(
    times: Sequence[int], start_ns: int, end_ns: int, limit_ns: int
) -> list[tuple[int, int]]:
    """Spans in [start, end) longer than limit with no time in ``times`` (sorted)."""
    out: list[tuple[int, int]] = []
    i = bisect.bisect_left(times, start_ns)
    prev = times[i - 1] if i > 0 and start_ns - times[i - 1] <= limit_ns else start_ns
    for t in times[i:]:
        if t >= end_ns:
            break
        if t - prev > limit_ns:
            out.append((max(prev, start_ns), t))
        prev = t
    if end_ns - prev > limit_ns:
        out.append((max(prev, start_ns), end_ns))
    return out


# -- the analysis --------------------------------------------------------------------


def analyze(
    shipment: str,
    hub: str,
    steps: Sequence[CustodyStep],
    points: Sequence[TracePoint],
    alerts: Sequence[AlarmRecord],
    profile: ProductProfile,
    sensors: Sequence[SensorConfig],
    zones: Sequence[ZoneConfig],
    *,
    as_of_ns: int,
    chain: Any | None = None,
    dwell_rules: Sequence[DwellRule] = DEFAULT_DWELL_RULES,
    timezone: str = "UTC",
) -> TraceResult:
    """Build the trace; TraceInputError when the shipment has no custody steps."""
    if not steps:
        msg = f"unknown shipment {shipment}: no custody events"
        raise TraceInputError(msg)
    steps = sorted(steps, key=lambda s: (s.ts_ns, s.seq if s.seq is not None else 0))
    zone_kind = {z.id: z.kind for z in zones}
    configured = {s.id: s for s in sensors}
    raw_spans = custody_spans(steps, as_of_ns)
    window_start = raw_spans[0][1] if raw_spans else steps[0].ts_ns
    window_end = raw_spans[-1][2] if raw_spans else steps[-1].ts_ns
    custody_open = bool(raw_spans) and raw_spans[-1][3]

    points = sorted(points, key=lambda p: (p.ts_ns, p.sensor))
    stale_ns = {s: STALE_INTERVALS * _interval_ns(s, configured) for s in configured}
    by_zone_usable: dict[str, list[TracePoint]] = defaultdict(list)
    zone_data: dict[str, _ZoneData] = {}
    for p in points:
        if p.sensor not in stale_ns:
            stale_ns[p.sensor] = STALE_INTERVALS * _interval_ns(p.sensor, configured)
    int_stale = {s: round(v) for s, v in stale_ns.items()}
    for p in points:
        if usable(p.quality):
            by_zone_usable[p.zone].append(p)
            zd = zone_data.get(p.zone)
            if zd is None:
                zd = zone_data[p.zone] = _ZoneData(profile, int_stale)
            zd.add(p)

    # in-custody flag per point: the zone the shipment was in at that time
    span_starts = [s[1] for s in raw_spans]
    in_custody: list[bool] = []
    for p in points:
        i = bisect.bisect_right(span_starts, p.ts_ns) - 1
        in_custody.append(i >= 0 and raw_spans[i][0] == p.zone and p.ts_ns < raw_spans[i][2])

    spans: list[CustodySpan] = []
    series: list[tuple[int, float, str]] = []
    weighted: list[tuple[float, float]] = []
    gaps: list[DataGap] = []
    faults: list[SensorFault] = []
    budget = CumulativeBudget(profile, shipment, in_custody=False)
    budget_events = []
    seen_sensors: dict[tuple[str, str], list[int]] = {}  # (sensor, zone) -> [readings, flagged]
    custody_points = [p for p, inside in zip(points, in_custody, strict=True) if inside]
    for p in custody_points:
        counts = seen_sensors.setdefault((p.sensor, p.zone), [0, 0])
        counts[0] += 1
        if not usable(p.quality):
            counts[1] += 1

    for zone, start, end, is_open in raw_spans:
        zone_sensors = sorted(
            {s.id for s in sensors if s.zone == zone} | {s for (s, z) in seen_sensors if z == zone}
        )
        for s in zone_sensors:
            seen_sensors.setdefault((s, zone), [0, 0])
        usable_pts = by_zone_usable.get(zone, [])
        interval_limits = [_interval_ns(s, configured) for s in zone_sensors]
        limit_ns = round(STALE_INTERVALS * max(interval_limits, default=_interval_ns("", {})))
        values = zone_series(usable_pts, profile, int_stale, start, end)
        inside_pts = [p for p in usable_pts if start <= p.ts_ns < end]
        all_in_span = sum(1 for p in custody_points if p.zone == zone and start <= p.ts_ns < end)
        spans.append(
            CustodySpan(
                zone=zone,
                zone_kind=zone_kind.get(zone),
                start_ns=start,
                end_ns=end,
                open=is_open,
                sensors=tuple(zone_sensors),
                readings=all_in_span,
                usable_readings=len(inside_pts),
                min_c=min((p.temp_c for p in inside_pts), default=None),
                max_c=max((p.temp_c for p in inside_pts), default=None),
            )
        )
        series.extend((ts, t, zone) for ts, t in values)
        weighted.extend(
            time_weighted_samples(values, window_end_ns=end, max_gap_s=limit_ns / NS_PER_S)
        )
        budget.resume(start)
        for ts, t in values:
            budget_events += budget.observe(ts, t)
        budget_events += budget.pause(end)

        times = [p.ts_ns for p in usable_pts]
        why = (
            f"no sensor is configured for zone {zone}"
            if not zone_sensors
            else f"no usable reading of zone {zone} for more than"
            f" {STALE_INTERVALS:g} x the {limit_ns / STALE_INTERVALS / NS_PER_S:g} s"
            " sensor interval"
        )
        gaps.extend(
            DataGap(zone, a, b, limit_ns / NS_PER_S, why)
            for a, b in _silences(times, start, end, limit_ns)
        )
        for sensor in zone_sensors:
            s_limit = round(STALE_INTERVALS * _interval_ns(sensor, configured))
            zd = zone_data.get(zone)
            s_times = zd.times.get(sensor, []) if zd is not None else []
            faults.extend(
                SensorFault(
                    sensor,
                    zone,
                    "stale",
                    a,
                    b,
                    f"no usable reading for {_minutes((b - a) / NS_PER_S)}",
                )
                for a, b in _silences(s_times, start, end, s_limit)
            )
            flagged = (
                [
                    p
                    for p in points
                    if p.sensor == sensor
                    and p.zone == zone
                    and start <= p.ts_ns < end
                    and not usable(p.quality)
                ]
                if seen_sensors[(sensor, zone)][1]
                else []
            )
            if flagged:
                faults.append(
                    SensorFault(
                        sensor,
                        zone,
                        "flagged",
                        flagged[0].ts_ns,
                        flagged[-1].ts_ns,
                        f"{len(flagged)} reading(s) flagged unusable"
                        f" (quality {sorted({p.quality for p in flagged})})",
                    )
                )

    stats = _stats(custody_points, weighted, profile, window_start, window_end)
    excursions = _excursions(series, profile, shipment, window_end)
    budget_result = BudgetResult(
        budget_s=profile.budget_s,
        spent_s=budget.spent_s,
        remaining_s=budget.remaining_s,
        warn_fraction=profile.budget_warn_fraction,
        state=budget.state,
        warn_at_ns=next((e.at_ns for e in budget_events if e.kind == "warn"), None),
        violated_at_ns=next((e.at_ns for e in budget_events if e.kind == "violated"), None),
    )
    timeline = _timeline(steps, zone_kind, zone_data, as_of_ns, custody_open)
    dwell = _dwell(steps, dwell_rules, zone_kind, as_of_ns)
    alarms = _alarms(alerts, shipment, raw_spans, configured)
    sensors_used = [
        SensorUsed(
            sensor=s,
            zone=z,
            calibration_id=configured[s].calibration_id if s in configured else None,
            interval_s=_interval_ns(s, configured) / NS_PER_S,
            configured=s in configured,
            readings=counts[0],
            flagged=counts[1],
        )
        for (s, z), counts in sorted(seen_sensors.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    chain_check = ChainCheck.from_verification(chain)
    reasons = _reasons(
        profile,
        stats,
        excursions,
        budget_result,
        dwell,
        alarms,
        gaps,
        chain_check,
        custody_open,
        as_of_ns,
        None if any(st.seq is None for st in steps) else max(st.seq or 0 for st in steps),
    )
    verdict: Verdict = "accept"
    top = max((_RANK[r.level] for r in reasons), default=0)
    if top == _RANK["reject"]:
        verdict = "reject"
    elif top == _RANK["review"]:
        verdict = "review"
    return TraceResult(
        shipment=shipment,
        hub=hub,
        timezone=timezone,
        as_of_ns=as_of_ns,
        profile=profile,
        window_start_ns=window_start,
        window_end_ns=window_end,
        custody_open=custody_open,
        timeline=timeline,
        spans=spans,
        points=points,
        in_custody=in_custody,
        series=series,
        stats=stats,
        excursions=excursions,
        budget=budget_result,
        dwell=dwell,
        alarms=alarms,
        gaps=gaps,
        faults=faults,
        sensors=sensors_used,
        chain=chain_check,
        verdict=verdict,
        reasons=reasons,
    )


def _stats(
    custody_points: Sequence[TracePoint],
    weighted: Sequence[tuple[float, float]],
    profile: ProductProfile,
    window_start: int,
    window_end: int,
) -> TraceStats:
    good = [p for p in custody_points if usable(p.quality)]
    lo = min(good, key=lambda p: (p.temp_c, p.ts_ns), default=None)
    hi = max(good, key=lambda p: (p.temp_c, -p.ts_ns), default=None)
    covered = math.fsum(d for _, d in weighted)
    average = math.fsum(t * d for t, d in weighted) / covered if covered > 0 else None
    mkt = mean_kinetic_temperature(weighted, profile.dh_over_r_k) if covered > 0 else None
    return TraceStats(
        min=None if lo is None else Extreme(lo.temp_c, lo.ts_ns, lo.zone, lo.sensor),
        max=None if hi is None else Extreme(hi.temp_c, hi.ts_ns, hi.zone, hi.sensor),
        average_c=average,
        mkt_c=mkt,
        dh_kj_per_mol=profile.dh_kj_per_mol,
        dh_over_r_k=profile.dh_over_r_k,
        window_start_ns=window_start,
        window_end_ns=window_end,
        covered_s=covered,
        usable_readings=len(good),
    )


def _excursions(
    series: Sequence[tuple[int, float, str]],
    profile: ProductProfile,
    subject: str,
    end_ns: int,
) -> list[ExcursionRecord]:
    detector = ExcursionDetector(profile, subject)
    out: list[ExcursionRecord] = []
    zones: set[str] = set()
    lo = hi = math.nan
    for ts, temp, zone in series:
        for ev in detector.observe(ts, temp):
            if ev.excursion is not None:
                x = ev.excursion
                out.append(
                    ExcursionRecord(
                        x.direction,
                        x.started_at_ns,
                        x.ended_at_ns,
                        x.peak_c,
                        tuple(sorted(zones)),
                        x.alarmed,
                        False,
                        x.raised_at_ns,
                    )
                )
        if detector.started_at_ns is not None:
            if detector.started_at_ns == ts:
                zones, lo, hi = set(), temp, temp
            zones.add(zone)
            lo, hi = min(lo, temp), max(hi, temp)
    started = detector.started_at_ns
    if started is not None:
        raised = detector.check(end_ns)
        high = profile.max_c is not None and hi > profile.max_c
        out.append(
            ExcursionRecord(
                "high" if high else "low",
                started,
                end_ns,
                hi if high else lo,
                tuple(sorted(zones)),
                detector.state == "alarmed",
                True,
                raised[0].raised_at_ns if raised else None,
            )
        )
    return out


def _timeline(
    steps: Sequence[CustodyStep],
    zone_kind: Mapping[str, str],
    zone_data: Mapping[str, _ZoneData],
    as_of_ns: int,
    custody_open: bool,
) -> list[Handoff]:
    out: list[Handoff] = []
    for i, step in enumerate(steps):
        if i + 1 < len(steps):
            until: float | None = (steps[i + 1].ts_ns - step.ts_ns) / NS_PER_S
        elif custody_open:
            until = (as_of_ns - step.ts_ns) / NS_PER_S
        else:
            until = None
        temp = step.temp_c
        source: Literal["recorded", "readings", "unknown"] = "recorded"
        if temp is None:
            zd = zone_data.get(step.zone)
            temp = zd.value_at(step.ts_ns) if zd is not None else None
            source = "readings" if temp is not None else "unknown"
        out.append(
            Handoff(
                ts_ns=step.ts_ns,
                kind=step.kind,
                zone=step.zone,
                zone_kind=zone_kind.get(step.zone),
                actor=step.actor,
                carrier=step.carrier,
                note=step.note,
                temp_c=temp,
                temp_source=source,
                until_next_s=until,
                seq=step.seq,
                hash=step.hash,
            )
        )
    return out


def _dwell(
    steps: Sequence[CustodyStep],
    rules: Sequence[DwellRule],
    zone_kind: Mapping[str, str],
    as_of_ns: int,
) -> list[DwellCheck]:
    out: list[DwellCheck] = []
    for i, step in enumerate(steps):
        try:
            kind = CustodyKind(step.kind)
        except ValueError:
            continue
        for rule in rules:
            if not rule.applies_to(kind, zone_kind.get(step.zone)):
                continue
            targets = {k.value for k in rule.to_kinds}
            nxt = next((s for s in steps[i + 1 :] if s.kind in targets), None)
            end = nxt.ts_ns if nxt is not None else as_of_ns
            duration = (end - step.ts_ns) / NS_PER_S
            status: Literal["ok", "warn", "violated", "running"]
            if duration > rule.limit_s:
                status = "violated"
            elif duration >= rule.limit_s * rule.warn_fraction:
                status = "warn"
            else:
                status = "ok" if nxt is not None else "running"
            out.append(
                DwellCheck(
                    rule=rule.rule,
                    from_kind=step.kind,
                    from_ns=step.ts_ns,
                    zone=step.zone,
                    to_kind=None if nxt is None else nxt.kind,
                    to_ns=None if nxt is None else nxt.ts_ns,
                    duration_s=duration,
                    limit_s=rule.limit_s,
                    status=status,
                )
            )
    return out


def _alarms(
    alerts: Iterable[AlarmRecord],
    shipment: str,
    spans: Sequence[tuple[str, int, int, bool]],
    configured: Mapping[str, SensorConfig],
) -> list[AlarmRecord]:
    out: list[AlarmRecord] = []
    for a in alerts:
        if a.subject == shipment:
            out.append(a)
            continue
        zone = configured[a.subject].zone if a.subject in configured else a.subject
        if any(
            z == zone and a.started_ns < end and (a.cleared_ns is None or a.cleared_ns >= start)
            for z, start, end, _ in spans
        ):
            out.append(a)
    return sorted(out, key=lambda a: (a.started_ns, a.alert_id))


def _reasons(
    profile: ProductProfile,
    stats: TraceStats,
    excursions: Sequence[ExcursionRecord],
    budget: BudgetResult,
    dwell: Sequence[DwellCheck],
    alarms: Sequence[AlarmRecord],
    gaps: Sequence[DataGap],
    chain: ChainCheck,
    custody_open: bool,
    as_of_ns: int,
    last_seq: int | None,
) -> list[Reason]:
    out: list[Reason] = []
    if budget.state == "violated":
        at = iso_utc(budget.violated_at_ns) if budget.violated_at_ns is not None else "?"
        out.append(
            Reason(
                "reject",
                "budget_spent",
                f"cumulative time out of range {_minutes(budget.spent_s)} exceeds the"
                f" {profile.name} budget of {_minutes(budget.budget_s)} (spent at {at})",
            )
        )
    for x in excursions:
        if x.alarmed:
            where = ", ".join(x.zones) or "?"
            out.append(
                Reason(
                    "reject",
                    "excursion",
                    f"{x.direction} excursion in {where} from {iso_utc(x.start_ns)} to"
                    f" {iso_utc(x.end_ns)}{' (open when custody ended)' if x.open else ''} lasted"
                    f" {_minutes(x.duration_s)}, beyond the alarm delay of"
                    f" {_minutes(profile.alarm_delay_s)}; peak {x.peak_c:.2f} °C",
                )
            )
    if chain.status == "broken":
        seq = "?" if chain.first_bad_seq is None else str(chain.first_bad_seq)
        # The chain proves every record before the first bad one; if all of this shipment's
        # records come before it, they are intact and only later records are in doubt.
        before = (
            chain.first_bad_seq is not None
            and last_seq is not None
            and last_seq < chain.first_bad_seq
        )
        out.append(
            Reason(
                "review" if before else "reject",
                "chain_broken",
                f"custody hash chain broken at record seq {seq}: {chain.reason}"
                + (
                    f" (after this shipment's records, which end at seq {last_seq})"
                    if before
                    else ""
                ),
            )
        )
    for g in gaps:
        out.append(
            Reason(
                "review",
                "data_gap",
                f"temperature unknown in {g.zone} from {iso_utc(g.start_ns)} to"
                f" {iso_utc(g.end_ns)} ({_minutes(g.duration_s)}): {g.reason}",
            )
        )
    if budget.state == "warn":
        out.append(
            Reason(
                "review",
                "budget_warn",
                f"{_minutes(budget.spent_s)} of the {_minutes(budget.budget_s)} time-out-of-range"
                f" budget spent (warn at {budget.warn_fraction:.0%})",
            )
        )
    for a in alarms:
        if a.severity == "critical" and a.acknowledged_ns is None and a.acknowledged_by is None:
            out.append(
                Reason(
                    "review",
                    "unacknowledged_alert",
                    f"critical alert {a.alert_id} ({a.rule} on {a.subject}) started"
                    f" {iso_utc(a.started_ns)} was never acknowledged",
                )
            )
    for d in dwell:
        if d.status == "violated":
            out.append(
                Reason(
                    "review",
                    "dwell",
                    f"dwell {d.rule}: {_minutes(d.duration_s)} after {d.from_kind} in {d.zone}"
                    f" at {iso_utc(d.from_ns)}, limit {_minutes(d.limit_s)}",
                )
            )
    if (
        profile.mkt_limit_c is not None
        and stats.mkt_c is not None
        and stats.mkt_c > profile.mkt_limit_c
    ):
        out.append(
            Reason(
                "review",
                "mkt",
                f"MKT {stats.mkt_c:.2f} °C over the custody span exceeds the profile's"
                f" MKT limit of {profile.mkt_limit_c:g} °C",
            )
        )
    if chain.status == "not_verified":
        out.append(Reason("review", "chain_not_verified", chain.reason))
    if custody_open:
        out.append(
            Reason(
                "info",
                "custody_open",
                "the shipment is still in the hub's custody; the trace ends at"
                f" {iso_utc(as_of_ns)}",
            )
        )
    return out
