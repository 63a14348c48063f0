"""The driver registry and the config's driver tables name the same drivers."""

from __future__ import annotations

from pathlib import Path

from drivers import REGISTRY
from gateway.config import DriversConfig

ROOT = Path(__file__).resolve().parents[1]


def test_registry_matches_config_tables() -> None:
    assert set(REGISTRY) == set(DriversConfig.model_fields)


def test_every_driver_has_a_folder_with_readme_and_config() -> None:
    for name in REGISTRY:
        folder = ROOT / "drivers" / name
        assert (folder / "README.md").is_file(), f"drivers/{name}/README.md"
        assert (folder / "config.py").is_file()
        assert f"[[drivers.{name}]]" in (folder / "README.md").read_text()
