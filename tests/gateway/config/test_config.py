"""Config loading: unknown keys, field paths in errors, secrets, the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.core.errors import ConfigError
from gateway.core.secrets import SecretRef

ROOT = Path(__file__).resolve().parents[3]

MINIMAL = {
    "hub": {"id": "hub-1"},
    "zones": [{"id": "cr1", "kind": "cold_storage"}],
    "sensors": [{"id": "s1", "zone": "cr1"}],
}


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "gateway.toml")
    assert config.hub.id == "hub-lis-01"
    assert {s.zone for s in config.sensors} <= {z.id for z in config.zones}
    assert config.drivers.serial[0].probes == {"1": "cr1-a", "2": "cr1-b"}


def test_unknown_key_is_an_error_with_its_path() -> None:
    data = {**MINIMAL, "sensors": [{"id": "s1", "zone": "cr1", "intervall_s": 5}]}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert ("sensors[0].intervall_s", err.value.problems[0][1]) in err.value.problems
    assert "unknown key" in err.value.problems[0][1]


def test_cross_references_are_checked() -> None:
    data = {
        **MINIMAL,
        "sensors": [{"id": "s1", "zone": "nowhere"}, {"id": "s1", "zone": "cr1"}],
        "drivers": {"serial": [{"name": "b", "port": "/dev/x", "probes": {"1": "ghost"}}]},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    paths = [p for p, _ in err.value.problems]
    assert "sensors[0].zone" in paths
    assert "drivers.serial[0].probes.1" in paths
    assert any("duplicate id 's1'" in m for _, m in err.value.problems)


def test_broken_example_lists_each_error_with_its_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["check-config", str(ROOT / "examples" / "broken.toml")])
    err = capsys.readouterr().err
    assert code == 2
    for path in (
        "hub.id",
        "hub.timezone",
        "journal.commit_interval_ms",
        "zones[0].kind",
        "sensors[0].intervall_s",
        "drivers.serial[0].port",
        "drivers.serial[0].baudrate",
        "sinks.influx.api",
    ):
        assert f"  {path}: " in err, f"{path} missing from:\n{err}"


def test_valid_config_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "examples" / "gateway.toml")]) == 0
    out = capsys.readouterr().out
    assert "hub-lis-01" in out
    assert "OK" in out


def test_not_toml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\nid = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert err.value.problems[0][0] == "(syntax)"


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SECRET", "s3cret")
    assert SecretRef(env="TEST_SECRET").resolve() == "s3cret"
    (tmp_path / "cred").write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef(file="${CREDENTIALS_DIRECTORY}/cred").resolve() == "from-file"
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        SecretRef(env="NOT_SET_ANYWHERE").resolve()


def test_secret_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef(env="A", file="/b")


def test_two_serial_drivers_on_one_port_are_refused() -> None:
    board = {"port": "/dev/ttyUSB0", "board": "A1", "probes": {"1": "p1"}}
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "hub": {"id": "h"},
                "zones": [{"id": "z", "kind": "dock"}],
                "sensors": [{"id": "p1", "zone": "z"}],
                "drivers": {"serial": [{"name": "a", **board}, {"name": "b", **board}]},
            }
        )
    assert any(
        "tty:/dev/ttyUSB0 is already used by drivers.serial[0]" in m for _, m in err.value.problems
    )
