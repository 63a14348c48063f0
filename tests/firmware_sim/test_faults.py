"""Fault injection: parsing, rates, determinism, and what each fault does to a line."""

from __future__ import annotations

from collections import Counter

import pytest

from drivers.serial.protocol import LineDecoder, encode_reading
from firmware_sim.faults import Fault, FaultInjector, FaultRates
from gateway.core.model import Reject


def test_parse_rates() -> None:
    rates = FaultRates.parse("checksum=0.05, garbage=0.02,drop=0.1,frozen_lines=5")
    assert rates == FaultRates(checksum=0.05, garbage=0.02, drop=0.1, frozen_lines=5)
    assert FaultRates.parse("") == FaultRates()


@pytest.mark.parametrize("text", ["checksum", "bogus=0.1", "drop=1.5", "drop=x"])
def test_parse_refuses_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        FaultRates.parse(text)


def test_rates_are_roughly_honoured_and_seeded() -> None:
    rates = FaultRates(checksum=0.1, drop=0.05, sentinel=0.02)
    inj = FaultInjector(rates, seed=1)
    draws = Counter(inj.decide("1") for _ in range(20_000))
    assert draws[Fault.DROP] / 20_000 == pytest.approx(0.05, abs=0.01)
    assert draws[Fault.CHECKSUM] / 20_000 == pytest.approx(0.095, abs=0.015)
    inj = FaultInjector(rates, seed=1)
    again = Counter(inj.decide("1") for _ in range(20_000))
    assert draws == again


def test_frozen_lasts_frozen_lines_per_probe() -> None:
    inj = FaultInjector(FaultRates(frozen=1.0, frozen_lines=3), seed=0)
    assert [inj.decide("1") for _ in range(3)] == [Fault.FROZEN] * 3
    assert inj.decide("2") is Fault.FROZEN


def test_corrupt_checksum_and_garbage_lines_are_rejected_as_such() -> None:
    decoder = LineDecoder({"1": "s1"}, "src")
    inj = FaultInjector(seed=7)
    good = encode_reading("B1", "1", 1, 4.0)
    for _ in range(200):
        bad = decoder.decode_line(inj.corrupt_checksum(good), 0)
        assert isinstance(bad, Reject) and bad.reason == "checksum"
        garbage = inj.garbage_line()
        assert garbage.endswith(b"\r\n") and garbage.count(b"\n") == 1 and b"$" not in garbage
        result = decoder.decode_line(garbage, 0)
        assert isinstance(result, Reject) and result.reason == "garbage"


def test_garbage_includes_nul_and_non_utf8() -> None:
    inj = FaultInjector(seed=3)
    blob = b"".join(inj.garbage_line() for _ in range(200))
    assert b"\x00" in blob
    with pytest.raises(UnicodeDecodeError):
        blob.decode("utf-8")


def test_sentinels() -> None:
    inj = FaultInjector(seed=0)
    assert {inj.sentinel_c() for _ in range(100)} == {85.0, -127.0}
