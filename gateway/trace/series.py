"""One shipment's readings replayed through the live rule objects (the trace has no rules).

- Zone values: :class:`gateway.sop.zones.ZoneValues`, the live zone-value function (worst
  or median of fresh sensors by the zone's own profile and ``aggregate``; mean for an
  unprofiled zone), fed in commit order when the source knows it (the journal), so a
  reading the live rule skipped as late is skipped here too. InfluxDB keeps no commit
  order: its readings are replayed by time.
- Each custody interval gets a fresh :class:`~gateway.sop.excursion.ExcursionDetector`
  with the shipment's profile (a shipment that leaves and returns starts a new run, as the
  live per-zone rule would for it), seeded with the value the zone had at arrival; the
  timer hook runs at the interval end, so an alarm the live timer raised shows as raised.
- One :class:`~gateway.sop.excursion.CumulativeBudget` resumed and paused per interval,
  as ``ShipmentBudgets`` does live; its unknown time is the trace's data gaps.
- MKT: over the whole custody (each value weighing at most its max gap), and the worst
  rolling window inside custody through :class:`~gateway.sop.zones.MktJudge`.
- Dwell: :class:`~gateway.sop.dwell.DwellTimers` fed the custody steps on their event
  times, checked at the end of the trace.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.config import SensorConfig, ZoneConfig
from gateway.core.clock import NS_PER_S
from gateway.custody.events import CustodyKind
from gateway.sop.dwell import DwellEvent, DwellTimers
from gateway.sop.excursion import (
    BudgetEvent,
    CumulativeBudget,
    Excursion,
    ExcursionDetector,
    ExcursionEvent,
)
from gateway.sop.mkt import time_weighted_samples
from gateway.sop.profiles import ProductProfile
from gateway.sop.settings import DwellRule
from gateway.sop.zones import STALE_INTERVALS, MktJudge, ZoneValues, usable, zone_max_gaps
from gateway.trace.query import CustodyStep, TracePoint
from gateway.trace.result import DwellCheck, ExcursionRecord

DEFAULT_INTERVAL_S = 60.0  # a sensor seen in the data but missing from the config

Span = tuple[str, int, int, bool]
"""(zone, start_ns, end_ns, open) of one custody interval."""


def replay_order(points: Sequence[TracePoint]) -> list[TracePoint]:
    """The order the live rules saw the readings in: commit order if known, else time."""
    if points and all(p.order for p in points):
        return sorted(points, key=lambda p: p.order)
    return sorted(points, key=lambda p: (p.ts_ns, p.sensor))


def stale_limits(
    points: Sequence[TracePoint], configured: Mapping[str, SensorConfig]
) -> dict[str, int]:
    """Per sensor, how long a reading stays fresh (3 x its interval; 60 s if unconfigured)."""
    out = {s: round(STALE_INTERVALS * c.interval_s * NS_PER_S) for s, c in configured.items()}
    for p in points:
        out.setdefault(p.sensor, round(STALE_INTERVALS * DEFAULT_INTERVAL_S * NS_PER_S))
    return out


@dataclass(slots=True)
class ZoneSeries:
    """One zone's values (ts, °C), as the live ZoneMonitor computed them, in time order."""

    zone: str
    max_gap_ns: int
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    late: int = 0

    def between(self, start_ns: int, end_ns: int) -> list[tuple[int, float]]:
        """Values with start <= ts < end."""
        i = bisect.bisect_left(self.times, start_ns)
        j = bisect.bisect_left(self.times, end_ns)
        return list(zip(self.times[i:j], self.values[i:j], strict=True))

    def standing_at(self, at_ns: int) -> tuple[int, float] | None:
        """The last value at or before ``at_ns`` if it still stands then (within max gap)."""
        i = bisect.bisect_right(self.times, at_ns) - 1
        if i < 0 or at_ns - self.times[i] > self.max_gap_ns:
            return None
        return self.times[i], self.values[i]

    def before(self, at_ns: int) -> tuple[int, float] | None:
        """The last value strictly before ``at_ns`` that still stands at ``at_ns``."""
        i = bisect.bisect_left(self.times, at_ns) - 1
        if i < 0 or at_ns - self.times[i] > self.max_gap_ns:
            return None
        return self.times[i], self.values[i]


def zone_series(
    points: Sequence[TracePoint],
    zones: Sequence[ZoneConfig],
    sensors: Sequence[SensorConfig],
    profiles: Mapping[str, ProductProfile],
) -> dict[str, ZoneSeries]:
    """Every zone's value series from its usable readings, in the live rules' order."""
    configured = {s.id: s for s in sensors}
    stale = stale_limits(points, configured)
    gaps = zone_max_gaps(zones, sensors, profiles)
    known = {z.id: z for z in zones}
    values: dict[str, ZoneValues] = {}
    out: dict[str, ZoneSeries] = {}
    for p in replay_order(points):
        if not usable(p.quality):
            continue
        zv = values.get(p.zone)
        if zv is None:
            cfg = known.get(p.zone)
            profile = profiles.get(cfg.profile) if cfg is not None and cfg.profile else None
            zv = values[p.zone] = ZoneValues(profile, cfg.aggregate if cfg else "worst", stale)
            gap = gaps.get(p.zone, round(STALE_INTERVALS * DEFAULT_INTERVAL_S * NS_PER_S))
            out[p.zone] = ZoneSeries(p.zone, gap)
        value = zv.update(p.sensor, p.ts_ns, p.temp_c)
        series = out[p.zone]
        if value is None:
            series.late = zv.late
            continue
        series.times.append(p.ts_ns)
        series.values.append(value)
    return out


