"""Zone monitoring: worst-of-sensors, stale sensors drop out, alarm timing on event time."""

from __future__ import annotations

from gateway.config import parse_config
from gateway.core.model import Quality, Reading
from gateway.sop.zones import ZoneMonitor

S = 1_000_000_000
T0 = 1_800_000_000 * S


def _config(aggregate: str = "worst", max_gap_s: float | None = None) -> object:
    extra = {} if max_gap_s is None else {"max_gap_s": max_gap_s}
    return parse_config(
        {
            "hub": {"id": "h"},
            "profiles": {
                "test": {"min_c": 2, "max_c": 8, "alarm_delay_s": 600, "hysteresis_c": 0.5} | extra
            },
            "zones": [
                {"id": "cr1", "kind": "cold_storage", "profile": "test", "aggregate": aggregate}
            ],
            "sensors": [
                {"id": "a", "zone": "cr1", "interval_s": 60},
                {"id": "b", "zone": "cr1", "interval_s": 60},
            ],
        }
    )


def _r(sensor: str, t_s: float, temp: float, quality: int = 0) -> Reading:
    return Reading(sensor, T0 + int(t_s * S), T0, temp, "t", "cr1", quality=quality)


def test_compressor_failure_raises_within_delay_plus_one_interval() -> None:
    monitor = ZoneMonitor(_config())  # type: ignore[arg-type]
    events = []
    first_out = None
    for minute in range(60):
        temp = 5.0 + 0.3 * max(0, minute - 5)  # ramp after a failure at minute 5
        if temp > 8 and first_out is None:
            first_out = minute * 60
        events += monitor.observe([_r("a", minute * 60, temp), _r("b", minute * 60 + 1, 4.0)])
    raised = [e for e in events if e.kind == "raised"]
    assert len(raised) == 1
    assert first_out is not None
    assert raised[0].started_at_ns == T0 + first_out * S, "starts at the first out-of-range reading"
    assert raised[0].at_ns - raised[0].started_at_ns <= (600 + 60) * S


def test_worst_sensor_decides_and_median_needs_a_majority() -> None:
    worst = ZoneMonitor(_config("worst"))  # type: ignore[arg-type]
    median = ZoneMonitor(_config("median"))  # type: ignore[arg-type]
    for m in (worst, median):
        for minute in range(20):
            m.observe([_r("a", minute * 60, 9.5), _r("b", minute * 60 + 1, 4.0)])
    assert worst.detector("cr1").state == "alarmed"
    assert median.detector("cr1").state == "inside"  # median of 9.5 and 4.0 is 6.75


def test_stale_and_flagged_readings_do_not_hold_the_zone() -> None:
    monitor = ZoneMonitor(_config())  # type: ignore[arg-type]
    monitor.observe([_r("a", 0, 20.0)])  # one hot reading, then sensor a goes silent
    for minute in range(5, 30):
        monitor.observe([_r("b", minute * 60, 4.0), _r("a", minute * 60, 85.0, Quality.SENTINEL)])
    assert monitor.detector("cr1").state == "inside"


def test_timer_raises_when_readings_stop_mid_excursion() -> None:
    # The last value stands for the max gap (here 15 min): the delay runs out inside it.
    monitor = ZoneMonitor(_config(max_gap_s=900))  # type: ignore[arg-type]
    monitor.observe([_r("a", 0, 12.0)])
    assert monitor.next_deadline_ns() == T0 + 600 * S
    assert monitor.check(T0 + 599 * S) == []
    (event,) = monitor.check(T0 + 600 * S)
    assert (event.kind, event.by_timer, event.at_ns) == ("raised", True, T0 + 600 * S)


def test_a_silence_past_the_max_gap_is_unknown_until_the_next_reading() -> None:
    # Default max gap: 3 x 60 s. The timer cannot know whether the zone stayed warm...
    monitor = ZoneMonitor(_config())  # type: ignore[arg-type]
    monitor.observe([_r("a", 0, 12.0)])
    assert monitor.next_deadline_ns() is None
    assert monitor.check(T0 + 3600 * S) == []
    # ...the next reading says: out of range on both sides, so the silence counts, and the
    # alarm is at exactly start + delay, as a replay of the same readings reports it.
    (event,) = monitor.observe([_r("a", 2400, 12.0)])
    assert (event.kind, event.at_ns) == ("raised", T0 + 600 * S)


def test_rolling_mkt_raises_over_the_limit_and_clears_below() -> None:
    config = parse_config(
        {
            "hub": {"id": "h"},
            "profiles": {
                "warmish": {"max_c": 12, "mkt_limit_c": 8, "mkt_window_s": 3600, "hysteresis_c": 0}
            },
            "zones": [{"id": "cr1", "kind": "cold_storage", "profile": "warmish"}],
            "sensors": [{"id": "a", "zone": "cr1", "interval_s": 60}],
        }
    )
    monitor = ZoneMonitor(config)
    events = []
    for minute in range(45):  # 9 °C: inside the 12 °C limit, but MKT above 8 °C
        events += monitor.observe([_r("a", minute * 60, 9.0)])
    mkt = [e for e in events if type(e).__name__ == "MktEvent"]
    assert [e.kind for e in mkt] == ["raised"]
    assert mkt[0].at_ns >= T0 + 30 * 60 * S, "not judged before half the window is covered"
    assert abs(mkt[0].value_c - 9.0) < 0.01
    for minute in range(45, 120):
        events += monitor.observe([_r("a", minute * 60, 2.0)])
    mkt = [e for e in events if type(e).__name__ == "MktEvent"]
    assert [e.kind for e in mkt] == ["raised", "cleared"]
    assert mkt[1].value_c <= 8.0
