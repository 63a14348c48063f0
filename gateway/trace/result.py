"""What a trace says about one shipment: the records the claim report (PDF, CSV, JSON) shows.

Plain frozen dataclasses, no logic beyond a duration; ``gateway/trace/series.py`` fills
them by replaying the readings through the live rules, ``gateway/trace/verdict.py`` turns
them into reasons and a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.core.clock import NS_PER_S
from gateway.sop.profiles import ProductProfile
from gateway.trace.query import AlarmRecord, TracePoint

Verdict = Literal["accept", "review", "reject"]
ReasonLevel = Literal["reject", "review", "info"]
ChainStatus = Literal["verified", "broken", "altered", "not_verified"]


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
    """Min, max, time-weighted average and MKT over the custody span.

    ``mkt_c`` is over the whole custody (each value weighing at most its max gap);
    ``mkt_rolling_c`` is the worst value of the profile's rolling MKT window inside
    custody, judged the way the live rule judges it (gateway/sop/zones.py ``MktJudge``),
    with the end of that window; None when custody never covered half a window.
    """

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
    mkt_window_s: float = 0.0
    mkt_rolling_c: float | None = None
    mkt_rolling_end_ns: int | None = None


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
    out_of_range_s: float = 0.0  # each out-of-range value for its interval, as the budget
    ended_by: str = "reading"  # "reading" back inside, or "unknown" time (a data gap)

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
    unknown_s: float = 0.0  # custody time whose temperature is unknown (data gaps)


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
    stopped_by: str | None = None  # the step that stopped the timer (target or handover)


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
    kind: Literal["stale", "flagged", "spike"]
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
    serial: str | None = None
    accuracy_c: float | None = None
    calibration_due: str | None = None  # ISO date
    model: str | None = None


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
        if getattr(result, "altered", False):  # the evidence chain (gateway.evidence.verify)
            return cls("altered", None, reason or "journaled records were altered")
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
    spikes: list[TracePoint] = field(default_factory=list)  # readings flagged SPIKE, skipped
    withdrawn_alerts: list[str] = field(default_factory=list)  # dwell alerts recorded late
