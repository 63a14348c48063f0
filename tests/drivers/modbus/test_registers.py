"""Register maths and the ready point maps, checked against the makers' worked examples."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.modbus.config import ModbusDriverConfig
from drivers.modbus.driver import crc16_modbus, rtu_crc_ok
from drivers.modbus.points import ModbusPoint
from drivers.modbus.probes import PROBES, probe_points
from drivers.modbus.registers import (
    BadValue,
    Block,
    encode_value,
    plan_blocks,
    point_value,
    raw_value,
)
from gateway.config import GatewayConfig


def _value(point: ModbusPoint, registers: list[int]) -> float:
    block = Block(point.table, point.address, point.words, (point,))
    return point_value(point, block, registers)


# XY-MD02 manual, "MODBUS COMMAND" section (temperature value 0x131 = 30.5 °C; "the
# temperature is signed: 0xFF33 = -20.5 °C"; humidity 0x222 = 54.6 %), as reproduced at
# https://aliexpress.io/en/electronic-components-supplies/active-components/xy-md02-temperature-and-humidity-transmitter-detection-sensor-module-modbus-sht40-temperature-sensor-3256801289361056
@pytest.mark.parametrize(
    ("kind", "register", "expected"),
    [("temp", 0x0131, 30.5), ("temp", 0xFF33, -20.5), ("rh", 0x0222, 54.6)],
)
def test_xy_md02_map_reads_the_manuals_examples(kind: str, register: int, expected: float) -> None:
    (point,) = [p for p in probe_points("xy_md02", "s") if p.kind == kind]
    assert point.table == "input"
    assert _value(point, [register]) == expected


# YTL-SHT20-RS485 manual, register table: 0x012E = 302 -> 30.2 °C, 0x0320 = 800 -> 80.0 %RH
# https://www.intelmanuf.cn/en/second_menu/英特隆RS485温湿度传感器使用说明书en.HTML
def test_sht20_r0_map_reads_the_manuals_examples() -> None:
    temp, rh = probe_points("sht20_r0", "s")
    assert (temp.address, rh.address) == (0, 1)
    assert _value(temp, [0x012E]) == 30.2
    assert _value(rh, [0x0320]) == 80.0


def test_every_probe_map_round_trips_a_freezer_temperature() -> None:
    for name in PROBES:
        for point in probe_points(name, "s"):
            value = -21.5 if point.kind == "temp" else 55.5
            assert _value(point, encode_value(point, value)) == value, (name, point.kind)


# -18.75 °C as an IEEE 754 float32 is 0xC1960000. The four orders a device may send it in:
@pytest.mark.parametrize(
    ("word_order", "byte_order", "registers"),
    [
        ("big", "big", [0xC196, 0x0000]),  # ABCD
        ("little", "big", [0x0000, 0xC196]),  # CDAB (Modicon "word swap")
        ("big", "little", [0x96C1, 0x0000]),  # BADC
        ("little", "little", [0x0000, 0x96C1]),  # DCBA
    ],
)
def test_float32_in_every_word_and_byte_order(
    word_order: str, byte_order: str, registers: list[int]
) -> None:
    point = ModbusPoint(
        sensor="s", address=10, type="float32", word_order=word_order, byte_order=byte_order
    )  # type: ignore[arg-type]
    assert _value(point, registers) == -18.75
    assert encode_value(point, -18.75) == registers


def test_integer_types_keep_their_sign() -> None:
    assert raw_value([0xFFFF], "int16", "big", "big") == -1
    assert raw_value([0xFFFF], "uint16", "big", "big") == 65535
    assert raw_value([0xFFFF, 0xFF38], "int32", "big", "big") == -200
    assert raw_value([0xFF38, 0xFFFF], "int32", "little", "big") == -200
    assert raw_value([0x0001, 0x0000], "uint32", "big", "big") == 65536


def test_scale_and_offset() -> None:
    point = ModbusPoint(sensor="s", address=0, type="uint16", scale=0.01, offset=-40.0)
    assert _value(point, [2150]) == -18.5


def test_a_no_reading_code_and_nan_are_refused() -> None:
    point = ModbusPoint(sensor="s", address=0, type="int16", scale=0.1, invalid=[32767])
    with pytest.raises(BadValue, match="no reading"):
        _value(point, [0x7FFF])
    nan = ModbusPoint(sensor="s", address=0, type="float32")
    with pytest.raises(BadValue, match="nan"):
        _value(nan, [0x7FC0, 0x0000])


def test_blocks_join_adjacent_points_only() -> None:
    points = [
        ModbusPoint(sensor="a", address=1, register="input"),
        ModbusPoint(sensor="a", kind="rh", address=2, register="input"),
        ModbusPoint(sensor="b", address=2, type="float32"),
        ModbusPoint(sensor="c", address=10),
    ]  # type: ignore[call-arg]
    blocks = plan_blocks(points)
    assert [(b.register, b.start, b.count) for b in blocks] == [
        ("holding", 2, 2),
        ("holding", 10, 1),
        ("input", 1, 2),
    ]


def test_modbus_crc_matches_the_spec_example() -> None:
    # Modbus over serial line v1.02, 6.2.2: request 02 07 has CRC 0x1241, sent 41 12.
    assert crc16_modbus(bytes([0x02, 0x07])) == 0x1241
    assert rtu_crc_ok(bytes([0x02, 0x07, 0x41, 0x12]))
    assert not rtu_crc_ok(bytes([0x02, 0x07, 0x41, 0x13]))


def _bus(**extra: object) -> dict[str, object]:
    return {
        "name": "bus1",
        "port": "/dev/ttyUSB0",
        "devices": [{"slave": 1, "probe": "xy_md02", "sensor": "s1"}],
        **extra,
    }


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="unknown probe 'nope'"):
        ModbusDriverConfig.model_validate(
            _bus(devices=[{"slave": 1, "probe": "nope", "sensor": "s1"}])
        )
    with pytest.raises(ValidationError, match="slave id 3 appears twice"):
        ModbusDriverConfig.model_validate(
            _bus(devices=[{"slave": 3, "probe": "xy_md02", "sensor": s} for s in ("a", "b")])
        )
    with pytest.raises(ValidationError, match="has rh but no temp point"):
        ModbusDriverConfig.model_validate(
            _bus(devices=[{"slave": 1, "points": [{"sensor": "a", "kind": "rh", "address": 0}]}])
        )
    with pytest.raises(ValidationError, match='"tcp" needs host'):
        ModbusDriverConfig.model_validate(_bus(transport="tcp", port=None))
    with pytest.raises(ValidationError, match="less than or equal to 247"):
        ModbusDriverConfig.model_validate(
            _bus(devices=[{"slave": 248, "probe": "xy_md02", "sensor": "s1"}])
        )


def _hub(**drivers: object) -> dict[str, object]:
    return {
        "hub": {"id": "h1"},
        "zones": [{"id": "z1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "z1"}, {"id": "s2", "zone": "z1"}],
        "drivers": drivers,
    }


def test_a_serial_board_and_a_modbus_bus_on_one_tty_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"tty:/dev/ttyUSB0 is already used"):
        GatewayConfig.model_validate(
            _hub(
                serial=[{"name": "b1", "port": "/dev/ttyUSB0", "probes": {"0": "s2"}}],
                modbus=[_bus()],
            )
        )


def test_one_tcp_unit_in_two_blocks_is_refused() -> None:
    tcp = {"transport": "tcp", "host": "10.0.0.5", "port": None}
    doc = _hub(
        modbus=[
            _bus(name="a", **tcp),
            _bus(name="b", **tcp, devices=[{"slave": 1, "probe": "xy_md02", "sensor": "s2"}]),
        ]
    )
    with pytest.raises(ValidationError, match=r"modbus-tcp:10\.0\.0\.5:502:1 is already used"):
        GatewayConfig.model_validate(doc)
    other_unit = _bus(name="b", **tcp, devices=[{"slave": 2, "probe": "xy_md02", "sensor": "s2"}])
    GatewayConfig.model_validate(_hub(modbus=[_bus(name="a", **tcp), other_unit]))


def test_probe_and_point_sensors_must_exist() -> None:
    with pytest.raises(ValidationError) as info:
        GatewayConfig.model_validate(
            _hub(
                modbus=[
                    _bus(
                        devices=[
                            {"slave": 1, "probe": "xy_md02", "sensor": "ghost"},
                            {"slave": 2, "points": [{"sensor": "phantom", "address": 0}]},
                        ]
                    )
                ]
            )
        )
    text = str(info.value)
    assert "drivers.modbus[0].devices[0].sensor: unknown sensor 'ghost'" in text
    assert "drivers.modbus[0].devices[1].points[0].sensor: unknown sensor 'phantom'" in text
