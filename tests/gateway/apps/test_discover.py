"""``coldchain discover`` finds simulated Modbus slaves and sysfs probes, and its snippets
pass ``check-config``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware_sim.modbus_bus import ModbusBusSim, PtyPair, SlaveSim
from firmware_sim.w1_tree import W1Tree
from gateway.apps.discover.wired import parse_ids
from gateway.cli import main

pytestmark = pytest.mark.integration

BASE = '[hub]\nid = "hub-1"\n\n[[zones]]\nid = "cold-room"\nkind = "cold_storage"\n\n'


def _dev_root(tmp_path: Path, target: str) -> Path:
    dev = tmp_path / "dev"
    (dev / "serial" / "by-id").mkdir(parents=True)
    (dev / "serial" / "by-id" / "usb-FTDI_FT232R_USB_UART_A10K3Z2B-if00-port0").symlink_to(target)
    (dev / "ttyAMA0").touch()
    return dev


async def test_discover_finds_the_three_slaves_and_the_probes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = W1Tree(tmp_path / "sys")
    tree.add("28-0316a2794cff", -18.5)
    tree.add("28-0316a2795aaa", 3.25)
    tree.add("28-0316a2796bbb")
    tree.set_crc_error("28-0316a2796bbb")
    with PtyPair(tmp_path) as pty:
        slaves = [
            SlaveSim.of_probe(1, "xy_md02", temp=3.5, rh=61.0),
            SlaveSim.of_probe(2, "sht20_r0", temp=-21.4, rh=50.0),
            SlaveSim.of_probe(3, "sht30_din_float", temp=-18.75, rh=45.5),
        ]
        bus = ModbusBusSim(slaves)
        await bus.start_serial(pty.a)
        try:
            dev = _dev_root(tmp_path, pty.b)
            argv = ["discover", "--dev-root", str(dev), "--w1-root", tree.sysfs_root,
                    "--modbus", pty.b, "--slaves", "1-6", "--bauds", "9600,19200",
                    "--timeout", "0.5"]  # fmt: skip
            code = await asyncio.to_thread(main, argv)
        finally:
            await bus.stop()
    assert code == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "usb-FTDI_FT232R_USB_UART_A10K3Z2B-if00-port0  ->  " in out
    assert "ttyAMA0  (no by-id name" in out
    assert "28-0316a2794cff  DS18B20   -18.500 °C" in out
    assert "28-0316a2796bbb  DS18B20   crc:" in out
    assert "slave   1 at 9600 baud  XY-MD02 SHT20 transmitter: temp 3.5, rh 61" in out
    assert "slave   2 at 9600 baud  SHT20 transmitter" in out and "temp -21.4" in out
    assert "slave   3 at 9600 baud  SHT30 DIN-rail" in out and "temp -18.75" in out
    assert "slave   4" not in out
    assert "at most 6 s" in err and "9600 baud: id 6/6, 3 found" in err
    assert "19200 baud: id" not in err, "a rate that answered ends the scan"

    config = tmp_path / "gateway.toml"
    config.write_text(BASE + out)
    assert main(["check-config", str(config)]) == 0
    summary = capsys.readouterr().out
    assert "modbus x1" in summary and "onewire x1" in summary


def test_without_hardware_discover_says_so_and_does_not_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["discover", "--dev-root", str(tmp_path), "--w1-root", str(tmp_path / "w1")])
    assert code == 0
    out = capsys.readouterr().out
    assert "none found" in out
    assert "no w1 bus" in out and "dtoverlay=w1-gpio" in out
    assert "Modbus: not scanned" in out


def test_slave_id_ranges() -> None:
    assert parse_ids("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(ValueError, match=r"1\.\.247"):
        parse_ids("0-5")
