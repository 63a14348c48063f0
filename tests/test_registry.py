"""The driver registry is the one place that names drivers, and each entry is complete."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.base import DriverConfig
from drivers.registry import REGISTRY
from gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[1]


def test_config_has_one_driver_table_per_registry_entry() -> None:
    tables = GatewayConfig.model_fields["drivers"].annotation
    assert tables is not None
    assert set(tables.model_fields) == set(REGISTRY)


def test_every_driver_folder_is_registered_and_every_entry_has_a_folder() -> None:
    folders = {
        p.name for p in (ROOT / "drivers").iterdir() if p.is_dir() and (p / "__init__.py").is_file()
    }
    assert folders == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_driver_has_readme_with_its_config_block_and_a_config_model(name: str) -> None:
    folder = ROOT / "drivers" / name
    assert (folder / "README.md").is_file(), f"drivers/{name}/README.md"
    assert (folder / "config.py").is_file()
    assert f"[[drivers.{name}]]" in (folder / "README.md").read_text()
    assert issubclass(REGISTRY[name].config, DriverConfig)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_driver_package_imports_its_implementation_only_lazily(name: str) -> None:
    # drivers/<name>/__init__.py may import its config at top level, never its driver.
    tree = ast.parse((ROOT / "drivers" / name / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert all(not (n.module or "").endswith(".driver") for n in top)


def _hub(**drivers: object) -> dict[str, object]:
    return {
        "hub": {"id": "h1"},
        "zones": [{"id": "z1", "kind": "cold_storage"}],
        "sensors": [{"id": "s1", "zone": "z1"}, {"id": "s2", "zone": "z1"}],
        "drivers": drivers,
    }


def test_names_are_unique_across_all_drivers() -> None:
    with pytest.raises(ValidationError, match=r"drivers.mqtt\[0\].name: 'a' is also"):
        GatewayConfig.model_validate(
            _hub(
                serial=[{"name": "a", "port": "/dev/ttyUSB0", "probes": {"0": "s1"}}],
                mqtt=[
                    {"name": "a", "subscriptions": [{"topic": "t/+", "sensor_topic_segment": 1}]}
                ],
            )
        )


def test_every_sensor_reference_is_checked_generically() -> None:
    with pytest.raises(ValidationError) as info:
        GatewayConfig.model_validate(
            _hub(
                serial=[{"name": "b1", "port": "/dev/ttyUSB0", "probes": {"0": "ghost"}}],
                mqtt=[
                    {
                        "name": "m1",
                        "subscriptions": [{"topic": "t/+", "sensor_topic_segment": 1}],
                        "sensor_ids": {"dev": "phantom"},
                    }
                ],
            )
        )
    text = str(info.value)
    assert "drivers.serial[0].probes.0: unknown sensor 'ghost'" in text
    assert "drivers.mqtt[0].sensor_ids.dev: unknown sensor 'phantom'" in text


def test_an_exclusive_resource_is_refused_when_two_blocks_claim_it() -> None:
    with pytest.raises(
        ValidationError, match=r"tty:/dev/ttyUSB0 is already used by drivers.serial\[0\]"
    ):
        GatewayConfig.model_validate(
            _hub(
                serial=[
                    {"name": "b1", "port": "/dev/ttyUSB0", "probes": {"0": "s1"}},
                    {"name": "b2", "port": "/dev/ttyUSB0", "probes": {"0": "s2"}},
                ]
            )
        )
    with pytest.raises(ValidationError, match=r"mqtt-session:127\.0\.0\.1:1883:same"):
        GatewayConfig.model_validate(
            _hub(
                mqtt=[
                    {
                        "name": n,
                        "client_id": "same",
                        "subscriptions": [{"topic": f"{n}/+", "sensor_topic_segment": 1}],
                    }
                    for n in ("m1", "m2")
                ]
            )
        )