@dataclass(slots=True)
class CustodyReplay:
    """What the live rules say about the shipment's custody intervals."""

    excursions: list[ExcursionRecord]
    budget: CumulativeBudget
    budget_events: list[BudgetEvent]
    unknown: list[tuple[str, int, int]]  # (zone, start, end) of unknown time
    series: list[tuple[int, float, str]]  # the zone values in custody (ts, °C, zone)
    weighted: list[tuple[float, float]]  # (°C, seconds) for the whole-custody average and MKT
    mkt_rolling: tuple[float, int] | None  # worst judged rolling MKT and its window end


def replay_custody(
    shipment: str,
    spans: Sequence[Span],
    series_by_zone: Mapping[str, ZoneSeries],
    profile: ProductProfile,
    default_gap_ns: int,
) -> CustodyReplay:
    """Run the shipment's custody intervals through detector, budget and MKT judge."""
    budget = CumulativeBudget(profile, shipment, in_custody=False)
    budget_events: list[BudgetEvent] = []
    records: list[ExcursionRecord] = []
    unknown: list[tuple[str, int, int]] = []
    custody_series: list[tuple[int, float, str]] = []
    weighted: list[tuple[float, float]] = []
    judge = MktJudge(profile, default_gap_ns) if profile.mkt_limit_c is not None else None
    worst: tuple[float, int] | None = None
    for zone, start, end, _ in spans:
        zs = series_by_zone.get(zone) or ZoneSeries(zone, default_gap_ns)
        gap = zs.max_gap_ns
        seed = zs.standing_at(start)
        values = zs.between(start, end)
        if seed is not None and values and values[0][0] == start:
            seed = None  # a reading at the arrival itself
        detector = ExcursionDetector(profile, shipment, max_gap_ns=gap)
        events: list[ExcursionEvent] = []
        if seed is not None:
            events += detector.observe(start, seed[1], read_at_ns=seed[0])
        for ts, value in values:
            events += detector.observe(ts, value)
        events += detector.check(end)
        records.extend(_record(e.excursion, zone, open_=False) for e in events if e.excursion)
        still_open = detector.open_excursion(end)
        if still_open is not None:
            records.append(_record(still_open, zone, open_=True))

        before = len(budget.unknown_spans)
        budget.resume(
            start,
            None if seed is None else seed[1],
            value_ts_ns=None if seed is None else seed[0],
            max_gap_ns=gap,
        )
        for ts, value in values:
            budget_events += budget.observe(ts, value, max_gap_ns=gap)
        budget_events += budget.pause(end)
        unknown.extend((zone, a, b) for a, b in budget.unknown_spans[before:])

        in_span = ([(start, seed[1])] if seed is not None else []) + values
        custody_series.extend((ts, value, zone) for ts, value in in_span)
        weighted += time_weighted_samples(in_span, window_end_ns=end, max_gap_s=gap / NS_PER_S)
        if judge is not None:
            for ts, value in in_span:
                judged = judge.observe(ts, value)
                if judged is not None and (worst is None or judged > worst[0]):
                    worst = (judged, ts)
    return CustodyReplay(records, budget, budget_events, unknown, custody_series, weighted, worst)


def _record(x: Excursion, zone: str, *, open_: bool) -> ExcursionRecord:
    return ExcursionRecord(
        direction=x.direction,
        start_ns=x.started_at_ns,
        end_ns=x.ended_at_ns,
        peak_c=x.peak_c,
        zones=(zone,),
        alarmed=x.alarmed,
        open=open_,
        raised_ns=x.raised_at_ns,
        out_of_range_s=x.out_of_range_s,
        ended_by=x.ended_by,
    )


def replay_dwell(
    shipment: str,
    steps: Sequence[CustodyStep],
    rules: Sequence[DwellRule],
    zone_kind: Mapping[str, str],
    as_of_ns: int,
) -> list[DwellCheck]:
    """The live dwell timers over the custody steps' event times, checked at the end."""
    timers = DwellTimers(rules, zone_kind)
    events: list[DwellEvent] = []
    starts: list[tuple[str, int, CustodyStep]] = []
    for step in steps:
        try:
            kind = CustodyKind(step.kind)
        except ValueError:
            continue
        running = {(t.rule, t.started_ns) for t in timers.running(shipment)}
        events += timers.on_custody(shipment, kind, step.ts_ns, step.zone)
        starts.extend(
            (t.rule, t.started_ns, step)
            for t in timers.running(shipment)
            if (t.rule, t.started_ns) not in running
        )
    events += timers.check(as_of_ns)
    by_timer: dict[tuple[str, int], list[DwellEvent]] = defaultdict(list)
    for e in events:
        by_timer[(e.rule, e.started_ns)].append(e)
    out: list[DwellCheck] = []
    for rule_name, started, step in starts:
        rule = timers.rules[rule_name]
        fired = by_timer.get((rule_name, started), [])
        kinds = {e.kind for e in fired}
        resolved = next((e for e in fired if e.kind == "resolved"), None)
        end = resolved.at_ns if resolved is not None else as_of_ns
        status: str
        if "violated" in kinds:
            status = "violated"
        elif "warn" in kinds:
            status = "warn"
        else:
            status = "ok" if resolved is not None else "running"
        stopped = resolved.stopped_by if resolved is not None else None
        out.append(
            DwellCheck(
                rule=rule_name,
                from_kind=step.kind,
                from_ns=started,
                zone=step.zone,
                to_kind=None if stopped is None else stopped.value,
                to_ns=None if resolved is None else resolved.at_ns,
                duration_s=(end - started) / NS_PER_S,
                limit_s=rule.limit_s,
                status=status,  # type: ignore[arg-type]
                stopped_by=None if stopped is None else stopped.value,
            )
        )
    return out
