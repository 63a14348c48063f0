"""Parsing the kernel's w1 files, checked against published captures and the kernel source."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.onewire.w1 import (
    W1Error,
    crc8_maxim,
    ds18b20_scratchpad,
    kernel_millidegrees,
    max31850_temp,
    parse_temperature,
    parse_w1_slave,
    render_w1_slave,
)
from firmware_sim.w1_tree import W1Tree

# A DS18B20 read on a Raspberry Pi, as captured in
# https://github.com/shuckc/pialarm/blob/master/temperature/DS18B20.py ("Typical reading")
PI_CAPTURE = "73 01 4b 46 7f ff 0d 10 41 : crc=41 YES\n73 01 4b 46 7f ff 0d 10 41 t=23187\n"


def test_a_captured_read_parses_and_its_crc_is_the_maxim_crc8() -> None:
    reading = parse_w1_slave(PI_CAPTURE, "28")
    assert reading.temp_c == 23.187
    assert crc8_maxim(bytes.fromhex("73014b467fff0d10")) == 0x41
    # render_w1_slave writes what w1_therm.c's w1_slave_show writes, byte for byte
    assert render_w1_slave(reading.scratchpad, 23187) == PI_CAPTURE


def test_crc_no_is_refused() -> None:
    bad = PI_CAPTURE.replace("crc=41 YES", "crc=41 NO")
    with pytest.raises(W1Error) as info:
        parse_w1_slave(bad, "28")
    assert info.value.reason == "crc"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "read_error"),  # w1_slave_show returns 0 bytes when the conversion failed
        ("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n",
         "bad_value"),
        ("garbage\n", "bad_format"),
    ],
)  # fmt: skip
def test_unusable_reads_are_refused_with_their_reason(text: str, reason: str) -> None:
    with pytest.raises(W1Error) as info:
        parse_w1_slave(text, "28")
    assert info.value.reason == reason


def test_power_on_85_and_minus_127_pass_through_for_the_normaliser() -> None:
    for temp, kernel in ((85.0, 85.0), (-127.0, -127.0), (-55.0, -55.0), (-0.0625, -0.062)):
        pad = ds18b20_scratchpad(temp)
        t = kernel_millidegrees(pad)  # C truncation: -1/16 °C is t=-62
        assert parse_w1_slave(render_w1_slave(pad, t), "28").temp_c == kernel
    # the DS18B20 datasheet's power-on scratchpad: 0x0550 = +85 °C
    assert ds18b20_scratchpad(85.0)[:2] == bytes([0x50, 0x05])


def test_max31850_value_and_fault_bits() -> None:
    # MAX31850 datasheet: 14-bit two's complement in bits 15..2, 0.25 °C; bit 0 = fault
    assert max31850_temp(bytes([0x90, 0x01, 0xF0] + [0] * 6)) == 25.0
    assert max31850_temp(bytes([0x9C, 0xFF, 0xF0] + [0] * 6)) == -6.25
    with pytest.raises(W1Error, match="open circuit"):
        max31850_temp(bytes([0x91, 0x01, 0xF1] + [0] * 6))


def test_temperature_file() -> None:
    assert parse_temperature("-18250\n") == -18.25
    with pytest.raises(W1Error):
        parse_temperature("\n")


def test_the_tree_is_laid_out_like_the_kernels(tmp_path: Path) -> None:
    tree = W1Tree(tmp_path)
    tree.add("28-0316a2794cff", -18.5)
    link = Path(tree.sysfs_root) / "28-0316a2794cff"
    assert link.is_symlink()
    assert str(link.readlink()) == "../../../devices/w1_bus_master1/28-0316a2794cff"
    assert (tree.master / "w1_master_slaves").read_text() == "28-0316a2794cff\n"
    assert parse_w1_slave((link / "w1_slave").read_text(), "28").temp_c == -18.5
    assert parse_temperature((link / "temperature").read_text()) == -18.5


def test_w1thermsensor_reads_the_same_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The well-kept library agrees with our tree and parser: the tree is kernel-shaped.
    monkeypatch.setenv("W1THERMSENSOR_NO_KERNEL_MODULE", "1")
    from w1thermsensor import Sensor, W1ThermSensor

    tree = W1Tree(tmp_path)
    tree.add("28-0316a2794cff", -18.5)
    monkeypatch.setattr(W1ThermSensor, "BASE_DIRECTORY", Path(tree.sysfs_root))
    sensor = W1ThermSensor(Sensor.DS18B20, "0316a2794cff")
    assert sensor.get_temperature() == -18.5
