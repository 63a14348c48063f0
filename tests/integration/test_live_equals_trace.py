"""Issue 13: the live engine and the trace of its journal give one answer (property test).

Hypothesis generates reading series with gaps longer than the max gap, noise around the
limits (hysteresis band included), exact boundaries (runs of exactly the delay), late
readings committed after newer ones, DS18B20 sentinels and spikes. Each series goes through
the live path (the real normalizer sets the quality flags, the real journal commits, the
SOP engine runs on a ManualClock whose timers are ticked at random moments), then the
shipment's trace is built from that journal. Both must report the same excursions and
alarm times, the same budget totals and a verdict that follows from the live alerts.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import GatewayConfig, parse_config
from gateway.core.clock import ManualClock
from gateway.core.model import RawSample
from gateway.ingest.normalize import Normalizer
from gateway.runtime.daemon import Gateway
from gateway.trace import build_trace
from gateway.trace.query import JournalSource

S = 1_000_000_000
T0 = 1_800_000_000 * S
CHAIN_OK = type("Chain", (), {"ok": True, "first_bad_seq": None, "reason": ""})()

# A reading: (seconds since the previous one, °C, what kind of reading it is)
temps = st.sampled_from([5.0, 7.4, 7.6, 7.9, 8.0, 8.1, 8.4, 9.0, 12.0, 1.9, 2.0])
kinds = st.sampled_from(["normal"] * 8 + ["sentinel", "late", "spike"])
gaps = st.sampled_from([60, 60, 60, 59, 61, 120, 180, 181, 300, 600, 1800])
steps = st.lists(st.tuples(gaps, temps, kinds, st.floats(0, 1)), min_size=2, max_size=45)


def _config(path: Path) -> GatewayConfig:
    return parse_config(
        {
            "hub": {"id": "h"},
            "journal": {"path": str(path / "j.db")},
            "profiles": {
                "p": {
                    "min_c": 2,
                    "max_c": 8,
                    "alarm_delay_s": 600,
                    "hysteresis_c": 0.5,
                    "budget_s": 1800,
                }
            },
            "zones": [{"id": "cold", "kind": "cold_storage", "profile": "p"}],
            "sensors": [{"id": "s1", "zone": "cold", "model": "ds18b20", "interval_s": 60}],
            "dwell_rules": [],
        }
    )


async def _live_and_trace(
    series: list[tuple[int, float, str, float]], path: Path, *, before_custody: bool = False
) -> None:
    config = _config(path)
    clock = ManualClock(T0 - 60 * S)
    gateway = Gateway(config, clock=clock)
    engine = gateway.engine
    normalizer = Normalizer(config)  # what the ingest runs: sentinel and SPIKE flags

    async def custody(kind: str, ts: int) -> None:
        body = {"shipment": "SH-P", "event": kind, "zone": "cold", "actor": "qa", "ts_ns": ts}
        if kind == "received":
            body["profile"] = "p"
        await engine.apply_custody(json.dumps(body).encode(), "test")

    async def advance_to(ts: int) -> None:
        if ts > clock.now_ns():
            clock.advance((ts - clock.now_ns()) / S)
        await engine.tick()

    await custody("received", T0 - 30 * S)
    t = T0
    newest = T0
    for gap_s, drawn, kind, tick_at in series:
        temp = {"sentinel": 85.0, "spike": 45.0}.get(kind, drawn)
        t += gap_s * S
        ts = t
        if kind == "late":
            # older than a reading already committed, inside custody (a zone alert that
            # starts before the shipment arrived is the zone's, not the shipment's)
            ts = newest - 90 * S if before_custody else max(T0, newest - 90 * S)
            t -= gap_s * S
        # a timer tick somewhere in the silence before this reading
        await advance_to(max(clock.now_ns(), newest + round(tick_at * gap_s * S)))
        received = max(ts, newest)
        await advance_to(received)
        readings = normalizer.normalize([RawSample("s1", temp, ts, received, "t")]).readings
        await gateway.runner.call(gateway.journal.commit_batch, readings, [], received)
        engine.evaluate(readings)
        newest = max(newest, ts)
    end = newest + 120 * S
    await advance_to(end)
    await custody("staged", end)  # same zone: one custody interval
    await custody("handed_to_carrier", end)
    await advance_to(end + S)

    rows = gateway.journal.connection.execute(
        "SELECT started_ns, raised_ns, cleared_ns FROM alerts WHERE rule = 'excursion'"
        " ORDER BY started_ns"
    ).fetchall()
    live = [(int(a), int(b), None if c is None else int(c)) for a, b, c in rows]
    budget = engine.budgets.budget("SH-P")
    assert budget is not None
    live_budget = (budget.spent_s, budget.unknown_s, budget.state)
    gateway.runner.close()

    source = JournalSource(path / "j.db", "h")
    try:
        result = build_trace(source, config, "SH-P", as_of_ns=end + 2 * S, chain=CHAIN_OK)
    finally:
        source.close()
    traced = [
        (x.start_ns, x.raised_ns, None if x.open else x.end_ns)
        for x in result.excursions
        if x.alarmed
    ]
    if not before_custody:
        # (a zone alert that starts before the shipment arrived is the zone's, not its)
        assert traced == live, "the same excursions, alarm times and ends"
    assert (result.budget.spent_s, result.budget.unknown_s, result.budget.state) == live_budget
    if before_custody:
        return
    live_reject = (
        bool(live)
        or live_budget[2] == "violated"
        or (live_budget[1] > 0 and live_budget[1] >= budget.remaining_s)
    )
    assert (result.verdict == "reject") == live_reject, result.reasons
    # time out of range by excursion adds up to the budget (one notion of duration)
    assert sum(x.out_of_range_s for x in result.excursions) == result.budget.spent_s


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps)
def test_live_engine_and_trace_of_its_journal_agree(
    series: list[tuple[int, float, str, float]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_live_and_trace(series, Path(tmp)))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps)
def test_a_reading_from_before_the_arrival_committed_after_it_seeds_both_alike(
    series: list[tuple[int, float, str, float]],
) -> None:
    """Late readings may predate the custody step: the budgets still agree."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(
            _live_and_trace([(60, 5.0, "late", 0.0), *series], Path(tmp), before_custody=True)
        )
