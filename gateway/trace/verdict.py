"""The verdict of a trace: every reason a sentence, the worst reason decides.

``reject`` when the budget is spent, an excursion outlasted the alarm delay, unknown time
could have spent the remaining budget and the profile says reject (``unknown_time``), or
the custody hash chain is broken at or before one of this shipment's records (after them:
``review``); ``review`` for unknown time (a data gap), the budget warn fraction reached, an
unacknowledged critical alert, a dwell violation, MKT above the profile's MKT limit (the
worst rolling window the live rule judged; the whole custody when it is too short for one),
or a chain that was not verified; ``accept`` otherwise. A dwell alert the live engine
raised on a handoff keyed in late, whose next step happened in time, is listed as
withdrawn (info), not as an unacknowledged alert.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.clock import NS_PER_S, iso_utc
from gateway.sop.profiles import ProductProfile
from gateway.trace.query import AlarmRecord
from gateway.trace.result import (
    BudgetResult,
    ChainCheck,
    DataGap,
    DwellCheck,
    ExcursionRecord,
    Reason,
    SensorUsed,
    TraceStats,
    Verdict,
)

_RANK: dict[str, int] = {"info": 0, "review": 1, "reject": 2}


def minutes(seconds: float) -> str:
    """Seconds as the report writes a duration."""
    return f"{seconds / 60:.1f} min"


_minutes = minutes


def verdict_of(reasons: Sequence[Reason]) -> Verdict:
    """The worst reason's level: reject, review, or accept when there is none."""
    top = max((_RANK[r.level] for r in reasons), default=0)
    if top == _RANK["reject"]:
        return "reject"
    if top == _RANK["review"]:
        return "review"
    return "accept"


def _overdue_calibrations(sensors: Sequence[SensorUsed], as_of_ns: int) -> list[Reason]:
    """A sensor whose calibration expired before the trace's end: its readings need review."""
    import datetime as dt

    until = dt.datetime.fromtimestamp(as_of_ns / NS_PER_S, tz=dt.UTC).date()
    out: list[Reason] = []
    for s in sensors:
        if s.calibration_due is not None and dt.date.fromisoformat(s.calibration_due) < until:
            cert = f" (certificate {s.calibration_id})" if s.calibration_id else ""
            out.append(
                Reason(
                    "review",
                    "calibration_overdue",
                    f"sensor {s.sensor} in {s.zone}: calibration{cert} was due"
                    f" {s.calibration_due}, before the end of this trace",
                )
            )
    return out


def reasons(
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
    withdrawn: Sequence[str] = (),
    sensors: Sequence[SensorUsed] = (),
) -> list[Reason]:
    """Every reason for the verdict, worst kinds first."""
    out: list[Reason] = []
    if budget.state == "violated":
        at = iso_utc(budget.violated_at_ns) if budget.violated_at_ns is not None else "?"
        out.append(
            Reason(
                "reject",
                "budget_spent",
                f"cumulative time out of range {_minutes(budget.spent_s)} reached the"
                f" {profile.name} budget of {_minutes(budget.budget_s)} (spent at {at})",
            )
        )
    elif budget.unknown_s > 0 and budget.unknown_s >= budget.remaining_s:
        out.append(
            Reason(
                profile.unknown_time,
                "unknown_over_budget",
                f"{_minutes(budget.unknown_s)} of custody with unknown temperature could have"
                f" spent the remaining {_minutes(budget.remaining_s)} of the budget"
                f" (profile {profile.name}: unknown time {profile.unknown_time}s)",
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
                    f" {iso_utc(x.end_ns)}{' (open when custody ended)' if x.open else ''}"
                    f"{' (then the data stops)' if x.ended_by == 'unknown' else ''} lasted"
                    f" {_minutes(x.duration_s)} ({_minutes(x.out_of_range_s)} out of range),"
                    f" reaching the alarm delay of {_minutes(profile.alarm_delay_s)}"
                    f" at {iso_utc(x.raised_ns or x.start_ns)}; peak {x.peak_c:.2f} °C",
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
    for aid in withdrawn:
        out.append(
            Reason(
                "info",
                "dwell_withdrawn",
                f"alert {aid} was raised on a handoff keyed in late and withdrawn: the next"
                " step was recorded late, in time (dwell is judged on event times)",
            )
        )
    for a in alarms:
        if a.alert_id in withdrawn:
            continue
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
    limit = profile.mkt_limit_c
    window_h = f"{stats.mkt_window_s / 3600:g} h"
    if limit is not None and stats.mkt_rolling_c is not None and stats.mkt_rolling_c > limit:
        end = iso_utc(stats.mkt_rolling_end_ns or stats.window_end_ns)
        out.append(
            Reason(
                "review",
                "mkt",
                f"MKT {stats.mkt_rolling_c:.2f} °C over the {window_h} rolling window ending"
                f" {end} exceeds the profile's MKT limit of {limit:g} °C (whole custody:"
                f" {stats.mkt_c:.2f} °C)"
                if stats.mkt_c is not None
                else "",
            )
        )
    elif (
        limit is not None
        and stats.mkt_rolling_c is None
        and stats.mkt_c is not None
        and stats.mkt_c > limit
    ):
        out.append(
            Reason(
                "review",
                "mkt",
                f"MKT {stats.mkt_c:.2f} °C over the whole custody (shorter than half the"
                f" {window_h} MKT window) exceeds the profile's MKT limit of {limit:g} °C",
            )
        )
    if chain.status == "not_verified":
        out.append(Reason("review", "chain_not_verified", chain.reason))
    out += _overdue_calibrations(sensors, as_of_ns)
    if chain.status == "altered":
        out.append(Reason("reject", "records_altered", chain.reason))
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
