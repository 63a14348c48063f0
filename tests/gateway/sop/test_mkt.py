"""Mean kinetic temperature: the DESIGN.md reference values and its properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sop.mkt import RollingMkt, mean_kinetic_temperature, time_weighted_samples
from gateway.sop.profiles import DEFAULT_PROFILES

S = 1_000_000_000
HOUR = 3600.0

temps = st.floats(min_value=-40.0, max_value=60.0, allow_nan=False)
durations = st.floats(min_value=0.5, max_value=86_400.0, allow_nan=False)


def test_equal_intervals_reference() -> None:
    samples = [(t, 600.0) for t in (2, 2, 5, 8, 8, 8, 8)]
    assert mean_kinetic_temperature(samples) == pytest.approx(6.25, abs=0.01)


def test_uneven_hours_reference() -> None:
    samples = [(20.0, 2 * HOUR), (2.0, 4 * HOUR), (25.0, 1 * HOUR)]
    assert mean_kinetic_temperature(samples) == pytest.approx(15.68, abs=0.01)


def test_profile_dh_gives_the_usp_constant() -> None:
    assert DEFAULT_PROFILES["chilled"].dh_over_r_k == pytest.approx(10_000.0)


def test_uneven_readings_are_weighted_by_the_time_they_stand_for() -> None:
    # 20 °C for 2 h, 2 °C for 4 h, 25 °C for 1 h, as readings with uneven spacing.
    t0 = 1_767_225_600 * S
    readings = [(t0, 20.0), (t0 + 2 * 3600 * S, 2.0), (t0 + 6 * 3600 * S, 25.0)]
    samples = time_weighted_samples(readings, window_end_ns=t0 + 7 * 3600 * S)
    assert samples == [(20.0, 2 * HOUR), (2.0, 4 * HOUR), (25.0, 1 * HOUR)]
    assert mean_kinetic_temperature(samples) == pytest.approx(15.68, abs=0.01)


def test_last_reading_stands_for_the_median_interval_without_a_window_end() -> None:
    readings = [(0, 5.0), (10 * S, 6.0), (20 * S, 7.0), (50 * S, 8.0)]
    assert time_weighted_samples(readings) == [(5.0, 10.0), (6.0, 10.0), (7.0, 30.0), (8.0, 10.0)]


def test_a_reading_before_a_gap_weighs_the_max_gap_and_the_rest_is_unknown() -> None:
    # The 30 °C reading before a silent probe is not dropped (that lowered the MKT): it
    # stands for the max gap; the rest of the silence is left out (unknown, not covered).
    readings = [(0, 5.0), (60 * S, 30.0), (7200 * S, 6.0), (7260 * S, 6.0)]
    samples = time_weighted_samples(readings, window_end_ns=7320 * S, max_gap_s=300)
    assert samples == [(5.0, 60.0), (30.0, 300.0), (6.0, 60.0), (6.0, 60.0)]


def test_no_time_covered_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive duration"):
        mean_kinetic_temperature([(5.0, 0.0)])
    with pytest.raises(ValueError, match="physical"):
        mean_kinetic_temperature([(-300.0, 1.0)])


@given(temps, durations)
def test_constant_series_gives_itself(temp_c: float, duration_s: float) -> None:
    samples = [(temp_c, duration_s)] * 5
    assert mean_kinetic_temperature(samples) == pytest.approx(temp_c, abs=1e-9)


@given(st.lists(st.tuples(temps, durations), min_size=1, max_size=50))
def test_between_min_and_max_and_at_least_the_mean(samples: list[tuple[float, float]]) -> None:
    mkt = mean_kinetic_temperature(samples)
    assert min(t for t, _ in samples) <= mkt <= max(t for t, _ in samples)
    weighted_mean = math.fsum(t * d for t, d in samples) / math.fsum(d for _, d in samples)
    assert mkt >= weighted_mean - 1e-9


def _batch(window: list[tuple[int, float]], end_ns: int, max_gap_s: float | None) -> float | None:
    samples = time_weighted_samples(window, window_end_ns=end_ns, max_gap_s=max_gap_s)
    return mean_kinetic_temperature(samples) if samples else None


@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3_600), temps), min_size=1, max_size=80
    ),
    window_s=st.integers(min_value=1, max_value=20_000),
    max_gap_s=st.one_of(st.none(), st.integers(min_value=1, max_value=3_000)),
    tail_s=st.integers(min_value=0, max_value=3_600),
)
def test_rolling_equals_batch_on_the_window(
    steps: list[tuple[int, float]], window_s: int, max_gap_s: int | None, tail_s: int
) -> None:
    rolling = RollingMkt(window_s, max_gap_s=max_gap_s)
    ts_ns = 1_767_225_600 * S
    seen: list[tuple[int, float]] = []
    for step_s, temp_c in steps:
        ts_ns += step_s * S
        rolling.observe(ts_ns, temp_c)
        seen.append((ts_ns, temp_c))
        window = [r for r in seen if r[0] >= ts_ns - window_s * S]
        assert rolling.window() == window
        for end_ns in (ts_ns, ts_ns + tail_s * S):
            expected = _batch(window, end_ns, max_gap_s)
            got = rolling.value(end_ns if end_ns != ts_ns else None)
            if expected is None:
                assert got is None
            else:
                assert got == pytest.approx(expected, abs=1e-6)


def test_rolling_ignores_readings_older_than_the_newest() -> None:
    rolling = RollingMkt(3600)
    rolling.observe(100 * S, 5.0)
    rolling.observe(50 * S, 40.0)
    rolling.observe(200 * S, 5.0)
    assert rolling.out_of_order == 1
    assert rolling.value() == pytest.approx(5.0)
