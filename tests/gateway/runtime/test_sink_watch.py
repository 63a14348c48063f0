"""The gateway's own sink_down alert: raised after the configured outage, cleared after."""

from __future__ import annotations

from gateway.core.clock import ManualClock
from gateway.core.metrics import Counters
from gateway.runtime.sink_watch import SinkWatch
from gateway.sop.sensor_health import HealthEvent


def test_sink_down_raises_after_the_delay_once_and_clears_when_back() -> None:
    clock = ManualClock()
    counters = Counters()
    reported: list[HealthEvent] = []
    watch = SinkWatch(["influx", "planner"], counters, clock, reported.extend, after_s=600)
    counters.connected["influx"] = False
    counters.error("influx", "connection refused")
    counters.connected["planner"] = True
    assert watch.check() == []
    clock.advance(599)
    assert watch.check() == []
    clock.advance(1)
    (raised,) = watch.check()
    assert (raised.kind, raised.rule, raised.subject) == ("raised", "sink_down", "influx")
    assert "connection refused" in raised.message
    assert raised.details["since_ns"] == clock.now_ns() - 600 * 1_000_000_000
    clock.advance(600)
    assert watch.check() == []  # raised once per outage
    counters.connected["influx"] = True
    (cleared,) = watch.check()
    assert (cleared.kind, cleared.subject) == ("cleared", "influx")
    assert reported == [raised, cleared]


def test_a_restart_during_an_outage_does_not_raise_twice_and_clears_later() -> None:
    clock = ManualClock()
    counters = Counters()
    watch = SinkWatch(["influx"], counters, clock, lambda events: None, after_s=60)
    watch.restore([("sink_down", "influx"), ("sensor_stale", "s1")])
    counters.connected["influx"] = False
    clock.advance(120)
    assert watch.check() == []
    counters.connected["influx"] = True
    assert [e.kind for e in watch.check()] == ["cleared"]
