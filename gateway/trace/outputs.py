"""The trace as files: the readings as CSV and the summary as JSON.

The JSON follows ``docs/schemas/trace-summary.schema.json``; times are RFC 3339 UTC strings
with milliseconds and a ``Z``. The CSV has one row per reading in the trace window (every
reading of each custody interval's zone from the context margin before the shipment
arrived to the margin after it left), with ``in_custody_interval`` telling which ones the
shipment was exposed to.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from gateway.core.clock import NS_PER_S, iso_utc
from gateway.core.files import SHARED, write_atomic
from gateway.core.model import Quality
from gateway.trace.analysis import TraceResult, usable

SUMMARY_SCHEMA_VERSION = "1"
CSV_COLUMNS = (
    "time_utc",
    "ts_ns",
    "zone",
    "sensor",
    "temp_c",
    "quality",
    "usable",
    "in_custody_interval",
    "quality_flags",
)

_DAY_S = 86_400


class _IsoFormatter:
    """iso_utc for many sorted timestamps: the date part is formatted once per day."""

    def __init__(self) -> None:
        self._day = -1
        self._prefix = ""

    def __call__(self, ts_ns: int) -> str:
        seconds, rest = divmod(ts_ns, NS_PER_S)
        day, sec_of_day = divmod(seconds, _DAY_S)
        if day != self._day:
            self._day = day
            self._prefix = time.strftime("%Y-%m-%dT", time.gmtime(day * _DAY_S))
        hours, rem = divmod(sec_of_day, 3600)
        minutes, secs = divmod(rem, 60)
        return f"{self._prefix}{hours:02d}:{minutes:02d}:{secs:02d}.{rest // 1_000_000:03d}Z"


def write_csv(result: TraceResult, path: str | Path) -> int:
    """Write the readings of the trace window; returns the number of data rows."""
    fmt = _IsoFormatter()
    fh = io.StringIO(newline="")
    writer = csv.writer(fh)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(
        (
            fmt(p.ts_ns),
            p.ts_ns,
            p.zone,
            p.sensor,
            repr(p.temp_c),
            p.quality,
            int(usable(p.quality)),
            int(inside),
            quality_names(p.quality),
        )
        for p, inside in zip(result.points, result.in_custody, strict=True)
    )
    # Whole or not at all, 0640, and a symlink planted at the path is replaced, not followed.
    write_atomic(path, fh.getvalue().encode("utf-8"), SHARED)
    return len(result.points)


def quality_names(quality: int) -> str:
    """The quality bitmask as flag names ("SENTINEL|NO_DEVICE_TIME"; "" when good)."""
    return "|".join(
        flag.name or str(int(flag)) for flag in Quality if flag and quality & flag == flag
    )


def _t(ns: int | None) -> str | None:
    return None if ns is None else iso_utc(ns)


def _num(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def summary(result: TraceResult) -> dict[str, Any]:
    """The JSON summary as a dict (see docs/schemas/trace-summary.schema.json)."""
    p = result.profile
    s = result.stats
    in_custody = sum(result.in_custody)
    return {
        "schema": SUMMARY_SCHEMA_VERSION,
        "shipment": result.shipment,
        "hub": result.hub,
        "timezone": result.timezone,
        "as_of": iso_utc(result.as_of_ns),
        "verdict": result.verdict,
        "reasons": [{"level": r.level, "code": r.code, "text": r.text} for r in result.reasons],
        "profile": {
            "name": p.name,
            "min_c": p.min_c,
            "max_c": p.max_c,
            "alarm_delay_s": p.alarm_delay_s,
            "budget_s": p.budget_s,
            "budget_warn_fraction": p.budget_warn_fraction,
            "hysteresis_c": p.hysteresis_c,
            "mkt_limit_c": p.mkt_limit_c,
        },
        "custody": {
            "start": iso_utc(result.window_start_ns),
            "end": iso_utc(result.window_end_ns),
            "open": result.custody_open,
            "timeline": [
                {
                    "at": iso_utc(h.ts_ns),
                    "event": h.kind,
                    "zone": h.zone,
                    "zone_kind": h.zone_kind,
                    "actor": h.actor,
                    "carrier": h.carrier,
                    "note": h.note,
                    "temp_c": _num(h.temp_c),
                    "temp_source": h.temp_source,
                    "until_next_s": _num(h.until_next_s),
                    "seq": h.seq,
                    "hash": h.hash,
                }
                for h in result.timeline
            ],
            "intervals": [
                {
                    "zone": sp.zone,
                    "zone_kind": sp.zone_kind,
                    "start": iso_utc(sp.start_ns),
                    "end": iso_utc(sp.end_ns),
                    "open": sp.open,
                    "duration_s": _num(sp.duration_s),
                    "sensors": list(sp.sensors),
                    "readings": sp.readings,
                    "usable_readings": sp.usable_readings,
                    "min_c": _num(sp.min_c),
                    "max_c": _num(sp.max_c),
                }
                for sp in result.spans
            ],
        },
        "stats": {
            "min": None
            if s.min is None
            else {
                "temp_c": s.min.temp_c,
                "at": iso_utc(s.min.ts_ns),
                "zone": s.min.zone,
                "sensor": s.min.sensor,
            },
            "max": None
            if s.max is None
            else {
                "temp_c": s.max.temp_c,
                "at": iso_utc(s.max.ts_ns),
                "zone": s.max.zone,
                "sensor": s.max.sensor,
            },
            "average_c": _num(s.average_c),
            "mkt": {
                "value_c": _num(s.mkt_c),
                "dh_kj_per_mol": s.dh_kj_per_mol,
                "dh_over_r_k": _num(s.dh_over_r_k),
                "window_start": iso_utc(s.window_start_ns),
                "window_end": iso_utc(s.window_end_ns),
                "covered_s": _num(s.covered_s),
                "rolling_window_s": _num(s.mkt_window_s),
                "rolling_worst_c": _num(s.mkt_rolling_c),
                "rolling_worst_window_end": _t(s.mkt_rolling_end_ns),
            },
            "usable_readings": s.usable_readings,
        },
        "excursions": [
            {
                "direction": x.direction,
                "start": iso_utc(x.start_ns),
                "end": iso_utc(x.end_ns),
                "duration_s": _num(x.duration_s),
                "peak_c": x.peak_c,
                "zones": list(x.zones),
                "alarmed": x.alarmed,
                "open": x.open,
                "raised_at": _t(x.raised_ns),
                "out_of_range_s": _num(x.out_of_range_s),
                "ended_by": x.ended_by,
            }
            for x in result.excursions
        ],
        "budget": {
            "budget_s": result.budget.budget_s,
            "spent_s": _num(result.budget.spent_s),
            "remaining_s": _num(result.budget.remaining_s),
            "warn_fraction": result.budget.warn_fraction,
            "state": result.budget.state,
            "warn_at": _t(result.budget.warn_at_ns),
            "violated_at": _t(result.budget.violated_at_ns),
            "unknown_s": _num(result.budget.unknown_s),
        },
        "spikes": [
            {"at": iso_utc(p.ts_ns), "zone": p.zone, "sensor": p.sensor, "temp_c": p.temp_c}
            for p in result.spikes
        ],
        "dwell": [
            {
                "rule": d.rule,
                "from_event": d.from_kind,
                "from": iso_utc(d.from_ns),
                "zone": d.zone,
                "to_event": d.to_kind,
                "to": _t(d.to_ns),
                "duration_s": _num(d.duration_s),
                "limit_s": d.limit_s,
                "status": d.status,
            }
            for d in result.dwell
        ],
        "alarms": [
            {
                "alert_id": a.alert_id,
                "rule": a.rule,
                "severity": a.severity,
                "subject": a.subject,
                "state": a.state,
                "started": iso_utc(a.started_ns),
                "raised": _t(a.raised_ns),
                "acknowledged": _t(a.acknowledged_ns),
                "acknowledged_by": a.acknowledged_by,
                "cleared": _t(a.cleared_ns),
                "value": _num(a.value),
                "limit": _num(a.limit),
                "ack_note": a.ack_note,
                "notifications": [
                    {
                        "at": iso_utc(n.at_ns),
                        "contact": n.contact,
                        "channel": n.channel,
                        "kind": n.kind,
                        "level": n.level,
                        "result": n.result,
                        "attempt": n.attempt,
                        "message_id": n.message_id,
                        "detail": n.detail,
                    }
                    for n in a.notifications
                ],
            }
            for a in result.alarms
        ],
        "gaps": [
            {
                "zone": g.zone,
                "start": iso_utc(g.start_ns),
                "end": iso_utc(g.end_ns),
                "duration_s": _num(g.duration_s),
                "limit_s": g.limit_s,
                "reason": g.reason,
            }
            for g in result.gaps
        ],
        "sensor_faults": [
            {
                "sensor": f.sensor,
                "zone": f.zone,
                "kind": f.kind,
                "start": iso_utc(f.start_ns),
                "end": iso_utc(f.end_ns),
                "detail": f.detail,
            }
            for f in result.faults
        ],
        "sensors": [
            {
                "sensor": u.sensor,
                "zone": u.zone,
                "calibration_id": u.calibration_id,
                "interval_s": u.interval_s,
                "configured": u.configured,
                "readings": u.readings,
                "flagged": u.flagged,
                "model": u.model,
                "serial": u.serial,
                "accuracy_c": u.accuracy_c,
                "calibration_due": u.calibration_due,
            }
            for u in result.sensors
        ],
        "chain": {
            "status": result.chain.status,
            "first_bad_seq": result.chain.first_bad_seq,
            "reason": result.chain.reason,
        },
        "readings": {"in_window": len(result.points), "in_custody": in_custody},
    }


def write_json(result: TraceResult, path: str | Path) -> dict[str, Any]:
    """Write the JSON summary; returns it."""
    data = summary(result)
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(path, text.encode("utf-8"), SHARED)
    return data
