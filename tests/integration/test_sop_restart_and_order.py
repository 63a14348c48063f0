"""Issue 13, problem 6: a restart mid-excursion and interleaved steps, on a real journal.

The gateway runs on a ManualClock; readings go in through the real ingest (journal commit,
then the SOP engine), so the detector state after a restart comes from the journal alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

from gateway.alerts.store import Alert
from gateway.apps.localservices import free_port
from gateway.config import GatewayConfig, parse_config
from gateway.core.clock import ManualClock
from gateway.core.model import Delivery, RawSample, Reading
from gateway.runtime.daemon import Gateway
from gateway.sop.engine import WITHDRAWN_NOTE
from gateway.trace import build_trace
from gateway.trace.query import JournalSource
from tests.integration.harness import wait_for

S = 1_000_000_000
T0 = 1_800_000_000 * S
CHAIN_OK = SimpleNamespace(ok=True, first_bad_seq=None, reason="")


def _config(tmp_path: Path, interval_s: float = 10) -> GatewayConfig:
    return parse_config(
        {
            "hub": {"id": "h"},
            "journal": {"path": str(tmp_path / "j.db"), "commit_interval_ms": 5},
            "profiles": {
                "fast": {"min_c": 2, "max_c": 8, "alarm_delay_s": 60, "hysteresis_c": 0.5}
            },
            "zones": [{"id": "cold-1", "kind": "cold_storage", "profile": "fast"}],
            "sensors": [{"id": "s1", "zone": "cold-1", "interval_s": interval_s}],
            # s1's block (samples are handed to the ingest from source "mqtt:t"); nothing
            # answers on its port.
            "drivers": {
                "mqtt": [
                    {
                        "name": "t",
                        "port": free_port(),
                        "sensors": ["s1"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )


async def _running(gateway: Gateway) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    async with asyncio.timeout(10):
        await gateway.ready.wait()
    return stop, task


async def _feed(gateway: Gateway, points: list[tuple[int, float]]) -> None:
    before = gateway.counters.committed
    samples = [RawSample("s1", temp, ts, ts, "mqtt:t") for ts, temp in points]
    await gateway.ingest.submit("t", Delivery(samples=samples))
    await wait_for(lambda: gateway.counters.committed >= before + len(points), what="commit")
    await gateway.engine.settled()


def _excursions(gateway: Gateway) -> list[Alert]:
    return [a for a in gateway.alerts.active() if a.rule == "excursion"]


async def test_an_excursion_open_at_a_restart_is_open_after_it_and_clears(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    first = Gateway(config, clock=ManualClock(T0 + 120 * S))
    stop, task = await _running(first)
    await _feed(first, [(T0 + i * 10 * S, 12.0) for i in range(13)])  # 2 min at 12 °C
    (alert,) = _excursions(first)
    assert (alert.started_ns, alert.raised_ns) == (T0, T0 + 60 * S)
    stop.set()
    await task

    second = Gateway(config, clock=ManualClock(T0 + 130 * S))
    stop, task = await _running(second)
    try:
        state = second.engine.detector_states()["cold-1"]
        assert (state.state, state.started_at_ns, state.raised_at_ns) == (
            "alarmed",
            T0,
            T0 + 60 * S,
        ), "the detector knows from the journal that the zone is in an excursion"
        await _feed(second, [(T0 + (13 + i) * 10 * S, 5.0) for i in range(3)])  # recovers
        assert _excursions(second) == [], "the excursion alert clears after the restart"
        cleared = second.alerts.get(alert.id)
        assert cleared is not None and cleared.cleared_ns is not None
        assert T0 + 130 * S <= cleared.cleared_ns <= T0 + 150 * S
    finally:
        stop.set()
        await task


async def test_a_timer_raise_never_folds_into_an_excursion_still_clearing(
    tmp_path: Path,
) -> None:
    # 60 s sensors: a value stands for 3 min, so the alarm timer can fire during silence.
    # The engine's loop is not running yet: committed batches wait in its queue, exactly
    # the window in which a timer used to journal its raise ahead of them.
    config = _config(tmp_path, interval_s=60)
    clock = ManualClock(T0)
    gateway = Gateway(config, clock=clock)
    engine = gateway.engine

    def reading(t_s: int, temp: float) -> Reading:
        return Reading("s1", T0 + t_s * S, T0 + t_s * S, temp, "t", "cold-1")

    engine.evaluate([reading(0, 12.0)])
    clock.advance(60)
    await engine.tick()  # the first excursion's alarm, by the timer at T0 + 60 s
    (first,) = _excursions(gateway)
    engine.evaluate([reading(70, 5.0)])  # clears it...
    engine.evaluate([reading(80, 12.0)])  # ...and a new run starts
    clock.advance(80)
    await engine.tick()  # the new run's delay ran out while those batches waited
    loop = asyncio.create_task(engine.run())
    try:
        await engine.settled()
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    active = _excursions(gateway)
    assert [a.started_ns for a in active] == [T0 + 80 * S], (
        "the new excursion has its own alert; the old one is cleared"
    )
    old = gateway.alerts.get(first.id)
    assert old is not None and old.cleared_ns == T0 + 70 * S
    gateway.runner.close()


async def test_a_back_dated_handoff_raises_at_once_and_is_withdrawn_when_the_next_is_in_time(
    tmp_path: Path,
) -> None:
    """Issue 13, problem 4: dwell runs on event time; a late entry in time is no violation."""
    config = parse_config(
        {
            "hub": {"id": "h"},
            "journal": {"path": str(tmp_path / "j.db")},
            "zones": [{"id": "dock-1", "kind": "dock", "profile": "chilled"}],
            "sensors": [{"id": "d1", "zone": "dock-1", "interval_s": 60}],
        }
    )
    now = T0 + 3600 * S
    gateway = Gateway(config, clock=ManualClock(now))
    engine = gateway.engine

    async def handoff(kind: str, minutes_ago: int) -> None:
        body = {"shipment": "SH-L", "event": kind, "zone": "dock-1", "actor": "ana",
                "ts_ns": now - minutes_ago * 60 * S}  # fmt: skip
        await engine.apply_custody(json.dumps(body).encode(), "cli")

    await handoff("received", 30)
    await handoff("staged", 25)  # keyed in 25 min late: the 20 min staged limit passed
    await engine.tick()
    (alert,) = [a for a in gateway.alerts.active() if a.rule.startswith("dwell.staged")]
    assert alert.severity.value == "critical", "raised at once: the next step may never come"
    # warned at 16 min of event time, escalated at the 20 min event-time deadline
    assert alert.raised_ns == now - 9 * 60 * S
    assert alert.details["deadline_ns"] == now - 5 * 60 * S
    await handoff("handed_to_carrier", 10)  # 15 min after staged: in time, recorded late
    assert [a for a in gateway.alerts.active() if a.rule.startswith("dwell")] == []
    withdrawn = gateway.alerts.get(alert.id)
    assert withdrawn is not None and withdrawn.details.get("withdrawn") == WITHDRAWN_NOTE
    gateway.runner.close()

    source = JournalSource(tmp_path / "j.db", "h")
    try:
        result = build_trace(source, config, "SH-L", as_of_ns=now, chain=CHAIN_OK)
    finally:
        source.close()
    staged = [d for d in result.dwell if d.from_kind == "staged"]
    assert [(d.status, d.duration_s) for d in staged] == [("ok", 900)]
    assert result.withdrawn_alerts == [alert.id]
    assert "unacknowledged_alert" not in [r.code for r in result.reasons]
    assert "dwell" not in [r.code for r in result.reasons]
