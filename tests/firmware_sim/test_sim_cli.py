"""``coldchain sim``: argument parsing and short runs."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from firmware_sim import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coldchain")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return p


def test_serial_arguments() -> None:
    args = parser().parse_args(
        ["sim", "serial", "--probes", "2", "--interval", "0.5", "--faults", "checksum=0.05"]
    )
    assert (args.command, args.sim_kind, args.probes, args.interval) == ("sim", "serial", 2, 0.5)


def test_serial_run_prints_the_pty_and_stops_after_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parser().parse_args(
        ["sim", "serial", "--probes", "2", "--speed", "1000", "--rounds", "5", "--zone", "freezer"]
    )
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "/dev/pts/" in out and "[[drivers.serial]]" in out
    assert "sent 10 valid" in out


def test_bad_faults_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["sim", "serial", "--faults", "nope=1", "--rounds", "1"])
    assert cli.run(args) == 1
    assert "bad fault" in capsys.readouterr().err


def test_mqtt_run(mosquitto: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(
        [
            "sim", "mqtt", "--host", mosquitto.host, "--port", str(mosquitto.port),
            "--devices", "2", "--speed", "1000", "--rounds", "3",
        ]
    )  # fmt: skip
    assert cli.run(args) == 0
    assert "sent 6 readings" in capsys.readouterr().out
