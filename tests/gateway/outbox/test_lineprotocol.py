"""Line protocol encoding: escaping rules, field types, and a round trip through influxd."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.apps.localservices import InfluxDB1
from gateway.core.model import Quality, Reading
from gateway.outbox.lineprotocol import (
    LineProtocolError,
    encode,
    escape_key,
    escape_measurement,
    escape_string,
    format_field,
    line,
    reading_line,
    representable,
)

TS = 1_700_000_000_123_456_789


def _reading(**overrides: object) -> Reading:
    values: dict[str, object] = {
        "sensor": "s1",
        "ts_ns": TS,
        "received_ns": TS + 5,
        "temp_c": 4.25,
        "source": "serial:ttyUSB0",
        "zone": "cold-1",
        "rh": 55.5,
        "battery_v": 3.01,
        "quality": 0,
        "seq": 7,
    }
    values.update(overrides)
    return Reading(**values)  # type: ignore[arg-type]


class TestEscaping:
    def test_clean_values_pass_unchanged(self) -> None:
        assert escape_key("hub-lis_01:a.b") == "hub-lis_01:a.b"
        assert escape_measurement("reading") == "reading"

    def test_measurement_escapes_comma_and_space_only(self) -> None:
        assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"

    def test_keys_and_tag_values_escape_comma_equals_space(self) -> None:
        assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"

    def test_string_fields_escape_quote_and_backslash(self) -> None:
        assert escape_string('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'
        assert escape_string("multi\nline") == '"multi\nline"'

    def test_newlines_in_names_become_spaces(self) -> None:
        assert escape_key("a\nb\r\nc") == "a\\ b\\ c"
        assert escape_measurement("a\rb") == "a\\ b"

    def test_backslash_that_would_merge_with_an_escape_becomes_slash(self) -> None:
        assert escape_key("a\\b") == "a\\b"  # harmless in the middle
        assert escape_key("end\\") == "end/"
        assert escape_key("a\\,b") == "a/\\,b"
        assert escape_key("a\\ b") == "a/\\ b"

    def test_representable(self) -> None:
        assert representable("zone 1, dock=A")
        assert representable("a\\b")
        assert not representable("a\nb")
        assert not representable("end\\")
        assert not representable("a\\=b")

    @pytest.mark.parametrize("name", ["", "#comment"])
    def test_invalid_measurement(self, name: str) -> None:
        with pytest.raises(LineProtocolError):
            escape_measurement(name)


class TestFields:
    def test_types(self) -> None:
        assert format_field(3) == "3i"
        assert format_field(-3) == "-3i"
        assert format_field(True) == "true"
        assert format_field(False) == "false"
        assert format_field(2.0) == "2.0"
        assert format_field(1e16) == "1e+16"
        assert format_field("x") == '"x"'
        assert format_field(Quality.SENTINEL | Quality.SPIKE) == "9i"

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_are_left_out(self, value: float) -> None:
        assert format_field(value) is None

    def test_int64_bounds(self) -> None:
        assert format_field(2**63 - 1) == f"{2**63 - 1}i"
        with pytest.raises(LineProtocolError):
            format_field(2**63)

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_floats_round_trip(self, value: float) -> None:
        text = format_field(value)
        assert text is not None
        assert float(text) == value


class TestLine:
    def test_tags_sorted_empty_left_out(self) -> None:
        got = line("custody", {"zone": "", "shipment": "S 1", "hub": "h"}, {"seq": 3}, TS)
        assert got == f"custody,hub=h,shipment=S\\ 1 seq=3i {TS}"

    def test_fields_keep_order_and_drop_nan(self) -> None:
        got = line("alert", {}, {"state": "active", "value": math.nan, "limit": 8.0}, 5)
        assert got == 'alert state="active",limit=8.0 5'

    def test_no_storable_field_is_an_error(self) -> None:
        with pytest.raises(LineProtocolError):
            line("m", {"a": "b"}, {"v": math.nan}, 1)
        with pytest.raises(LineProtocolError):
            line("m", {}, {}, 1)

    def test_empty_keys_are_errors(self) -> None:
        with pytest.raises(LineProtocolError):
            line("m", {"": "x"}, {"v": 1}, 1)
        with pytest.raises(LineProtocolError):
            line("m", {}, {"": 1}, 1)

    def test_encode_joins_lines(self) -> None:
        assert encode(["a v=1 1", "b v=2 2"]) == b"a v=1 1\nb v=2 2"


class TestReadingLine:
    def test_full_reading(self) -> None:
        assert reading_line("hub-1", _reading()) == (
            "reading,hub=hub-1,sensor=s1,source=serial:ttyUSB0,zone=cold-1 "
            f"temp_c=4.25,rh=55.5,battery_v=3.01,quality=0i,seq=7i {TS}"
        )

    def test_optional_parts_left_out(self) -> None:
        r = _reading(zone="", rh=None, battery_v=None, seq=None, quality=Quality.NO_DEVICE_TIME)
        assert reading_line("hub-1", r) == (
            f"reading,hub=hub-1,sensor=s1,source=serial:ttyUSB0 temp_c=4.25,quality=32i {TS}"
        )

    def test_integer_temperature_is_still_a_float(self) -> None:
        assert "temp_c=5.0," in reading_line("h", _reading(temp_c=5))

    def test_matches_generic_line(self) -> None:
        r = _reading(sensor="probe 2,a=b")
        generic = line(
            "reading",
            {"hub": "h", "zone": r.zone, "sensor": r.sensor, "source": r.source},
            {
                "temp_c": r.temp_c,
                "rh": r.rh if r.rh is not None else math.nan,
                "battery_v": r.battery_v if r.battery_v is not None else math.nan,
                "quality": r.quality,
                "seq": r.seq if r.seq is not None else 0,
            },
            r.ts_ns,
        )
        assert reading_line("h", r) == generic


TRICKY_TAGS = [
    "plain",
    "with space",
    "comma,here",
    "equals=here",
    "all , = three",
    "back\\slash",
    "tab\there",
    "unicode é ☃",
    'quote"d',
    "end\\",
    "new\nline",
]


@pytest.mark.integration
def test_round_trip_through_influxd(influx_db: tuple[InfluxDB1, str]) -> None:
    server, db = influx_db
    lines = [
        line(
            "odd measurement,name",
            {"tag key=1": value, "idx": str(i)},
            {"s": f'note "{i}" \\ {value}', "f": 0.1 + i, "i": i, "b": i % 2 == 0},
            TS + i,
        )
        for i, value in enumerate(TRICKY_TAGS)
    ]
    server.write(db, encode(lines))
    rows = server.rows('SELECT * FROM "odd measurement,name" ORDER BY time', db)
    assert len(rows) == len(TRICKY_TAGS)
    for i, (row, value) in enumerate(zip(rows, TRICKY_TAGS, strict=True)):
        expected_tag = (
            value
            if representable(value)
            else {
                "end\\": "end/",
                "new\nline": "new line",
            }[value]
        )
        assert row["tag key=1"] == expected_tag
        assert row["idx"] == str(i)
        assert row["time"] == TS + i
        assert row["s"] == f'note "{i}" \\ {value}'
        assert row["f"] == 0.1 + i
        assert row["i"] == i
        assert row["b"] is (i % 2 == 0)


@pytest.mark.integration
def test_reading_round_trip_through_influxd(influx_db: tuple[InfluxDB1, str]) -> None:
    server, db = influx_db
    r = _reading(temp_c=-18.123456789012345, quality=Quality.CLOCK_SKEW)
    server.write(db, reading_line("hub-1", r))
    [row] = server.rows("SELECT * FROM reading", db)
    assert row == {
        "time": TS,
        "hub": "hub-1",
        "sensor": "s1",
        "source": "serial:ttyUSB0",
        "zone": "cold-1",
        "temp_c": -18.123456789012345,
        "rh": 55.5,
        "battery_v": 3.01,
        "quality": 4,
        "seq": 7,
    }
