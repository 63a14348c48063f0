"""Thermal zone models: cycling bands, door bumps, compressor failure, determinism."""

from __future__ import annotations

import itertools
import statistics

import pytest

from firmware_sim.thermal import AmbientDock, ColdRoom, Freezer, Probe, ZoneModel, zone_from_name


def trace(zone: ZoneModel, seconds: int, dt: float = 1.0) -> list[float]:
    out = []
    for _ in range(int(seconds / dt)):
        zone.step(dt)
        out.append(zone.temperature_c)
    return out


def test_cold_room_cycles_within_its_hysteresis_band() -> None:
    room = ColdRoom(door_openings_per_h=0)
    temps = trace(room, 6 * 3600)
    assert min(temps) >= 2.5 - 0.01
    assert max(temps) <= 5.5 + 0.01
    # The compressor really cycles: many crossings of the setpoint.
    crossings = sum(1 for a, b in itertools.pairwise(temps) if (a - 4.0) * (b - 4.0) < 0)
    assert crossings > 20
    assert 3.5 < statistics.fmean(temps) < 4.5


def test_door_openings_bump_the_room_but_it_stays_chilled() -> None:
    room = ColdRoom(door_openings_per_h=6, seed=2)
    temps = trace(room, 12 * 3600)
    assert room.door_openings > 30
    assert max(temps) > 5.6  # bumps go above the cut-in point
    assert min(temps) >= 2.0 and max(temps) < 8.0  # but never out of 2-8 °C


def test_compressor_failure_drifts_above_8c_in_the_expected_time() -> None:
    fail_at = 3600
    room = ColdRoom(door_openings_per_h=0, compressor_fails_at_s=fail_at)
    temps = trace(room, fail_at)
    assert max(temps) <= 5.51
    at_failure = room.temperature_c
    minutes = 0
    while room.temperature_c <= 8.0:
        room.step(60)
        minutes += 1
    # ~0.3 °C/min from wherever the cycle was (2.5-5.5 °C).
    assert minutes == pytest.approx((8.0 - at_failure) / 0.3, abs=1.01)
    assert 8 <= minutes <= 19
    assert room.compressor_failed and not room.compressor_on
    trace(room, 3 * 3600, dt=60)
    assert room.temperature_c == pytest.approx(20.0)  # settles at ambient, not beyond


def test_freezer_cycles_around_minus_20() -> None:
    freezer = Freezer(door_openings_per_h=0)
    temps = trace(freezer, 6 * 3600)
    assert min(temps) >= -21.51 and max(temps) <= -18.49
    assert -20.7 < statistics.fmean(temps) < -19.3


def test_dock_follows_the_day() -> None:
    dock = AmbientDock(start_hour=0.0, seed=4)
    temps = trace(dock, 48 * 3600, dt=60)
    assert min(temps) >= 14.0 and max(temps) <= 23.0
    day = temps[: 24 * 60]
    hottest_hour = day.index(max(day)) / 60
    coldest_hour = day.index(min(day)) / 60
    assert 14 <= hottest_hour <= 18
    assert 2 <= coldest_hour <= 6


@pytest.mark.parametrize("kind", ["cold_room", "freezer", "dock"])
def test_models_are_deterministic_per_seed(kind: str) -> None:
    a = trace(zone_from_name(kind, seed=5), 3 * 3600, dt=5)
    b = trace(zone_from_name(kind, seed=5), 3 * 3600, dt=5)
    assert a == b


def test_step_size_does_not_change_the_cycle_band() -> None:
    coarse = trace(ColdRoom(door_openings_per_h=0), 6 * 3600, dt=60)
    assert min(coarse) >= 2.49 and max(coarse) <= 5.51


def test_probe_noise_offset_and_resolution() -> None:
    room = ColdRoom(door_openings_per_h=0)
    probe = Probe(room, noise_c=0.1, offset_c=0.5, seed=9)
    errors = []
    for _ in range(2000):
        room.step(1)
        value = probe.read_c()
        assert (value / 0.0625) == pytest.approx(round(value / 0.0625))
        errors.append(value - room.temperature_c)
    assert statistics.fmean(errors) == pytest.approx(0.5, abs=0.02)
    assert 0.08 < statistics.stdev(errors) < 0.13


def test_unknown_zone_kind() -> None:
    with pytest.raises(ValueError, match="unknown zone kind"):
        zone_from_name("sauna")
