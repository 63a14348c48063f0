"""Device identity in the claim report: config fields, and an overdue calibration as a
review reason (issue 17, point 5)."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.config import parse_config
from gateway.core.errors import ConfigError
from gateway.trace.result import SensorUsed
from gateway.trace.verdict import _overdue_calibrations

T_2026_06_01 = int(dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp() * 1e9)


def _config(**sensor: object) -> object:
    return parse_config(
        {
            "hub": {"id": "hub-a"},
            "zones": [{"id": "cold-1", "kind": "cold_storage"}],
            "sensors": [{"id": "s1", "zone": "cold-1", **sensor}],
        }
    )


def test_identity_fields_are_config_fields() -> None:
    config = _config(
        serial="28-0316a2792aff", accuracy_c=0.5, calibration_id="CAL-2025-018",
        calibration_due="2026-05-31", model="ds18b20",
    )  # fmt: skip
    (sensor,) = config.sensors  # type: ignore[attr-defined]
    assert sensor.calibration_due == dt.date(2026, 5, 31)
    assert sensor.accuracy_c == 0.5
    with pytest.raises(ConfigError):
        _config(calibration_due="31/05/2026")
    with pytest.raises(ConfigError):
        _config(accuracy_c=0)


def _used(due: str | None) -> SensorUsed:
    return SensorUsed("s1", "cold-1", "CAL-2025-018", 10.0, True, 5, 0, calibration_due=due)


def test_a_calibration_due_before_the_trace_end_is_a_review_reason() -> None:
    (reason,) = _overdue_calibrations([_used("2026-05-31")], T_2026_06_01)
    assert (reason.level, reason.code) == ("review", "calibration_overdue")
    assert "CAL-2025-018" in reason.text and "2026-05-31" in reason.text
    assert _overdue_calibrations([_used("2026-06-01")], T_2026_06_01) == []
    assert _overdue_calibrations([_used(None)], T_2026_06_01) == []


def test_quality_flags_are_named_in_the_csv() -> None:
    from gateway.core.model import Quality
    from gateway.trace.outputs import quality_names

    assert quality_names(0) == ""
    assert quality_names(int(Quality.SENTINEL | Quality.NO_DEVICE_TIME)) == (
        "SENTINEL|NO_DEVICE_TIME"
    )
