"""The $CCR line protocol: CRC, encoding, decoding and every reject reason."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.config import SerialDriverConfig
from drivers.serial.protocol import (
    REJECT_REASONS,
    LineDecoder,
    crc16_ccitt,
    decode_line,
    encode_reading,
    encode_status,
    frame,
)
from gateway.core.model import RawSample, Reject

RECEIVED_NS = 1_767_225_601_000_000_000
# The worked example in docs/serial-protocol.md.
DOC_LINE = b"$CCR,B1,1,42,1767225600000,4.25,81.5,3.58*EEC5\r\n"


def bitwise_crc16_ccitt_false(data: bytes) -> int:
    """Reference implementation, bit by bit, to check the fast one against."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@pytest.fixture
def decoder() -> LineDecoder:
    config = SerialDriverConfig(
        name="cr1-board", port="/dev/null", board="B1", probes={"1": "cr1-a", "2": "cr1-b"}
    )
    return LineDecoder.from_config(config)


def test_crc_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_ccitt(data) == bitwise_crc16_ccitt_false(data)


def test_doc_example_vector() -> None:
    body = b"CCR,B1,1,42,1767225600000,4.25,81.5,3.58"
    assert crc16_ccitt(body) == 0xEEC5
    assert (
        encode_reading("B1", "1", 42, 4.25, device_ts_ms=1767225600000, rh=81.5, battery_v=3.58)
        == DOC_LINE
    )


def test_decode_full_reading(decoder: LineDecoder) -> None:
    sample = decoder.decode_line(DOC_LINE, RECEIVED_NS)
    assert sample == RawSample(
        sensor="cr1-a",
        temp_c=4.25,
        ts_ns=1_767_225_600_000 * 1_000_000,
        received_ns=RECEIVED_NS,
        source="serial:cr1-board",
        rh=81.5,
        battery_v=3.58,
        seq=42,
    )


def test_empty_optional_fields_and_no_device_clock(decoder: LineDecoder) -> None:
    line = encode_reading("B1", "2", 7, -3.5)
    assert line == frame(b"CCR,B1,2,7,,-3.50,,")
    sample = decoder.decode_line(line, RECEIVED_NS)
    assert isinstance(sample, RawSample)
    assert sample.ts_ns is None  # the normaliser stamps received_ns and flags NO_DEVICE_TIME
    assert (sample.sensor, sample.temp_c, sample.rh, sample.battery_v, sample.seq) == (
        "cr1-b",
        -3.5,
        None,
        None,
        7,
    )


@pytest.mark.parametrize("temp", [85.0, -127.0, 1000.0, -273.0])
def test_sentinels_and_out_of_range_values_are_not_judged_here(
    decoder: LineDecoder, temp: float
) -> None:
    sample = decoder.decode_line(encode_reading("B1", "1", 1, temp), RECEIVED_NS)
    assert isinstance(sample, RawSample)
    assert sample.temp_c == temp


def test_line_endings_are_optional_and_lowercase_crc_accepted(decoder: LineDecoder) -> None:
    bare = DOC_LINE.rstrip(b"\r\n")
    assert isinstance(decoder.decode_line(bare, RECEIVED_NS), RawSample)
    assert isinstance(decoder.decode_line(bare + b"\n", RECEIVED_NS), RawSample)
    lower = bare[:-4] + bare[-4:].lower()
    assert isinstance(decoder.decode_line(lower, RECEIVED_NS), RawSample)


def test_status_line_is_accepted_and_ignored(decoder: LineDecoder) -> None:
    assert decoder.decode_line(encode_status("B1", 3600, "1.4.2"), RECEIVED_NS) is None
    assert decoder.last_status is not None
    assert (decoder.last_status.uptime_s, decoder.last_status.fw) == (3600, "1.4.2")
    assert encode_status("B1", 3600, "1.4.2") == b"$CCS,B1,3600,1.4.2*BF7E\r\n"


