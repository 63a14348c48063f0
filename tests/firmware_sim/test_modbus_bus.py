"""The Modbus bus simulator's own arithmetic and models (the pty tests use the rest)."""

from __future__ import annotations

import pytest

from firmware_sim.modbus_bus import char_bits, default_cold_room, rtu_exchange_s


def test_wire_time_of_one_read_at_9600_and_above_19200() -> None:
    # request 8 bytes + answer 5 + 2*2 = 17 characters, plus two 3.5-character gaps,
    # at 10 bits per character (8N1): 24 * 10 / 9600 s
    assert rtu_exchange_s(2, 9600) == pytest.approx(0.025)
    # above 19200 baud the gap is fixed at 1.75 ms (Modbus over serial line v1.02, 2.5.1.1)
    assert rtu_exchange_s(2, 38400) == pytest.approx(17 * 10 / 38400 + 2 * 0.00175)
    assert char_bits(8, "E", 1) == 11 and char_bits(8, "N", 2) == 11


def test_default_cold_room_reads_plausibly() -> None:
    room, freezer_1, freezer_2 = default_cold_room(3, seed=1)
    assert [s.probe for s in (room, freezer_1, freezer_2)] == [
        "xy_md02",
        "sht20_r0",
        "sht30_din_float",
    ]
    assert 0.0 < room.current()["temp"] < 10.0
    assert -25.0 < freezer_1.current()["temp"] < -15.0
    assert 0.0 <= freezer_2.current()["rh"] <= 100.0
