"""The wear meter: bytes written per second, per reading, per day, card lifetime."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.runtime.wear import WearMeter, written_bytes


def test_rate_over_the_window_and_card_lifetime() -> None:
    meter = WearMeter(card_endurance_tb=10.0, window_s=3600)
    assert meter.sample(0.0, 1_000, 0) is None, "one sample is no rate"
    rate = meter.sample(100.0, 1_000 + 3_000_000, 20_000)
    assert rate is not None
    assert rate.bytes_per_s == 30_000
    assert rate.bytes_per_reading == 150
    assert rate.bytes_per_day == 30_000 * 86_400
    assert rate.card_years == pytest.approx(10e12 / (30_000 * 86_400 * 365))
    assert rate.as_json()["gb_per_day"] == 2.592


def test_old_samples_leave_the_window() -> None:
    meter = WearMeter(card_endurance_tb=1.0, window_s=100)
    meter.sample(0.0, 0, 0)  # a startup burst (schema, first checkpoint)
    meter.sample(10.0, 10_000_000, 0)
    meter.sample(200.0, 10_000_000 + 190 * 100, 190)
    rate = meter.sample(300.0, 10_000_000 + 290 * 100, 290)
    assert rate is not None
    assert rate.bytes_per_s == pytest.approx(100.0), "the burst is out of the window"
    assert rate.bytes_per_reading == pytest.approx(100.0)


def test_no_readings_no_per_reading_figure() -> None:
    meter = WearMeter(card_endurance_tb=1.0)
    meter.sample(0.0, 0, 7)
    rate = meter.sample(10.0, 4096, 7)
    assert rate is not None
    assert rate.bytes_per_reading is None
    assert rate.as_json()["bytes_per_reading"] is None


def test_written_bytes_reads_proc_io(tmp_path: Path) -> None:
    io = tmp_path / "io"
    io.write_text("rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 8192\n")
    assert written_bytes(io) == 8192
    assert written_bytes(tmp_path / "missing") is None
    assert isinstance(written_bytes(), int), "Linux: this process's own /proc/self/io"