def _reason(decoder: LineDecoder, line: bytes) -> str:
    result = decoder.decode_line(line, RECEIVED_NS)
    assert isinstance(result, Reject), result
    assert result.dead_letter is True, "rejected lines are kept in the dead letters"
    assert result.source == "serial:cr1-board"
    return result.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (DOC_LINE.replace(b"EEC5", b"EEC6"), "checksum"),
        (DOC_LINE.replace(b"4.25", b"4.26"), "checksum"),  # bit error in a field
        (b"hello world\r\n", "garbage"),
        (b"\r\n", "garbage"),
        (b"\x00\xff\xfe$CCR\r\n", "garbage"),
        (b"$CCR,B1,1,42,,4.25,,*ZZZZ\r\n", "garbage"),  # no valid CRC field
        (b"$CCR,B1,1,42,,4.25,,\r\n", "garbage"),  # no CRC at all
        (b"$CCR,B1,1,42,,4.25,," + b"\xc3\xa9*0000\r\n", "garbage"),  # non-ASCII
        (frame(b"GPS,1,2,3"), "garbage"),  # a sentence we do not speak
        (frame(b"CCR,B1,1,42,,nan,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,inf,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,-Infinity,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,1e3,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,4_0,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,,,"), "bad_field"),  # temperature is mandatory
        (frame(b"CCR,B1,1,42,,4.0,,3.6,extra"), "bad_field"),
        (frame(b"CCR,B1,1,42,,4.0,"), "bad_field"),
        (frame(b"CCR,B1,1,-1,,4.0,,"), "bad_field"),
        (frame(b"CCR,B1,1,x,,4.0,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,-5,4.0,,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,4.0,wet,"), "bad_field"),
        (frame(b"CCR,B1,1,42,,4.0,,NaN"), "bad_field"),
        (frame(b"CCR,B1,1,42,,1" + b"0" * 400 + b",,"), "line_too_long"),
        (frame(b"CCR,,1,42,,4.0,,"), "bad_field"),
        (frame(b"CCS,B1,up,1.0"), "bad_field"),
        (frame(b"CCR,B2,1,42,,4.0,,"), "wrong_board"),
        (frame(b"CCS,B2,10,1.0"), "wrong_board"),
        (frame(b"CCR,B1,9,42,,4.0,,"), "unknown_probe"),
        (b"$" + b"A" * 300 + b"*0000\r\n", "line_too_long"),
    ],
)
def test_reject_reasons(decoder: LineDecoder, line: bytes, reason: str) -> None:
    assert _reason(decoder, line) == reason


def test_every_reject_reason_is_covered() -> None:
    assert set(REJECT_REASONS) == {
        "checksum",
        "garbage",
        "bad_field",
        "wrong_board",
        "unknown_probe",
        "line_too_long",
    }


def test_float_overflow_is_bad_field() -> None:
    decoder = LineDecoder({"1": "s"}, "src", max_line_bytes=4096)
    assert _reason_of(decoder, frame(b"CCR,B1,1,1,,1" + b"0" * 400 + b",,")) == "bad_field"


def _reason_of(decoder: LineDecoder, line: bytes) -> str:
    result = decoder.decode_line(line, 0)
    assert isinstance(result, Reject)
    return result.reason


def test_any_board_accepted_when_config_names_none() -> None:
    result = decode_line(frame(b"CCR,ZZ9,1,1,,4.0,,"), 5, "src", probes={"1": "s1"})
    assert isinstance(result, RawSample)
    assert result.sensor == "s1"


def test_encode_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_reading("B1", "1", 1, math.nan)


@given(
    seq=st.integers(min_value=0, max_value=2**32),
    ts=st.one_of(st.none(), st.integers(min_value=0, max_value=2**45)),
    temp=st.floats(min_value=-200, max_value=200),
    rh=st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    batt=st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
)
def test_roundtrip(
    seq: int, ts: int | None, temp: float, rh: float | None, batt: float | None
) -> None:
    line = encode_reading("B1", "1", seq, temp, device_ts_ms=ts, rh=rh, battery_v=batt)
    sample = decode_line(line, RECEIVED_NS, "src", probes={"1": "s1"}, board="B1")
    assert isinstance(sample, RawSample)
    assert sample.seq == seq
    assert sample.ts_ns == (None if ts is None else ts * 1_000_000)
    assert sample.temp_c == pytest.approx(temp, abs=0.006)
    assert (sample.rh is None) == (rh is None)
    assert (sample.battery_v is None) == (batt is None)


_protocolish = st.lists(
    st.sampled_from([b"$", b"*", b",", b"CCR", b"CCS", b"B1", b"1", b"-", b".", b"nan", b"\r"])
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=600), _protocolish))
def test_decoder_never_crashes(data: bytes) -> None:
    decoder = LineDecoder({"1": "s1"}, "fuzz", board="B1")
    result = decoder.decode_line(data, RECEIVED_NS)
    assert result is None or isinstance(result, RawSample | Reject)
    if isinstance(result, Reject):
        assert result.reason in REJECT_REASONS
    if isinstance(result, RawSample):
        assert math.isfinite(result.temp_c)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_valid_crc_on_arbitrary_body_never_crashes(body: bytes) -> None:
    # Framed with a correct CRC, so the field parsers see the arbitrary bytes too.
    decoder = LineDecoder({"1": "s1"}, "fuzz")
    result = decoder.decode_line(b"$CCR," + body + b"*" + b"%04X" % crc16_ccitt(b"CCR," + body), 0)
    assert result is None or isinstance(result, RawSample | Reject)
