"""Sensor health: each rule raises once, clears, and never raises twice in between."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config import SensorConfig
from gateway.core.clock import NS_PER_S
from gateway.core.model import Quality, Reading
from gateway.sop.sensor_health import HealthEvent, SensorHealth, checksum_rejects
from gateway.sop.settings import HealthSettings

T0 = 1_767_225_600 * NS_PER_S
S = NS_PER_S


def sensor(
    sid: str, zone: str = "cold1", model: str = "generic", interval_s: float = 10.0
) -> SensorConfig:
    return SensorConfig(id=sid, zone=zone, model=model, interval_s=interval_s)  # type: ignore[arg-type]


def rd(
    sid: str,
    t_s: float,
    temp: float = 4.0,
    *,
    battery: float | None = None,
    battery_pct: float | None = None,
    quality: int = 0,
    rx_s: float | None = None,
) -> Reading:
    ts = T0 + int(t_s * S)
    rx = T0 + int((t_s if rx_s is None else rx_s) * S)
    return Reading(
        sensor=sid,
        ts_ns=ts,
        received_ns=rx,
        temp_c=temp,
        source="serial0",
        zone="",
        battery_v=battery,
        battery_pct=battery_pct,
        quality=quality,
    )


def kinds(events: list[HealthEvent], rule: str) -> list[tuple[str, str]]:
    return [(e.kind, e.subject) for e in events if e.rule == rule]


def noisy(i: int) -> float:
    """A value that varies, so the frozen rule stays quiet."""
    return 4.0 + (i % 3) * 0.1


# -- settings -------------------------------------------------------------------------------


def test_settings_defaults_and_strictness() -> None:
    s = HealthSettings()
    assert (s.stale_after_intervals, s.spike_c_per_min, s.frozen_readings) == (3.0, 5.0, 30)
    assert (s.low_battery_v, s.checksum_error_rate, s.checksum_window) == (3.3, 0.05, 200)
    assert s.checksum_min_lines == 50
    with pytest.raises(ValidationError):
        HealthSettings(stale_afer_intervals=2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        s.spike_c_per_min = 1.0


# -- stale ----------------------------------------------------------------------------------


def test_stale_fires_on_the_timer_at_exactly_the_deadline() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    h.observe([rd("p1", 0, rx_s=1)])
    deadline = T0 + 1 * S + 30 * S  # last receive + 3 x 10 s
    assert h.next_deadline_ns() == deadline
    assert h.check(deadline - 1, set()) == []
    events = h.check(deadline, set())
    assert kinds(events, "sensor_stale") == [("raised", "p1")]
    assert events[0].at_ns == deadline
    assert events[0].severity == "warning"
    assert events[0].limit == 30.0
    # Raised once: later checks stay quiet.
    assert h.check(deadline + 100 * S, set()) == []
    assert h.next_deadline_ns() is None


def test_stale_uses_receive_time_not_device_time() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    # Device clock far behind; the gateway heard it at t=100 s.
    h.observe([rd("p1", -3600, rx_s=100)])
    assert h.check(T0 + 129 * S, set()) == []
    assert kinds(h.check(T0 + 130 * S, set()), "sensor_stale") == [("raised", "p1")]


def test_never_seen_sensor_goes_stale_from_start() -> None:
    h = SensorHealth([sensor("p1"), sensor("p2", interval_s=60)], started_ns=T0)
    assert h.check(T0 + 29 * S, set()) == []
    assert kinds(h.check(T0 + 30 * S, set()), "sensor_stale") == [("raised", "p1")]
    ev = h.check(T0 + 180 * S, set())
    assert kinds(ev, "sensor_stale") == [("raised", "p2")]
    assert ev[0].details["last_received_ns"] is None


def test_start_defaults_to_first_check() -> None:
    h = SensorHealth([sensor("p1")])
    assert h.next_deadline_ns() is None
    assert h.check(T0, set()) == []
    assert h.next_deadline_ns() == T0 + 30 * S


def test_a_reading_clears_stale() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    h.check(T0 + 30 * S, set())
    events = h.observe([rd("p1", 40)])
    assert kinds(events, "sensor_stale") == [("cleared", "p1")]
    assert h.observe([rd("p1", 50)]) == []
    # And it can go stale again, once.
    assert kinds(h.check(T0 + 80 * S, set()), "sensor_stale") == [("raised", "p1")]


# -- data gap -------------------------------------------------------------------------------


def test_data_gap_only_when_the_zone_holds_shipments() -> None:
    h = SensorHealth([sensor("a1", "dock"), sensor("b1", "cold1")], started_ns=T0)
    events = h.check(T0 + 30 * S, {"cold1"})
    assert kinds(events, "data_gap") == [("raised", "cold1")]
    gap = next(e for e in events if e.rule == "data_gap")
    assert gap.severity == "critical"
    assert "unknown" in gap.message
    assert h.check(T0 + 31 * S, {"cold1"}) == []


def test_data_gap_needs_all_sensors_stale_by_default() -> None:
    h = SensorHealth([sensor("a"), sensor("b", interval_s=100)], started_ns=T0)
    events = h.check(T0 + 30 * S, {"cold1"})
    assert kinds(events, "sensor_stale") == [("raised", "a")]
    assert kinds(events, "data_gap") == []
    assert kinds(h.check(T0 + 300 * S, {"cold1"}), "data_gap") == [("raised", "cold1")]


def test_data_gap_clears_when_any_sensor_reports() -> None:
    h = SensorHealth([sensor("a"), sensor("b")], started_ns=T0)
    h.check(T0 + 30 * S, {"cold1"})
    events = h.observe([rd("b", 31)])
    assert kinds(events, "data_gap") == [("cleared", "cold1")]
    assert kinds(events, "sensor_stale") == [("cleared", "b")]
    assert kinds(h.check(T0 + 32 * S, {"cold1"}), "data_gap") == []


def test_data_gap_clears_when_the_zone_empties() -> None:
    h = SensorHealth([sensor("a")], started_ns=T0)
    assert kinds(h.check(T0 + 30 * S, {"cold1"}), "data_gap") == [("raised", "cold1")]
    assert kinds(h.check(T0 + 40 * S, set()), "data_gap") == [("cleared", "cold1")]
    assert kinds(h.check(T0 + 50 * S, {"cold1"}), "data_gap") == [("raised", "cold1")]


def test_any_stale_zone_mode() -> None:
    cfg = HealthSettings(data_gap_zones={"truck": "any_stale"})
    h = SensorHealth(
        [sensor("front", "truck"), sensor("rear", "truck", interval_s=100)],
        cfg,
        started_ns=T0,
    )
    assert kinds(h.check(T0 + 30 * S, {"truck"}), "data_gap") == [("raised", "truck")]
    # Rear still fine, front reports again: the gap ends.
    assert kinds(h.observe([rd("front", 31)]), "data_gap") == [("cleared", "truck")]


def test_a_faulted_sensor_counts_as_blind_for_the_data_gap() -> None:
    h = SensorHealth([sensor("a")], started_ns=T0)
    h.observe([rd("a", 0, -127.0, quality=Quality.SENTINEL)])
    assert kinds(h.check(T0 + 1 * S, {"cold1"}), "data_gap") == [("raised", "cold1")]
    h.observe([rd("a", 10), rd("a", 20)])
    events = h.observe([rd("a", 30)])
    assert [(e.kind, e.rule) for e in events] == [
        ("cleared", "sensor_fault"),
        ("cleared", "data_gap"),
    ]


# -- fault ----------------------------------------------------------------------------------


def test_sentinel_fault_raises_once_and_clears_after_three_good() -> None:
    h = SensorHealth([sensor("p1", model="ds18b20")], started_ns=T0)
    h.observe([rd("p1", 0)])
    events = h.observe([rd("p1", 10, 85.0, quality=Quality.SENTINEL)])
    assert kinds(events, "sensor_fault") == [("raised", "p1")]
    assert events[0].value == 85.0
    assert "sentinel" in events[0].message
    assert h.observe([rd("p1", 20, -127.0, quality=Quality.SENTINEL)]) == []
    assert h.observe([rd("p1", 30), rd("p1", 40)]) == []
    # A bad reading in between restarts the count.
    h.observe([rd("p1", 45, 85.0, quality=Quality.SENTINEL)])
    assert h.observe([rd("p1", 50), rd("p1", 60)]) == []
    assert kinds(h.observe([rd("p1", 70)]), "sensor_fault") == [("cleared", "p1")]


def test_impossible_value_is_a_fault() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    events = h.observe([rd("p1", 0, 200.0, quality=Quality.IMPOSSIBLE)])
    assert kinds(events, "sensor_fault") == [("raised", "p1")]
    assert "impossible" in events[0].message


def test_fault_readings_do_not_count_as_spikes() -> None:
    h = SensorHealth([sensor("p1", model="ds18b20")], started_ns=T0)
    events = h.observe(
        [rd("p1", 0), rd("p1", 10, 85.0, quality=Quality.SENTINEL), rd("p1", 20, 4.0)]
    )
    assert kinds(events, "sensor_spike") == []


# -- spike ----------------------------------------------------------------------------------


def test_spike_on_a_step_change_raises_once_and_clears_when_smooth() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    h.observe([rd("p1", 0, 4.0), rd("p1", 10, 4.1)])
    step = rd("p1", 20, 14.0)  # +9.9 °C in 10 s = 59.4 °C/min
    assert h.spike_flag(step)
    events = h.observe([step])
    assert kinds(events, "sensor_spike") == [("raised", "p1")]
    assert events[0].value == pytest.approx(59.4)
    assert events[0].limit == 5.0
    # Smooth again, but not yet for 3 intervals (30 s) since the spike.
    assert h.observe([rd("p1", 30, 14.1), rd("p1", 40, 14.0)]) == []
    assert kinds(h.observe([rd("p1", 50, 14.1)]), "sensor_spike") == [("cleared", "p1")]


def test_spike_flag_is_a_pure_query() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    assert not h.spike_flag(rd("p1", 0, 50.0))  # nothing to compare with
    h.observe([rd("p1", 0, 4.0)])
    assert not h.spike_flag(rd("p1", 60, 8.9))  # 4.9 °C/min
    assert h.spike_flag(rd("p1", 60, 9.1))  # 5.1 °C/min
    assert not h.spike_flag(rd("p1", 1, 4.3))  # under the noise floor
    assert not h.spike_flag(rd("p1", 0, 9.0))  # no time elapsed
    assert h.active() == set()


def test_slow_drift_is_not_a_spike() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    events = h.observe([rd("p1", 60 * i, 4.0 + 4.0 * i) for i in range(10)])
    assert kinds(events, "sensor_spike") == []


# -- frozen ---------------------------------------------------------------------------------


def test_frozen_after_n_identical_values_clears_on_change() -> None:
    h = SensorHealth([sensor("p1", model="sht3x")], started_ns=T0)
    events = h.observe([rd("p1", 10 * i, 4.25) for i in range(29)])
    assert kinds(events, "sensor_frozen") == []
    events = h.observe([rd("p1", 290, 4.25)])
    assert kinds(events, "sensor_frozen") == [("raised", "p1")]
    assert events[0].details["since_ns"] == T0
    assert h.observe([rd("p1", 300 + i, 4.25) for i in range(5)]) == []
    assert kinds(h.observe([rd("p1", 400, 4.3)]), "sensor_frozen") == [("cleared", "p1")]


def test_frozen_ignores_quantised_models() -> None:
    h = SensorHealth([sensor("p1", model="ds18b20")], started_ns=T0)
    assert h.observe([rd("p1", 10 * i, 4.0625) for i in range(100)]) == []


# -- battery --------------------------------------------------------------------------------


def test_battery_hysteresis() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    assert h.observe([rd("p1", 0, noisy(0), battery=3.35)]) == []
    events = h.observe([rd("p1", 10, noisy(1), battery=3.29)])
    assert kinds(events, "battery_low") == [("raised", "p1")]
    assert events[0].limit == 3.3
    # Inside the band (3.3 .. 3.4): no clear, no second raise.
    readings = [rd("p1", 20 + 10 * i, noisy(i), battery=v) for i, v in enumerate([3.31, 3.2, 3.39])]
    assert h.observe(readings) == []
    assert kinds(h.observe([rd("p1", 60, 4.1, battery=3.4)]), "battery_low") == [("cleared", "p1")]
    assert h.observe([rd("p1", 70, 4.0, battery=3.31)]) == []


def test_battery_low_works_on_percent_for_sensors_without_a_voltage() -> None:
    h = SensorHealth([sensor("z1")], started_ns=T0)
    assert h.observe([rd("z1", 0, noisy(0), battery_pct=97)]) == []
    events = h.observe([rd("z1", 10, noisy(1), battery_pct=19)])
    assert kinds(events, "battery_low") == [("raised", "z1")]
    assert (events[0].value, events[0].limit) == (19, 20.0)
    assert "battery 19 % below 20 %" in events[0].message
    assert h.observe([rd("z1", 20, noisy(2), battery_pct=24)]) == []  # inside 20 .. 25
    assert kinds(h.observe([rd("z1", 30, 4.1, battery_pct=25)]), "battery_low") == [
        ("cleared", "z1")
    ]


def test_battery_volts_win_over_percent_in_one_reading() -> None:
    h = SensorHealth([sensor("z1")], started_ns=T0)
    # 3.0 V is low whatever the device's own 80 % estimate says.
    events = h.observe([rd("z1", 0, noisy(0), battery=3.0, battery_pct=80)])
    assert kinds(events, "battery_low") == [("raised", "z1")]


# -- checksum rate --------------------------------------------------------------------------


def test_checksum_rate_needs_min_lines_and_uses_the_window() -> None:
    h = SensorHealth([], started_ns=T0)
    # 40 lines, 50 % bad: too few lines to judge.
    assert h.observe_checksums({"serial0": 20}, {"serial0": 20}) == []
    # 100 lines total, 20 % bad: raised.
    events = h.observe_checksums({"serial0": 80}, {"serial0": 20}, now_ns=T0 + 5 * S)
    assert kinds(events, "checksum_rate") == [("raised", "serial0")]
    assert events[0].value == pytest.approx(0.2)
    assert events[0].at_ns == T0 + 5 * S
    # 100 more clean lines: 20 / 200 = 10 %, still raised, not raised again.
    assert h.observe_checksums({"serial0": 180}, {"serial0": 20}) == []
    # 200 more clean lines: the bad ones fell out of the window.
    events = h.observe_checksums({"serial0": 380}, {"serial0": 20})
    assert kinds(events, "checksum_rate") == [("cleared", "serial0")]


def test_checksum_rate_between_thresholds_does_not_flap() -> None:
    h = SensorHealth([], started_ns=T0)
    h.observe_checksums({"d": 180}, {"d": 20})  # 10 %: raised
    # Each call adds 100 lines at 4 %: above the clear rate, below the raise rate.
    good, bad = 180, 20
    for _ in range(5):
        good, bad = good + 96, bad + 4
        assert h.observe_checksums({"d": good}, {"d": bad}) == []
    assert h.active() == {("checksum_rate", "d")}


def test_checksum_counters_restart() -> None:
    h = SensorHealth([], started_ns=T0)
    assert kinds(h.observe_checksums({"d": 100}, {"d": 100}), "checksum_rate") == [("raised", "d")]
    events = h.observe_checksums({"d": 100}, {"d": 0})  # counters went back to zero
    assert kinds(events, "checksum_rate") == [("cleared", "d")]


def test_checksum_rejects_from_counter_keys() -> None:
    dropped = {"serial0:checksum": 3, "serial0:garbage": 9, "mqtt:a:checksum": 1}
    assert checksum_rejects(dropped) == {"serial0": 3, "mqtt:a": 1}
    # a Modbus frame's and a 1-Wire scratchpad's CRC count the same way
    wired = {"bus1:crc": 2, "bus1:exception": 5, "w1:crc": 1}
    assert checksum_rejects(wired) == {"bus1": 2, "w1": 1}


# -- restore and idempotence ----------------------------------------------------------------


def test_restore_lets_a_restarted_gateway_clear_an_old_alert() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    h.restore([("battery_low", "p1")])
    assert h.observe([rd("p1", 0, battery=3.2)]) == []  # no second raise
    assert kinds(h.observe([rd("p1", 10, battery=3.6)]), "battery_low") == [("cleared", "p1")]


def test_unknown_sensors_and_late_readings() -> None:
    h = SensorHealth([sensor("p1")], started_ns=T0)
    assert h.observe([rd("ghost", 0, 85.0, quality=Quality.SENTINEL)]) == []
    h.observe([rd("p1", 100, 4.0)])
    # A late sentinel (older event time) is not judged, but proves the link is alive.
    assert h.observe([rd("p1", 50, -127.0, quality=Quality.SENTINEL, rx_s=120)]) == []
    assert h.check(T0 + 149 * S, set()) == []
    assert kinds(h.check(T0 + 150 * S, set()), "sensor_stale") == [("raised", "p1")]


# -- property: events per (rule, subject) alternate raised, cleared, raised ... -------------

_SENSORS = [
    sensor("a1", "z1", "sht3x", 10),
    sensor("a2", "z1", "ds18b20", 5),
    sensor("b1", "z2", "generic", 20),
]
_PROPERTY_SETTINGS = HealthSettings(
    frozen_readings=2,
    checksum_window=20,
    checksum_min_lines=5,
    data_gap_zones={"z2": "any_stale"},
)

_reading_op = st.tuples(
    st.just("read"),
    st.sampled_from(["a1", "a2", "b1"]),
    st.integers(min_value=-5, max_value=60),  # seconds after the previous step
    st.sampled_from([4.0, 4.0, 4.5, 12.0, 85.0, -127.0]),
    st.sampled_from([None, 3.0, 3.35, 3.6]),
    st.sampled_from([0, 0, 0, int(Quality.SENTINEL), int(Quality.IMPOSSIBLE)]),
)
_check_op = st.tuples(
    st.just("check"),
    st.integers(min_value=0, max_value=120),
    st.sets(st.sampled_from(["z1", "z2"])),
)
_checksum_op = st.tuples(
    st.just("checksum"),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_reading_op, _check_op, _checksum_op), max_size=80))
def test_events_alternate_per_rule_and_subject(ops: list[tuple[object, ...]]) -> None:
    h = SensorHealth(_SENSORS, _PROPERTY_SETTINGS, started_ns=T0)
    now = T0
    good = bad = 0
    history: dict[tuple[str, str], list[str]] = defaultdict(list)
    for op in ops:
        if op[0] == "read":
            _, sid, dt, temp, battery, quality = op
            assert isinstance(dt, int)
            now += dt * S
            reading = Reading(
                sensor=str(sid),
                ts_ns=now,
                received_ns=max(now, T0),
                temp_c=float(temp),  # type: ignore[arg-type]
                source="sim",
                battery_v=battery,  # type: ignore[arg-type]
                quality=int(quality),  # type: ignore[call-overload]
            )
            events = h.observe([reading])
        elif op[0] == "check":
            _, dt, zones = op
            assert isinstance(dt, int)
            now += dt * S
            events = h.check(now, set(zones))  # type: ignore[call-overload]
        else:
            _, g, b = op
            good += int(g)  # type: ignore[call-overload]
            bad += int(b)  # type: ignore[call-overload]
            events = h.observe_checksums({"serial0": good}, {"serial0": bad})
        for e in events:
            history[(e.rule, e.subject)].append(e.kind)
            assert e.severity == ("critical" if e.rule == "data_gap" else "warning")
    for key, seq in history.items():
        expected = ["raised", "cleared"] * len(seq)
        assert seq == expected[: len(seq)], key
        assert (seq[-1] == "raised") == (key in h.active())
