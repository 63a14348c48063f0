"""Shared fixtures. Each section belongs to one area; append new sections below."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.apps.localservices import InfluxDB1, Mosquitto, VictoriaMetrics

# ---------------------------------------------------------------------------------------
# Hypothesis: property tests assert behaviour, not speed. On a loaded 2-core CI box data
# generation can be slow, so the timing health check and per-example deadline are off.
# ---------------------------------------------------------------------------------------

settings.register_profile(
    "coldchain",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("coldchain")

# ---------------------------------------------------------------------------------------
# Real services: private Mosquitto, InfluxDB 1.x and VictoriaMetrics (gateway.apps.localservices)
# ---------------------------------------------------------------------------------------


def _require(available: bool, what: str) -> None:
    """Skip locally when a service binary is missing; in CI (CI=true) fail loudly."""
    if available:
        return
    reason = f"{what} is not installed (see .ci/run: apt-get install {what})"
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh, running Mosquitto broker per test (persistence on, anonymous, loopback)."""
    _require(Mosquitto.binary_available(), "mosquitto")
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """One running influxd 1.x for the whole session; use ``influx_db`` for a fresh db."""
    _require(InfluxDB1.binary_available(), "influxdb")
    with InfluxDB1(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


@pytest.fixture
def influx_db(influxdb: InfluxDB1) -> Iterator[tuple[InfluxDB1, str]]:
    """(running influxd, name of a database created for this test and dropped after)."""
    if not influxdb.running:  # a test stopped or killed the shared server
        influxdb.start()
    name = f"t_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(name)
    yield influxdb, name
    if not influxdb.running:
        influxdb.start()
    influxdb.drop_database(name)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh, running VictoriaMetrics per test (starts in well under a second)."""
    _require(VictoriaMetrics.binary_available(), "victoria-metrics")
    with VictoriaMetrics(tmp_path / "victoria") as server:
        yield server
