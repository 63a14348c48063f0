"""Excursion detector and cumulative budget: event-time rules read as specifications."""

from __future__ import annotations

from itertools import accumulate, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sop.excursion import CumulativeBudget, ExcursionDetector, ExcursionEvent
from gateway.sop.profiles import DEFAULT_PROFILES, ProductProfile

S = 1_000_000_000
T0 = 1_767_225_600 * S

# 2-8 °C, 10 min delay, no hysteresis: "inside" and "back inside" coincide.
SHARP = ProductProfile(name="sharp", min_c=2.0, max_c=8.0, alarm_delay_s=600, budget_s=3600)
# Same with a 1 °C clear margin: clears only inside 3-7 °C.
BANDED = SHARP.model_copy(update={"name": "banded", "hysteresis_c": 1.0})

# Values that exercise each region: far/near low, low band, inside, high band, near/far high.
temps = st.sampled_from([-5.0, 1.9, 2.0, 2.5, 5.0, 7.5, 8.0, 8.1, 12.0])
gaps_s = st.integers(min_value=0, max_value=400)
series = st.lists(st.tuples(gaps_s, temps), min_size=1, max_size=60)


def _timestamps(steps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    offsets = accumulate(gap for gap, _ in steps)
    return [(T0 + off * S, temp) for off, (_, temp) in zip(offsets, steps, strict=True)]


def _run(detector: ExcursionDetector, readings: list[tuple[int, float]]) -> list[ExcursionEvent]:
    return [event for ts, temp in readings for event in detector.observe(ts, temp)]


# --- single event --------------------------------------------------------------------------


@given(series)
def test_an_alarm_exactly_when_a_run_lasted_the_delay(steps: list[tuple[int, float]]) -> None:
    """Each run that lasted the delay raises once, at exactly start + delay (event time)."""
    readings = _timestamps(steps)
    for profile in (SHARP, BANDED):
        raised = [
            e for e in _run(ExcursionDetector(profile, "zone-a"), readings) if e.kind == "raised"
        ]
        expected = [
            (start, start + 600 * S)
            for start, last in _model_runs(profile, readings)
            if last - start >= 600 * S
        ]
        assert [(e.started_at_ns, e.raised_at_ns) for e in raised] == expected


def _model_runs(
    profile: ProductProfile, readings: list[tuple[int, float]]
) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    start: int | None = None
    last = 0
    for ts, temp in readings:
        if start is None:
            if profile.out_of_range(temp):
                start, last = ts, ts
            continue
        last = ts
        if profile.back_inside(temp):
            runs.append((start, last))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs


@given(series)
def test_raise_and_clear_alternate_with_hysteresis(steps: list[tuple[int, float]]) -> None:
    events = _run(ExcursionDetector(BANDED, "zone-a"), _timestamps(steps))
    alarm_kinds = [e.kind for e in events if e.kind != "aborted"]
    assert alarm_kinds == ["raised", "cleared"] * (len(alarm_kinds) // 2) + (
        ["raised"] if len(alarm_kinds) % 2 else []
    )
    for event in events:
        if event.kind == "cleared":
            assert event.excursion is not None
            assert event.excursion.alarmed


in_band = st.floats(min_value=2.0, max_value=2.99) | st.floats(min_value=7.01, max_value=8.0)


@given(st.lists(st.tuples(gaps_s, in_band), max_size=60))
def test_no_flapping_inside_the_hysteresis_band(band: list[tuple[int, float]]) -> None:
    detector = ExcursionDetector(BANDED, "zone-a")
    raised = _run(detector, [(T0, 1.0), (T0 + 600 * S, 0.5)])
    assert [e.kind for e in raised] == ["raised"]
    # Bands [2, 3) and (7, 8]: inside the range, not inside by the 1 °C margin.
    later = [(T0 + 600 * S + ts - T0, t) for ts, t in _timestamps([(1, 0.0), *band])[1:]]
    assert _run(detector, later) == []
    assert detector.state == "alarmed"


def test_excursion_starts_at_the_first_out_of_range_reading() -> None:
    detector = ExcursionDetector(SHARP, "zone-a")
    readings = [(T0 + i * 60 * S, t) for i, t in enumerate([5, 7, 8.5, 9, 10, 11, 12] + [9] * 10)]
    events = _run(detector, readings)
    assert [e.kind for e in events] == ["raised"]
    assert events[0].started_at_ns == T0 + 2 * 60 * S
    assert events[0].raised_at_ns == T0 + 12 * 60 * S
    assert events[0].direction == "high"
    assert events[0].peak_c == 12


def test_clear_reports_the_closed_excursion() -> None:
    detector = ExcursionDetector(BANDED, "zone-a")
    readings = [(T0, 1.5), (T0 + 300 * S, -1.0), (T0 + 600 * S, 1.0)]
    readings += [(T0 + 900 * S, 2.5), (T0 + 1200 * S, 3.5)]
    events = _run(detector, readings)
    assert [e.kind for e in events] == ["raised", "cleared"]
    excursion = events[1].excursion
    assert excursion is not None
    assert excursion.direction == "low"
    assert excursion.peak_c == -1.0
    assert excursion.started_at_ns == T0
    assert excursion.ended_at_ns == T0 + 1200 * S
    assert excursion.duration_s == 1200
    assert excursion.raised_at_ns == T0 + 600 * S


def test_short_excursion_is_aborted_without_an_alarm() -> None:
    detector = ExcursionDetector(SHARP, "zone-a")
    events = _run(detector, [(T0, 9.0), (T0 + 500 * S, 9.0), (T0 + 599 * S, 7.0)])
    assert [e.kind for e in events] == ["aborted"]
    assert events[0].excursion is not None
    assert not events[0].excursion.alarmed


def test_zero_delay_raises_on_the_first_out_of_range_reading() -> None:
    profile = SHARP.model_copy(update={"alarm_delay_s": 0.0})
    events = ExcursionDetector(profile, "zone-a").observe(T0, 8.5)
    assert [e.kind for e in events] == ["raised"]
    assert events[0].raised_at_ns == T0


def test_out_of_order_and_non_finite_readings_are_ignored_and_counted() -> None:
    detector = ExcursionDetector(SHARP, "zone-a")
    detector.observe(T0 + 100 * S, 9.0)
    assert detector.observe(T0, 5.0) == []
    assert detector.observe(T0 + 200 * S, float("nan")) == []
    assert detector.state == "pending"
    assert (detector.out_of_order, detector.ignored) == (1, 1)


def test_compressor_failure_raises_within_delay_plus_one_interval() -> None:
    profile = DEFAULT_PROFILES["chilled"]
    interval_s = 37  # deliberately not a divisor of the delay
    detector = ExcursionDetector(profile, "cold-room-1")
    temp, ts, first_out, raised_at = 4.0, T0, None, None
    while raised_at is None:
        temp += 0.05  # warming ramp after the compressor stops
        if first_out is None and profile.out_of_range(temp):
            first_out = ts
        for event in detector.observe(ts, temp):
            raised_at = event.raised_at_ns
        ts += interval_s * S
    assert first_out is not None
    delay_ns = round(profile.alarm_delay_s * S)
    assert first_out + delay_ns <= raised_at <= first_out + delay_ns + interval_s * S


def test_timer_raises_at_the_deadline_when_readings_stop() -> None:
    detector = ExcursionDetector(SHARP, "zone-a")
    detector.observe(T0, 5.0)
    detector.observe(T0 + 60 * S, 9.0)  # then the sensor goes silent
    deadline = T0 + 660 * S
    assert detector.pending_deadline_ns == deadline
    assert detector.check(deadline - 1) == []
    events = detector.check(deadline + 5 * S)
    assert [(e.kind, e.raised_at_ns, e.by_timer) for e in events] == [("raised", deadline, True)]
    assert detector.pending_deadline_ns is None
    assert detector.check(deadline + 60 * S) == []  # raised once
    assert [e.kind for e in detector.observe(deadline + 120 * S, 5.0)] == ["cleared"]


def test_timer_does_nothing_when_the_last_reading_is_inside() -> None:
    detector = ExcursionDetector(SHARP, "zone-a")
    detector.observe(T0, 9.0)
    detector.observe(T0 + 60 * S, 5.0)
    assert detector.pending_deadline_ns is None
    assert detector.check(T0 + 3600 * S) == []


# --- profiles ------------------------------------------------------------------------------


def test_profiles_need_a_limit_and_room_to_clear() -> None:
    with pytest.raises(ValueError, match="min_c, max_c or both"):
        ProductProfile(name="x")
    with pytest.raises(ValueError, match="hysteresis"):
        ProductProfile(name="x", min_c=0.5, max_c=1.5, hysteresis_c=0.5)
    with pytest.raises(ValueError, match="extra"):
        ProductProfile.model_validate({"name": "x", "max_c": 5, "colour": "blue"})


def test_default_profiles() -> None:
    assert set(DEFAULT_PROFILES) == {
        "chilled",
        "frozen",
        "frozen_transport",
        "cold_holding",
        "controlled_room",
        "flowers",
    }
    frozen = DEFAULT_PROFILES["frozen"]
    assert frozen.out_of_range(-17.9)
    assert not frozen.out_of_range(-18.0)
    assert not frozen.back_inside(-18.5)
    assert frozen.back_inside(-19.0)
    assert DEFAULT_PROFILES["controlled_room"].mkt_window_s == 30 * 86_400


# --- cumulative budget ---------------------------------------------------------------------


@given(series)
def test_cumulative_time_is_the_sum_of_out_of_range_intervals(
    steps: list[tuple[int, float]],
) -> None:
    readings = _timestamps(steps)
    budget = CumulativeBudget(SHARP, "shipment-1")
    events = [e for ts, t in readings for e in budget.observe(ts, t)]
    expected_ns = sum(
        b_ts - a_ts for (a_ts, a_t), (b_ts, _) in pairwise(readings) if SHARP.out_of_range(a_t)
    )
    assert budget.spent_s == expected_ns / S
    assert budget.remaining_s == max(0, 3600 * S - expected_ns) / S
    kinds = [e.kind for e in events]
    assert kinds == ["warn", "violated"][: len(kinds)]
    expected_state = "violated" if expected_ns >= 3600 * S else "ok"
    if expected_state == "ok" and expected_ns >= 2880 * S:
        expected_state = "warn"
    assert budget.state == expected_state


def test_budget_warns_then_violates_at_the_crossing_times() -> None:
    budget = CumulativeBudget(SHARP, "shipment-1")
    assert budget.observe(T0, 9.0) == []
    events = budget.observe(T0 + 4000 * S, 5.0)
    assert [(e.kind, e.at_ns) for e in events] == [
        ("warn", T0 + 2880 * S),
        ("violated", T0 + 3600 * S),
    ]
    assert budget.state == "violated"
    assert budget.remaining_s == 0
    assert budget.observe(T0 + 5000 * S, 9.0) == []  # never resets, never re-fires


def test_intervals_outside_custody_do_not_count() -> None:
    budget = CumulativeBudget(SHARP, "shipment-1")
    budget.observe(T0, 9.0)
    budget.pause(T0 + 100 * S)  # handed to a carrier mid-interval
    budget.observe(T0 + 200 * S, 9.0)
    budget.observe(T0 + 900 * S, 9.0)
    budget.resume(T0 + 1000 * S)
    budget.observe(T0 + 1100 * S, 9.0)
    budget.observe(T0 + 1150 * S, 5.0)
    assert budget.spent_s == 150
    budget.observe(T0 + 1180 * S, 9.0)
    budget.resume(T0 + 1200 * S)  # already in custody: keeps the open interval
    budget.pause(T0 + 1300 * S)
    assert budget.spent_s == 270
    budget.resume(T0 + 1400 * S, temp_c=9.0)  # seeded with the zone's current reading
    budget.observe(T0 + 1450 * S, 5.0)
    assert budget.spent_s == 320


def test_add_interval_counts_only_out_of_range_time() -> None:
    budget = CumulativeBudget(SHARP)
    budget.add_interval(T0, T0 + 60 * S, 9.0)
    budget.add_interval(T0 + 60 * S, T0 + 120 * S, 5.0)
    budget.add_interval(T0 + 120 * S, T0 + 100 * S, 9.0)
    assert budget.spent_s == 60


def test_budget_timer_fires_while_the_shipment_sits_out_of_range() -> None:
    budget = CumulativeBudget(SHARP, "shipment-1")
    budget.observe(T0, 5.0)
    budget.observe(T0 + 100 * S, 9.0)  # then silence
    assert budget.violation_deadline_ns == T0 + 3700 * S
    events = budget.check(T0 + 3700 * S)
    assert [(e.kind, e.at_ns) for e in events] == [
        ("warn", T0 + 2980 * S),
        ("violated", T0 + 3700 * S),
    ]
    assert budget.check(T0 + 4000 * S) == []
    assert budget.violation_deadline_ns is None


def test_zero_budget_violates_on_the_first_out_of_range_second() -> None:
    profile = SHARP.model_copy(update={"budget_s": 0.0})
    budget = CumulativeBudget(profile)
    budget.observe(T0, 5.0)
    assert budget.observe(T0 + 10 * S, 9.0) == []
    events = budget.observe(T0 + 20 * S, 5.0)
    assert [(e.kind, e.at_ns) for e in events] == [("warn", T0 + 10 * S), ("violated", T0 + 10 * S)]
