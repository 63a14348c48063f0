"""The claim-grade trace of one shipment, computed from what the sources returned (pure).

Inputs: the shipment's custody steps, the readings of the zones it was in, the alerts on
the shipment, its zones and their sensors, the product profile and the sensor and zone
config. Output: a :class:`TraceResult` with everything the claim report shows.

The trace has no rules of its own (docs/sop-semantics.md): it replays the readings through
the live rule objects (``gateway/trace/series.py``), and ``gateway/trace/verdict.py``
states the verdict. Here:

- Custody intervals run from one custody step to the next in the zone the earlier step
  names (consecutive steps in the same zone merge); ``handed_to_carrier`` ends custody. An
  interval still open at ``as_of_ns`` ends there. Nothing after ``as_of_ns`` is used:
  not a step, a reading, an acknowledgement or a clear.
- Min and max are over every usable sensor reading in custody; the time-weighted average
  and MKT over the zone values, each standing until the next one for at most the max gap.
- Data gaps are the budget's unknown time (silences the zone values cannot bridge), plus,
  in a zone whose health setting is ``any_stale``, every silence of one of its sensors.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from gateway.config import SensorConfig, ZoneConfig
from gateway.core.clock import NS_PER_S
from gateway.core.model import Quality
from gateway.custody.events import CustodyKind
from gateway.sop.mkt import mean_kinetic_temperature
from gateway.sop.profiles import DEFAULT_PROFILES, ProductProfile
from gateway.sop.settings import DEFAULT_DWELL_RULES, DwellRule
from gateway.sop.zones import STALE_INTERVALS, usable
from gateway.trace.query import AlarmRecord, CustodyStep, TraceInputError, TracePoint
from gateway.trace.result import (
    BudgetResult,
    ChainCheck,
    ChainStatus,
    CustodySpan,
    DataGap,
    DwellCheck,
    ExcursionRecord,
    Extreme,
    Handoff,
    Reason,
    ReasonLevel,
    SensorFault,
    SensorUsed,
    TraceResult,
    TraceStats,
    Verdict,
)
from gateway.trace.series import (
    DEFAULT_INTERVAL_S,
    CustodyReplay,
    ZoneSeries,
    replay_custody,
    replay_dwell,
    zone_series,
)
from gateway.trace.verdict import minutes as _minutes
from gateway.trace.verdict import reasons as _reasons
from gateway.trace.verdict import verdict_of

__all__ = [
    "BudgetResult",
    "ChainCheck",
    "ChainStatus",
    "CustodySpan",
    "DataGap",
    "DwellCheck",
    "ExcursionRecord",
    "Extreme",
    "Handoff",
    "Reason",
    "ReasonLevel",
    "SensorFault",
    "SensorUsed",
    "TraceResult",
    "TraceStats",
    "Verdict",
    "analyze",
    "custody_spans",
    "usable",
]


# -- custody -------------------------------------------------------------------------


def _identity(sensor: Any) -> dict[str, Any]:
    """Device identity fields of a configured sensor for the report (issue 17)."""
    if sensor is None:
        return {}
    due = getattr(sensor, "calibration_due", None)
    return {
        "serial": getattr(sensor, "serial", None),
        "accuracy_c": getattr(sensor, "accuracy_c", None),
        "calibration_due": due.isoformat() if due is not None else None,
        "model": getattr(sensor, "model", None),
    }


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


def _interval_ns(sensor: str, configured: Mapping[str, SensorConfig]) -> int:
    cfg = configured.get(sensor)
    return round((cfg.interval_s if cfg is not None else DEFAULT_INTERVAL_S) * NS_PER_S)


def _until_as_of(a: AlarmRecord, as_of_ns: int) -> AlarmRecord:
    """The alert as it stood at ``as_of_ns``: later acknowledgements and clears unseen."""
    changes: dict[str, object] = {}
    if a.acknowledged_ns is not None and a.acknowledged_ns > as_of_ns:
        changes.update(acknowledged_ns=None, acknowledged_by=None)
    if a.cleared_ns is not None and a.cleared_ns > as_of_ns:
        changes["cleared_ns"] = None
    return replace(a, **changes) if changes else a  # type: ignore[arg-type]


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
    chain: object | None = None,
    dwell_rules: Sequence[DwellRule] = DEFAULT_DWELL_RULES,
    timezone: str = "UTC",
    profiles: Mapping[str, ProductProfile] | None = None,
    gap_modes: Mapping[str, str] | None = None,
) -> TraceResult:
    """Build the trace; TraceInputError when the shipment has no custody steps.

    ``profiles`` resolves the zones' own profiles (their values are computed as the live
    engine computes them); ``gap_modes`` maps a zone to its health ``data_gap`` mode.
    """
    steps = sorted(
        (s for s in steps if s.ts_ns <= as_of_ns),
        key=lambda s: (s.ts_ns, s.seq if s.seq is not None else 0),
    )
    if not steps:
        msg = f"unknown shipment {shipment}: no custody events"
        raise TraceInputError(msg)
    known_profiles = {**DEFAULT_PROFILES, **(profiles or {}), profile.name: profile}
    zone_kind = {z.id: z.kind for z in zones}
    configured = {s.id: s for s in sensors}
    raw_spans = custody_spans(steps, as_of_ns)
    window_start = raw_spans[0][1] if raw_spans else steps[0].ts_ns
    window_end = raw_spans[-1][2] if raw_spans else steps[-1].ts_ns
    custody_open = bool(raw_spans) and raw_spans[-1][3]

    points = sorted((p for p in points if p.ts_ns < as_of_ns), key=lambda p: (p.ts_ns, p.sensor))
    by_zone = zone_series(points, zones, sensors, known_profiles)
    default_gap = round(STALE_INTERVALS * DEFAULT_INTERVAL_S * NS_PER_S)
    replayed = replay_custody(shipment, raw_spans, by_zone, profile, default_gap)

    span_starts = [s[1] for s in raw_spans]
    in_custody: list[bool] = []
    for p in points:
        i = bisect.bisect_right(span_starts, p.ts_ns) - 1
        in_custody.append(i >= 0 and raw_spans[i][0] == p.zone and p.ts_ns < raw_spans[i][2])
    custody_points = [p for p, inside in zip(points, in_custody, strict=True) if inside]

    seen_sensors: dict[tuple[str, str], list[int]] = {}  # (sensor, zone) -> [readings, flagged]
    for p in custody_points:
        counts = seen_sensors.setdefault((p.sensor, p.zone), [0, 0])
        counts[0] += 1
        if not usable(p.quality):
            counts[1] += 1

    spans: list[CustodySpan] = []
    gaps: list[DataGap] = []
    faults: list[SensorFault] = []
    modes = gap_modes or {}
    for zone, start, end, is_open in raw_spans:
        zone_sensors = sorted(
            {s.id for s in sensors if s.zone == zone} | {s for (s, z) in seen_sensors if z == zone}
        )
        for s in zone_sensors:
            seen_sensors.setdefault((s, zone), [0, 0])
        span_points = [p for p in custody_points if p.zone == zone and start <= p.ts_ns < end]
        good = [p for p in span_points if usable(p.quality)]
        spans.append(
            CustodySpan(
                zone=zone,
                zone_kind=zone_kind.get(zone),
                start_ns=start,
                end_ns=end,
                open=is_open,
                sensors=tuple(zone_sensors),
                readings=len(span_points),
                usable_readings=len(good),
                min_c=min((p.temp_c for p in good), default=None),
                max_c=max((p.temp_c for p in good), default=None),
            )
        )
        series = by_zone.get(zone) or ZoneSeries(zone, default_gap)
        why = (
            f"no sensor is configured for zone {zone}"
            if not zone_sensors
            else f"no usable reading of zone {zone} for more than its max gap of"
            f" {series.max_gap_ns / NS_PER_S:g} s"
        )
        gaps.extend(
            DataGap(z, a, b, series.max_gap_ns / NS_PER_S, why)
            for z, a, b in replayed.unknown
            if z == zone and start <= a < end
        )
        usable_by_sensor: dict[str, list[int]] = {}
        for p in points:
            if p.zone == zone and usable(p.quality):
                usable_by_sensor.setdefault(p.sensor, []).append(p.ts_ns)
        for sensor in zone_sensors:
            s_limit = round(STALE_INTERVALS * _interval_ns(sensor, configured))
            silent = _silences(usable_by_sensor.get(sensor, []), start, end, s_limit)
            faults.extend(
                SensorFault(
                    sensor, zone, "stale", a, b, f"no usable reading for {_minutes((b - a) / 1e9)}"
                )
                for a, b in silent
            )
            if modes.get(zone) == "any_stale" and len(zone_sensors) > 1:
                gaps.extend(
                    DataGap(
                        zone,
                        a,
                        b,
                        s_limit / NS_PER_S,
                        f"sensor {sensor} silent in {zone}, a zone where every probe covers"
                        " its own spot (data_gap = any_stale)",
                    )
                    for a, b in silent
                )
            flagged = [
                p
                for p in span_points
                if p.sensor == sensor and not usable(p.quality) and not p.quality & Quality.SPIKE
            ]
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
            spiked = [p for p in span_points if p.sensor == sensor and p.quality & Quality.SPIKE]
            if spiked:
                faults.append(
                    SensorFault(
                        sensor,
                        zone,
                        "spike",
                        spiked[0].ts_ns,
                        spiked[-1].ts_ns,
                        f"{len(spiked)} reading(s) flagged SPIKE (rate of change beyond the"
                        " limit), skipped by the rules",
                    )
                )
    gaps.sort(key=lambda g: (g.start_ns, g.zone))

    budget = replayed.budget
    stats = _stats(custody_points, replayed, profile, window_start, window_end)
    budget_result = BudgetResult(
        budget_s=profile.budget_s,
        spent_s=budget.spent_s,
        remaining_s=budget.remaining_s,
        warn_fraction=profile.budget_warn_fraction,
        state=budget.state,
        warn_at_ns=next((e.at_ns for e in replayed.budget_events if e.kind == "warn"), None),
        violated_at_ns=next(
            (e.at_ns for e in replayed.budget_events if e.kind == "violated"), None
        ),
        unknown_s=budget.unknown_s,
    )
    timeline = _timeline(steps, zone_kind, by_zone, as_of_ns, custody_open)
    dwell = replay_dwell(shipment, steps, dwell_rules, zone_kind, as_of_ns)
    alarms = [
        _until_as_of(a, as_of_ns)
        for a in _alarms(alerts, shipment, raw_spans, configured)
        if a.started_ns <= as_of_ns
    ]
    withdrawn = _withdrawn(alarms, shipment, dwell, dwell_rules)
    sensors_used = [
        SensorUsed(
            sensor=s,
            zone=z,
            calibration_id=configured[s].calibration_id if s in configured else None,
            interval_s=_interval_ns(s, configured) / NS_PER_S,
            configured=s in configured,
            readings=counts[0],
            flagged=counts[1],
            **_identity(configured.get(s)),
        )
        for (s, z), counts in sorted(seen_sensors.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    chain_check = ChainCheck.from_verification(chain)
    reasons = _reasons(
        profile,
        stats,
        replayed.excursions,
        budget_result,
        dwell,
        alarms,
        gaps,
        chain_check,
        custody_open,
        as_of_ns,
        None if any(st.seq is None for st in steps) else max(st.seq or 0 for st in steps),
        withdrawn,
        sensors=sensors_used,
    )
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
        series=replayed.series,
        stats=stats,
        excursions=replayed.excursions,
        budget=budget_result,
        dwell=dwell,
        alarms=alarms,
        gaps=gaps,
        faults=faults,
        sensors=sensors_used,
        chain=chain_check,
        verdict=verdict_of(reasons),
        reasons=reasons,
        spikes=[p for p in custody_points if p.quality & Quality.SPIKE],
        withdrawn_alerts=withdrawn,
    )


def _withdrawn(
    alarms: Sequence[AlarmRecord],
    shipment: str,
    dwell: Sequence[DwellCheck],
    rules: Sequence[DwellRule],
) -> list[str]:
    """Dwell alerts on the shipment that its event times do not bear out (keyed in late)."""
    names = {r.rule for r in rules}
    out: list[str] = []
    for a in alarms:
        if a.subject != shipment or a.rule not in names:
            continue
        checks = [d for d in dwell if d.rule == a.rule and d.from_ns == a.started_ns]
        if checks and all(d.status in ("ok", "running") for d in checks):
            out.append(a.alert_id)
    return out


def _stats(
    custody_points: Sequence[TracePoint],
    replayed: CustodyReplay,
    profile: ProductProfile,
    window_start: int,
    window_end: int,
) -> TraceStats:
    weighted = replayed.weighted
    good = [p for p in custody_points if usable(p.quality)]
    lo = min(good, key=lambda p: (p.temp_c, p.ts_ns), default=None)
    hi = max(good, key=lambda p: (p.temp_c, -p.ts_ns), default=None)
    covered = math.fsum(d for _, d in weighted)
    average = math.fsum(t * d for t, d in weighted) / covered if covered > 0 else None
    mkt = mean_kinetic_temperature(weighted, profile.dh_over_r_k) if covered > 0 else None
    rolling = replayed.mkt_rolling
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
        mkt_window_s=profile.mkt_window_s,
        mkt_rolling_c=None if rolling is None else rolling[0],
        mkt_rolling_end_ns=None if rolling is None else rolling[1],
    )


def _timeline(
    steps: Sequence[CustodyStep],
    zone_kind: Mapping[str, str],
    zone_data: Mapping[str, ZoneSeries],
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
            standing = zd.standing_at(step.ts_ns) if zd is not None else None
            temp = None if standing is None else standing[1]
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
