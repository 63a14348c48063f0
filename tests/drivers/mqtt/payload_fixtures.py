"""The documented payloads of tests/drivers/mqtt/fixtures/ (sources in its README.md)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    """One fixture payload, byte for byte (``tasmota/ds18x20_three_probes.json``)."""
    return (FIXTURES / name).read_bytes()
