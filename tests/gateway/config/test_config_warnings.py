"""check-config warnings: valid but probably wrong configs are printed, exit code 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.config.warnings import config_warnings
from gateway.core.model import Reject
from gateway.journal.store import Journal


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hub": {"id": "hub-1"},
        "journal": {"path": str(tmp_path / "journal.db")},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "cr1"}],
    }
    doc.update(extra)
    return doc


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[hub]\nid = "hub-1"\n[journal]\npath = "{tmp_path / "journal.db"}"\n' + text)
    return path


def test_fahrenheit_looking_limits_are_a_warning(tmp_path: Path) -> None:
    doc = _config(
        tmp_path,
        zones=[{"id": "cr1", "kind": "cold_storage", "profile": "vaccines"}],
        profiles={"vaccines": {"name": "vaccines", "min_c": 35.6, "max_c": 46.4}},
    )
    ((path, message),) = [w for w in config_warnings(parse_config(doc)) if "Fahrenheit" in w[1]]
    assert path == "profiles.vaccines"
    assert "min_c 35.6 (as °F: 2.0 °C), max_c 46.4 (as °F: 8.0 °C)" in message


def test_celsius_limits_are_quiet(tmp_path: Path) -> None:
    doc = _config(
        tmp_path,
        zones=[{"id": "cr1", "kind": "cold_storage", "profile": "p"}],
        profiles={"p": {"name": "p", "min_c": 2, "max_c": 8}},
        drivers={
            "mqtt": [
                {
                    "name": "m",
                    "sensors": ["s1"],
                    "subscriptions": [
                        {"topic": "a/+", "sensor_path": "id", "device_topic_segment": 1}
                    ],
                }
            ]
        },
    )
    assert config_warnings(parse_config(doc)) == []


def test_overlapping_subscriptions_are_a_warning(tmp_path: Path) -> None:
    doc = _config(
        tmp_path,
        drivers={
            "mqtt": [
                {
                    "name": "m",
                    "sensors": ["s1"],
                    "subscriptions": [
                        {"topic": "+/sensor/+/state", "format": "esphome"},
                        {"topic": "homeassistant/sensor/+/state", "format": "homeassistant"},
                        {"topic": "tele/+/SENSOR", "format": "tasmota"},
                    ],
                }
            ]
        },
    )
    ((path, message),) = config_warnings(parse_config(doc))
    assert path == "drivers.mqtt[0].subscriptions[1].topic"
    assert "overlaps subscriptions[0] '+/sensor/+/state'" in message
    assert "decoded as 'esphome' only" in message


def test_a_sensor_no_driver_can_feed_is_a_warning(tmp_path: Path) -> None:
    doc = _config(
        tmp_path,
        sensors=[{"id": "s1", "zone": "cr1"}, {"id": "s2", "zone": "cr1"}],
        drivers={"serial": [{"name": "b", "port": "/dev/x", "probes": {"1": "s1"}}]},
    )
    assert config_warnings(parse_config(doc)) == [
        ("sensors[1]", "sensor 's2' is named by no driver: nothing can feed it")
    ]


def test_sensors_fed_but_not_configured_come_from_the_journal(tmp_path: Path) -> None:
    doc = _config(
        tmp_path,
        drivers={
            "mqtt": [
                {
                    "name": "m",
                    "sensors": ["s1"],
                    "subscriptions": [
                        {"topic": "a/+", "sensor_path": "id", "device_topic_segment": 1}
                    ],
                }
            ]
        },
    )
    journal = Journal(tmp_path / "journal.db")
    unknown = Reject(
        reason="unknown_sensor",
        source="mqtt:m",
        raw=b"RawSample(...)",
        detail="sensor 'dock-7' is not in [[sensors]]",
        dead_letter=True,
    )
    journal.commit_batch([], [unknown, unknown], 0)
    journal.close()
    assert config_warnings(parse_config(doc)) == [
        (
            "sensors",
            "mqtt:m fed sensor 'dock-7' 2 time(s) (journal dead letters), but it is not in"
            " [[sensors]]: add it, or map its device id with sensor_ids",
        )
    ]


def test_check_config_prints_warnings_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _toml(
        tmp_path,
        """
[[zones]]
id = "cr1"
kind = "cold_storage"
profile = "chilled_f"
[profiles.chilled_f]
name = "chilled_f"
min_c = 36
max_c = 46
[[sensors]]
id = "s1"
zone = "cr1"
""",
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: profiles.chilled_f: limits look like Fahrenheit" in out
    assert "warning: sensors[0]: sensor 's1' is named by no driver" in out
    assert "2 warning(s); the config is valid" in out
