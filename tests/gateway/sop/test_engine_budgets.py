"""Shipment budgets burn on an unprofiled warm dock and survive a gateway restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.apps.localservices import free_port
from gateway.config import GatewayConfig, parse_config
from gateway.core.model import Delivery, RawSample
from gateway.runtime.daemon import Gateway

S = 1_000_000_000
T0 = 1_700_000_000 * S  # in the past: the replay reads up to now


def _config(tmp_path: Path) -> GatewayConfig:
    return parse_config(
        {
            "hub": {"id": "h"},
            # Commit at once: on the system clock, a tick during the default commit wait
            # would burn the budget up to now (the readings are from 2023).
            "journal": {"path": str(tmp_path / "j.db"), "commit_interval_ms": 1},
            "profiles": {"tiny": {"max_c": 8, "budget_s": 60, "alarm_delay_s": 3600}},
            "zones": [{"id": "dock-1", "kind": "dock"}],
            "sensors": [{"id": "d1", "zone": "dock-1", "interval_s": 10}],
            # Lists d1 so its readings are accepted; the test hands samples to the ingest
            # itself and nothing answers on the port.
            "drivers": {
                "mqtt": [
                    {
                        "name": "t",
                        "port": free_port(),
                        "sensors": ["d1"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )


async def _feed(gateway: Gateway, seconds: range) -> None:
    samples = [RawSample("d1", 20.0, T0 + t * S, T0 + t * S, "mqtt:t") for t in seconds]
    await gateway.ingest.submit("t", Delivery(samples=samples))


async def _running(gateway: Gateway) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    return stop, task


def _budget_alerts(gateway: Gateway) -> list[str]:
    return [str(a.severity) for a in gateway.alerts.active() if a.rule == "budget"]


async def test_budget_counts_on_a_warm_dock_and_survives_restart(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = Gateway(config)
    stop, task = await _running(first)
    body = {"shipment": "SH-7", "event": "received", "zone": "dock-1", "actor": "a",
            "ts_ns": T0, "profile": "tiny"}  # fmt: skip
    await first.engine.apply_custody(json.dumps(body).encode(), "test")
    await _feed(first, range(0, 41, 10))  # 20 °C at 0..40 s: 40 s out of range so far
    async with asyncio.timeout(5):
        while first.counters.committed < 5:
            await asyncio.sleep(0.01)
    await first.engine.settled()
    assert _budget_alerts(first) == [], "40 s of a 60 s budget: below the 80 % warning"
    stop.set()
    await task

    second = Gateway(config)
    stop, task = await _running(second)
    await _feed(second, range(50, 81, 10))  # 30 s more: 70 s > 60 s
    async with asyncio.timeout(5):
        while second.counters.committed < 4:
            await asyncio.sleep(0.01)
    await second.engine.settled()
    assert _budget_alerts(second) == ["critical"], "spent time carried over the restart"
    stop.set()
    await task
