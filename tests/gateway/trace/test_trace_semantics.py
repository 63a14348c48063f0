"""Issue 13: the claim report and the live rules give one answer on the edge cases.

One named test per problem of the issue (1-6). Each runs readings through the live rule
objects and through the trace (``analyze``) and checks both against the written semantics
(docs/sop-semantics.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from gateway.config import GatewayConfig
from gateway.core.model import Quality, Reading
from gateway.sop.excursion import CumulativeBudget, ExcursionDetector
from gateway.sop.mkt import mean_kinetic_temperature, time_weighted_samples
from gateway.sop.profiles import ProductProfile
from gateway.sop.zones import ZoneMonitor
from gateway.trace.analysis import TraceResult, analyze
from gateway.trace.query import AlarmRecord, CustodyStep, TracePoint

S = 1_000_000_000
MIN = 60 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
CHAIN_OK = SimpleNamespace(ok=True, first_bad_seq=None, reason="")

# limit 8 °C, hysteresis 0.5, alarm delay 30 min, budget 30 min (the issue's numbers)
ISSUE = ProductProfile(
    name="issue", min_c=2.0, max_c=8.0, alarm_delay_s=1800, budget_s=1800, hysteresis_c=0.5
)


def _config(aggregate: str = "worst", sensors: int = 1, interval_s: float = 60) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "hub": {"id": "hub-a"},
            "profiles": {
                "issue": ISSUE.model_dump(exclude={"name"}),
            },
            "zones": [
                {"id": "cold", "kind": "cold_storage", "profile": "issue", "aggregate": aggregate},
                {"id": "dock", "kind": "dock", "profile": "issue"},
            ],
            "sensors": [
                {"id": f"s{i}", "zone": "cold", "interval_s": interval_s} for i in range(sensors)
            ]
            + [{"id": "d0", "zone": "dock", "interval_s": interval_s}],
            # The block that feeds them (test_5 normalises samples from source "mqtt:t").
            "drivers": {
                "mqtt": [
                    {
                        "name": "t",
                        "sensors": [f"s{i}" for i in range(sensors)] + ["d0"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )


def _trace(
    config: GatewayConfig,
    points: Sequence[TracePoint],
    steps: Sequence[CustodyStep] | None = None,
    *,
    as_of: int = T0 + 600 * MIN,
    alerts: Sequence[AlarmRecord] = (),
    gap_modes: dict[str, str] | None = None,
) -> TraceResult:
    if steps is None:
        steps = [
            CustodyStep(T0, "put_away", "cold", "ana", seq=1),
            CustodyStep(T0 + 120 * MIN, "handed_to_carrier", "cold", "ana", seq=2),
        ]
    profiles = config.all_profiles()
    return analyze(
        "SH-1",
        "hub-a",
        steps,
        points,
        alerts,
        profiles["issue"],
        config.sensors,
        config.zones,
        as_of_ns=as_of,
        chain=CHAIN_OK,
        dwell_rules=config.dwell_rules,
        profiles=profiles,
        gap_modes=gap_modes,
    )


def _points(series: Sequence[tuple[int, float]], sensor: str = "s0") -> list[TracePoint]:
    return [
        TracePoint(ts, "cold", sensor, temp, 0, order=i + 1) for i, (ts, temp) in enumerate(series)
    ]


def _live(config: GatewayConfig, points: Sequence[TracePoint]) -> tuple[list[str], ZoneMonitor]:
    monitor = ZoneMonitor(config)
    kinds: list[str] = []
    for p in sorted(points, key=lambda p: p.order):
        reading = Reading(p.sensor, p.ts_ns, p.ts_ns, p.temp_c, "t", p.zone, quality=p.quality)
        kinds += [e.kind for e in monitor.observe([reading]) if hasattr(e, "direction")]
    return kinds, monitor


def _minutes(values: Sequence[float], start: int = T0, step: int = MIN) -> list[tuple[int, float]]:
    return [(start + i * step, v) for i, v in enumerate(values)]


# -- 1. gaps --------------------------------------------------------------------------------


def test_1_a_gap_between_two_out_of_range_readings_alarms_live_and_in_the_trace() -> None:
    # 5 °C, then 9 °C, the probe silent 40 min, 9 °C again, then back to 5 °C.
    series = [(T0, 5.0), (T0 + MIN, 9.0), (T0 + 41 * MIN, 9.0), (T0 + 42 * MIN, 5.0)]
    kinds, _ = _live(_config(), _points(series))
    assert kinds == ["raised", "cleared"]
    result = _trace(_config(), _points(series))
    (x,) = result.excursions
    assert x.alarmed and x.raised_ns == T0 + 31 * MIN, "at exactly start + delay"
    assert x.out_of_range_s == 41 * 60, "out of range on both sides: the silence counts"
    assert result.budget.spent_s == 41 * 60
    assert result.verdict == "reject"


def test_1_a_gap_counts_the_same_whichever_reading_comes_last() -> None:
    # 9 -> silence -> 5 and 5 -> silence -> 9: the unknown time is the same 37 min, the
    # out-of-range time is what the readings stand for (the 9 °C one, its 3 min max gap).
    gap = 3 * MIN
    warm_first = CumulativeBudget(ISSUE, max_gap_ns=gap)
    warm_first.observe(T0, 9.0)
    warm_first.observe(T0 + 40 * MIN, 5.0)
    cold_first = CumulativeBudget(ISSUE, max_gap_ns=gap)
    cold_first.observe(T0, 5.0)
    cold_first.observe(T0 + 40 * MIN, 9.0)
    assert (warm_first.spent_s, warm_first.unknown_s) == (180, 37 * 60)
    assert (cold_first.spent_s, cold_first.unknown_s) == (0, 37 * 60)


def test_1_mkt_does_not_drop_the_warm_reading_before_a_silent_probe() -> None:
    readings = [(T0, 5.0), (T0 + 10 * MIN, 25.0), (T0 + 130 * MIN, 5.0)]
    samples = time_weighted_samples(readings, window_end_ns=T0 + 140 * MIN, max_gap_s=180)
    assert (25.0, 180.0) in samples, "the warm reading weighs its max gap"
    assert mean_kinetic_temperature(samples) > mean_kinetic_temperature([(5.0, 1200.0)])


def test_1_unknown_time_that_could_spend_the_budget_rejects_unless_the_profile_says_review() -> (
    None
):
    # In range, then 2 h of silence inside custody: more than the 30 min budget left.
    series = _minutes([5.0] * 10) + _minutes([5.0] * 10, start=T0 + 130 * MIN)
    result = _trace(_config(), _points(series))
    assert result.budget.unknown_s >= 1800
    reason = next(r for r in result.reasons if r.code == "unknown_over_budget")
    assert reason.level == "reject"
    assert "data_gap" in [r.code for r in result.reasons]
    lenient = _config()
    profiles = {**lenient.all_profiles()}
    profiles["issue"] = profiles["issue"].model_copy(update={"unknown_time": "review"})
    review = analyze(
        "SH-1",
        "hub-a",
        [
            CustodyStep(T0 - 10 * MIN, "received", "cold", "ana", seq=1),
            CustodyStep(T0 + 300 * MIN, "handed_to_carrier", "cold", "ana", seq=2),
        ],
        _points(series),
        [],
        profiles["issue"],
        lenient.sensors,
        lenient.zones,
        as_of_ns=T0 + 600 * MIN,
        chain=CHAIN_OK,
        profiles=profiles,
    )
    assert review.verdict == "review"


# -- 2. hysteresis while pending ------------------------------------------------------------


def test_2_a_probe_hovering_around_the_limit_does_not_defeat_the_alarm_delay() -> None:
    hover = [8.9, 7.7, 8.6, 7.8, 8.8, 7.9] * 6  # 36 min between 7.7 and 8.9 °C
    series = _minutes([5.0, *hover, 5.0])
    kinds, _ = _live(_config(), _points(series))
    assert kinds == ["raised", "cleared"], "each dip under 8.0 is not back inside by 0.5"
    result = _trace(_config(), _points(series))
    (x,) = result.excursions
    assert x.alarmed and x.raised_ns == T0 + 31 * MIN
    assert x.end_ns == T0 + 37 * MIN
    assert x.out_of_range_s == 18 * 60, "only the readings above 8 °C count out of range"
    assert result.budget.spent_s == x.out_of_range_s


# -- 3. one notion of duration, exact boundaries -----------------------------------------


def test_3_thirty_minutes_out_of_range_spend_the_budget_and_raise_the_alarm() -> None:
    series = _minutes([5.0] + [9.0] * 30 + [5.0])  # 30 one-minute samples at 9 °C
    detector = ExcursionDetector(ISSUE, "cold", max_gap_ns=3 * MIN)
    events = [e for ts, t in series for e in detector.observe(ts, t)]
    assert [e.kind for e in events] == ["raised", "cleared"], "not aborted"
    assert events[0].at_ns == T0 + 31 * MIN, "alarms at exactly the delay"
    assert events[1].excursion is not None
    assert events[1].excursion.out_of_range_s == 1800
    budget = CumulativeBudget(ISSUE, max_gap_ns=3 * MIN)
    for ts, t in series:
        budget.observe(ts, t)
    assert (budget.state, budget.spent_s) == ("violated", 1800)
    result = _trace(_config(), _points(series))
    assert [(x.alarmed, x.out_of_range_s) for x in result.excursions] == [(True, 1800)]
    assert result.budget.state == "violated"


def test_3_a_dwell_limit_reached_exactly_is_a_violation_in_the_trace_as_live() -> None:
    steps = [
        CustodyStep(T0, "staged", "dock", "ana", seq=1),
        CustodyStep(T0 + 20 * MIN, "handed_to_carrier", "dock", "ana", seq=2),  # the limit
    ]
    points = [TracePoint(T0 + i * MIN, "dock", "d0", 5.0, 0, i + 1) for i in range(25)]
    result = _trace(_config(), points, steps)
    (check,) = [d for d in result.dwell if d.from_kind == "staged"]
    assert (check.duration_s, check.status) == (1200, "violated")


# -- 4. back-dated handoffs -----------------------------------------------------------------


def test_4_a_dwell_alert_raised_on_a_late_entry_and_withdrawn_is_no_review() -> None:
    # Live raised the staged->handed_to_carrier violation when a back-dated "staged" was
    # keyed in, and withdrew it when the handover came with an event time inside the limit.
    steps = [
        CustodyStep(T0, "staged", "dock", "ana", seq=1),
        CustodyStep(T0 + 15 * MIN, "handed_to_carrier", "dock", "ana", seq=2),
    ]
    alert = AlarmRecord(
        "dwell.staged.handed_to_carrier-x",
        "dwell.staged.handed_to_carrier",
        "critical",
        "SH-1",
        "cleared",
        started_ns=T0,
        raised_ns=T0 + 20 * MIN,
        cleared_ns=T0 + 15 * MIN,
    )
    points = [TracePoint(T0 + i * MIN, "dock", "d0", 5.0, 0, i + 1) for i in range(20)]
    result = _trace(_config(), points, steps, alerts=[alert])
    assert [d.status for d in result.dwell] == ["ok"]
    assert result.withdrawn_alerts == [alert.alert_id]
    assert "unacknowledged_alert" not in [r.code for r in result.reasons]
    assert result.verdict == "accept", result.reasons


# -- 5. the trace's own versions of the rules -----------------------------------------------


def test_5_median_zone_live_and_trace_agree_on_zone_values_and_excursions() -> None:
    # Issue 12 bug 1: probes at 4, 5 and 12 °C in a median zone: the median is 5 °C.
    config = _config("median", sensors=3)
    points = []
    for minute in range(120):
        for i, temp in enumerate((4.0, 5.0, 12.0)):
            ts = T0 + minute * MIN + i * S
            points.append(TracePoint(ts, "cold", f"s{i}", temp, 0, len(points) + 1))
    kinds, _ = _live(config, points)
    assert kinds == [], "live raises nothing"
    result = _trace(config, points)
    assert result.excursions == []
    assert result.verdict == "accept", result.reasons
    live_values = {(ts, v) for z, ts, v in _all_zone_values(config, points) if z == "cold"}
    trace_values = {(ts, v) for ts, v, z in result.series if z == "cold"}
    assert trace_values <= live_values and len(trace_values) >= 300


def _all_zone_values(
    config: GatewayConfig, points: Sequence[TracePoint]
) -> list[tuple[str, int, float]]:
    monitor = ZoneMonitor(config)
    out: list[tuple[str, int, float]] = []
    for p in sorted(points, key=lambda p: p.order):
        monitor.observe([Reading(p.sensor, p.ts_ns, p.ts_ns, p.temp_c, "t", p.zone)])
        out += monitor.zone_values
    return out


def test_5_trace_mkt_is_the_worst_rolling_window_beside_the_whole_custody() -> None:
    warm = ISSUE.model_copy(update={"mkt_limit_c": 6.0, "mkt_window_s": 3600.0})
    config = _config()
    profiles = {**config.all_profiles(), "issue": warm}
    # 1 h at 7.5 °C (MKT 7.5 > 6) within 5 h at 4 °C: whole-custody MKT below the limit.
    series = _minutes([4.0] * 120 + [7.5] * 60 + [4.0] * 120)
    result = analyze(
        "SH-1",
        "hub-a",
        [
            CustodyStep(T0, "received", "cold", "ana", seq=1),
            CustodyStep(T0 + 300 * MIN, "handed_to_carrier", "cold", "ana", seq=2),
        ],
        _points(series),
        [],
        warm,
        config.sensors,
        config.zones,
        as_of_ns=T0 + 600 * MIN,
        chain=CHAIN_OK,
        profiles=profiles,
    )
    assert result.stats.mkt_c is not None and result.stats.mkt_c < 6.0
    assert result.stats.mkt_rolling_c is not None and result.stats.mkt_rolling_c > 7.0
    assert result.stats.mkt_window_s == 3600
    reason = next(r for r in result.reasons if r.code == "mkt")
    assert "1 h rolling window" in reason.text and "whole custody" in reason.text


def test_5_any_stale_zone_one_silent_probe_is_a_data_gap_in_the_trace() -> None:
    config = _config(sensors=2)
    points = [
        TracePoint(T0 + m * MIN + i * S, "cold", f"s{i}", 5.0, 0, 2 * m + i + 1)
        for m in range(300)
        for i in range(2)
        if not (i == 1 and 100 <= m < 160)
    ]
    assert _trace(config, points).gaps == []
    result = _trace(config, points, gap_modes={"cold": "any_stale"})
    assert [g.zone for g in result.gaps] == ["cold"]
    assert result.verdict == "review"


def test_5_a_spike_flagged_at_ingest_is_skipped_by_the_rules_and_listed() -> None:
    from gateway.core.model import RawSample
    from gateway.ingest.normalize import Normalizer

    config = _config()
    normalizer = Normalizer(config)
    temps = [5.0] * 40 + [40.0] + [5.0] * 40  # one glitch: 35 °C in a minute
    raw = [RawSample("s0", t, T0 + i * MIN, T0 + i * MIN, "mqtt:t") for i, t in enumerate(temps)]
    readings = normalizer.normalize(raw).readings
    flags = [r.quality & Quality.SPIKE for r in readings]
    assert sum(1 for f in flags if f) == 1 and readings[40].quality & Quality.SPIKE
    points = [
        TracePoint(r.ts_ns, r.zone, r.sensor, r.temp_c, r.quality, i + 1)
        for i, r in enumerate(readings)
    ]
    kinds, _ = _live(config, points)
    assert kinds == []
    result = _trace(config, points)
    assert result.excursions == [] and result.budget.spent_s == 0
    assert [p.ts_ns for p in result.spikes] == [T0 + 40 * MIN]
    assert any(f.kind == "spike" for f in result.faults)


# -- 6. known defects in the trace ----------------------------------------------------------


def test_6_a_shipment_that_leaves_and_returns_starts_a_new_run() -> None:
    # 20 min warm, out of custody for an hour, 20 min warm again: two short runs, no alarm.
    steps = [
        CustodyStep(T0, "received", "cold", "ana", seq=1),
        CustodyStep(T0 + 20 * MIN, "handed_to_carrier", "cold", "ana", carrier="X", seq=2),
        CustodyStep(T0 + 80 * MIN, "returned", "cold", "ana", seq=3),
        CustodyStep(T0 + 100 * MIN, "handed_to_carrier", "cold", "ana", carrier="X", seq=4),
    ]
    series = _minutes([9.0] * 110)
    result = _trace(_config(), _points(series), steps)
    assert [x.alarmed for x in result.excursions] == [False, False]
    assert "excursion" not in [r.code for r in result.reasons]


def test_6_dwell_stops_at_handed_to_carrier() -> None:
    steps = [  # cross-docked: received, then straight onto a truck 10 min later
        CustodyStep(T0, "received", "cold", "ana", seq=1),
        CustodyStep(T0 + 10 * MIN, "handed_to_carrier", "cold", "ana", carrier="X", seq=2),
    ]
    result = _trace(_config(), _points(_minutes([5.0] * 20)), steps)
    (check,) = result.dwell
    assert (check.status, check.stopped_by) == ("ok", "handed_to_carrier")
    assert "dwell" not in [r.code for r in result.reasons]


def test_6_a_timer_raised_alarm_after_silence_is_shown_as_raised() -> None:
    # 10-minute sensor (max gap 30 min): 9 °C, then back to 5 °C 40 minutes later. The
    # value stood until T0 + 30 min, past the 30 min delay: the live timer raised it.
    config = _config(interval_s=600)
    series = [(T0, 5.0), (T0 + 10 * MIN, 9.0), (T0 + 20 * MIN, 9.0), (T0 + 50 * MIN, 5.0)]
    kinds, _ = _live(config, _points(series))
    assert kinds == ["raised", "cleared"]
    result = _trace(config, _points(series))
    (x,) = result.excursions
    assert x.alarmed and x.raised_ns == T0 + 40 * MIN


def test_6_the_trace_never_reads_past_as_of() -> None:
    # Warm after 02:00; a trace as of 01:00 knows nothing about it, nor about the handover.
    series = _minutes([5.0] * 120 + [12.0] * 120)
    result = _trace(_config(), _points(series), as_of=T0 + 60 * MIN)
    assert result.custody_open
    assert result.excursions == [] and result.budget.spent_s == 0
    assert max(p.ts_ns for p in result.points) < T0 + 60 * MIN
    acked_later = AlarmRecord(
        "a1", "excursion", "critical", "cold", "acknowledged", T0 + 10 * MIN,
        raised_ns=T0 + 10 * MIN, acknowledged_ns=T0 + 90 * MIN, acknowledged_by="dana",
    )  # fmt: skip
    result = _trace(_config(), _points(series), as_of=T0 + 60 * MIN, alerts=[acked_later])
    (alarm,) = result.alarms
    assert alarm.acknowledged_by is None, "acknowledged after the as-of time"


@pytest.mark.parametrize("raised_days_before", [0.5, 3.0])
def test_6_an_alert_active_at_arrival_is_on_the_log_however_old(
    raised_days_before: float,
) -> None:
    start = T0 - round(raised_days_before * 86_400 * S)
    alert = AlarmRecord("a2", "excursion", "critical", "cold", "raised", start, raised_ns=start)
    result = _trace(_config(), _points(_minutes([5.0] * 60)), alerts=[alert])
    assert [a.alert_id for a in result.alarms] == ["a2"]
