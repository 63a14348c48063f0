"""The config blocks the wired drivers' READMEs show are valid config, as printed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from drivers.registry import REGISTRY
from gateway.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["modbus", "onewire", "serial"])
def test_the_readme_config_block_validates(name: str) -> None:
    text = (ROOT / "drivers" / name / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[[drivers." in b)
    doc = tomllib.loads(block)
    blocks = [REGISTRY[name].config.model_validate(b) for b in doc["drivers"][name]]
    sensors = sorted({s for b in blocks for _, s in b.sensor_refs()})
    parse_config(
        {
            "hub": {"id": "h"},
            "zones": [{"id": "z", "kind": "cold_storage"}],
            "sensors": [{"id": s, "zone": "z"} for s in sensors],
            **doc,
        }
    )
