"""The systemd unit passes systemd-analyze verify and carries the hardening we promise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "coldchain.service"


def _directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze missing in CI (apt-get install systemd)")
        pytest.skip("systemd-analyze not installed")
    coldchain = Path(sys.executable).parent / "coldchain"
    unit = tmp_path / "coldchain.service"
    unit.write_text(UNIT.read_text().replace("/opt/coldchain/venv/bin/coldchain", str(coldchain)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for bad in ("Unknown key", "Unknown section", "Invalid", "Failed to parse"):
        assert bad not in output, output


def test_unit_has_notify_watchdog_state_credentials_and_hardening() -> None:
    d = _directives()
    expected = {
        "Service.Type": "notify",
        "Service.Restart": "on-failure",
        "Service.DynamicUser": "yes",
        "Service.StateDirectory": "coldchain",
        "Service.ConfigurationDirectory": "coldchain",
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.SupplementaryGroups": "dialout",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert "WatchdogSec" in "".join(k for k in d if k.startswith("Service."))
    assert d["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert any(v.startswith("mqtt-password:") for v in d["Service.LoadCredential"])
    assert any(v.startswith("char-ttyUSB") for v in d["Service.DeviceAllow"])
    assert d["Service.MemoryMax"] == ["200M"]
    assert "-HUP" in d["Service.ExecReload"][0]
    # The example config's secrets point where LoadCredential puts them.
    example = (ROOT / "examples" / "gateway.toml").read_text()
    assert "${CREDENTIALS_DIRECTORY}/" in example
