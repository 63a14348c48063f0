"""Normalisation: sensor mapping, calibration, quality flags."""

from __future__ import annotations

from gateway.config import parse_config
from gateway.core.model import Quality, RawSample
from gateway.ingest.normalize import Normalizer

CONFIG = parse_config(
    {
        "hub": {"id": "h"},
        "zones": [{"id": "cr1", "kind": "cold_storage"}],
        "sensors": [
            {"id": "ds", "zone": "cr1", "model": "ds18b20", "offset_c": -0.5},
            {"id": "pt", "zone": "cr1", "model": "pt100", "min_valid_c": -50, "max_valid_c": 50},
            {"id": "probe", "zone": "cr1"},
        ],
        "clock_skew_bound_s": 60,
        "drivers": {
            "mqtt": [
                {
                    "name": "nodes",
                    "subscriptions": [{"topic": "sensors/+/telemetry", "sensor_topic_segment": 1}],
                    "sensors": ["ds", "pt"],
                }
            ],
            "serial": [{"name": "board-a", "port": "/dev/ttyUSB0", "probes": {"1": "probe"}}],
        },
    }
)
NOW = 1_800_000_000_000_000_000


def _sample(
    sensor: str, temp: float, ts: int | None = NOW, source: str = "mqtt:nodes"
) -> RawSample:
    return RawSample(sensor=sensor, temp_c=temp, ts_ns=ts, received_ns=NOW, source=source)


def test_calibration_offset_and_zone_are_applied() -> None:
    (r,) = Normalizer(CONFIG).normalize([_sample("ds", 4.0)]).readings
    assert (r.temp_c, r.zone, r.quality) == (3.5, "cr1", 0)


def test_ds18b20_sentinels_are_flagged_not_dropped() -> None:
    out = Normalizer(CONFIG).normalize([_sample("ds", 85.0), _sample("ds", -127.0)])
    assert [Quality(r.quality) & Quality.SENTINEL for r in out.readings] == [Quality.SENTINEL] * 2
    assert all(not Quality(r.quality).usable for r in out.readings)


def test_impossible_values_are_flagged() -> None:
    (r,) = Normalizer(CONFIG).normalize([_sample("pt", 70.0)]).readings
    assert Quality(r.quality) == Quality.IMPOSSIBLE


def test_missing_device_time_uses_receive_time_and_flags_it() -> None:
    (r,) = Normalizer(CONFIG).normalize([_sample("pt", 4.0, ts=None)]).readings
    assert r.ts_ns == NOW
    assert Quality(r.quality) == Quality.NO_DEVICE_TIME


def test_a_backlog_without_device_time_keeps_one_point_per_reading() -> None:
    """Readings received in one batch share a receive time; each must stay its own point."""
    normalizer = Normalizer(CONFIG)
    first = normalizer.normalize([_sample("ds", 4.0, ts=None) for _ in range(3)]).readings
    assert [r.ts_ns for r in first] == [NOW, NOW + 1, NOW + 2]
    # The next batch, received at the same (coarse) time, continues after them...
    (later,) = normalizer.normalize([_sample("ds", 4.5, ts=None)]).readings
    assert later.ts_ns == NOW + 3
    # ...and other sensors and device-timed readings are untouched.
    pt, timed = normalizer.normalize([_sample("pt", 4.0, ts=None), _sample("ds", 4.0)]).readings
    assert (pt.ts_ns, timed.ts_ns) == (NOW, NOW)


def test_clock_skew_is_flagged_and_timestamp_kept() -> None:
    skewed = NOW - 300 * 1_000_000_000
    (r,) = Normalizer(CONFIG).normalize([_sample("pt", 4.0, ts=skewed)]).readings
    assert r.ts_ns == skewed
    assert Quality(r.quality) == Quality.CLOCK_SKEW


def test_unknown_sensor_is_dead_lettered() -> None:
    out = Normalizer(CONFIG).normalize([_sample("ghost", 4.0)])
    assert out.readings == []
    (reject,) = out.rejects
    assert (reject.reason, reject.dead_letter) == ("unknown_sensor", True)


def test_a_serial_probe_reported_over_mqtt_is_an_identity_mismatch() -> None:
    """The review's attack: a serial probe's id arriving over MQTT is refused, not mapped."""
    out = Normalizer(CONFIG).normalize([_sample("probe", 4.0, source="mqtt:nodes")])
    assert out.readings == []
    (reject,) = out.rejects
    assert (reject.reason, reject.source, reject.dead_letter) == (
        "identity_mismatch",
        "mqtt:nodes",
        True,
    )
    assert "serial:board-a" in reject.detail


def test_a_sensor_is_accepted_from_the_block_that_lists_it() -> None:
    out = Normalizer(CONFIG).normalize([_sample("probe", 4.0, source="serial:board-a")])
    assert [r.sensor for r in out.readings] == ["probe"]
    out = Normalizer(CONFIG).normalize([_sample("ds", 4.0, source="serial:board-a")])
    assert [r.reason for r in out.rejects] == ["identity_mismatch"]


def test_a_source_that_is_no_configured_driver_is_refused() -> None:
    out = Normalizer(CONFIG).normalize([_sample("ds", 4.0, source="mqtt:someone-else")])
    assert [r.reason for r in out.rejects] == ["identity_mismatch"]
    assert "no driver lists" not in out.rejects[0].detail  # ds is listed, by mqtt:nodes
