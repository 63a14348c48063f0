"""The simulator speaks every payload format; the gateway reads each one right.

SensorNodeSim with each dialect -> real Mosquitto -> gateway (the subscription
firmware_sim.dialects.subscription gives) -> journal: every published temperature is
stored for the right sensor, in °C (the Fahrenheit variants converted).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from firmware_sim.dialects import DIALECTS, device_id, subscription
from firmware_sim.node import SensorNodeSim
from gateway.apps.localservices import Mosquitto
from tests.integration.harness import hub_config, running_gateway, wait_for

pytestmark = pytest.mark.integration

DEVICES = ["sim-1", "sim-2", "sim-3"]
ROUNDS = 3

CASES = [(d, False) for d in DIALECTS] + [("tasmota", True), ("esphome", True)]


@pytest.mark.parametrize(("dialect", "fahrenheit"), CASES)
async def test_each_dialect_reaches_the_journal_in_celsius(
    tmp_path: Path, mosquitto: Mosquitto, dialect: str, fahrenheit: bool
) -> None:
    ids = {device_id(dialect, d): f"s-{d}" for d in DEVICES}
    config = hub_config(
        tmp_path,
        zones=[{"id": "room", "kind": "cold_storage"}],
        sensors=[{"id": s, "zone": "room"} for s in ids.values()],
        drivers={
            "mqtt": [
                {
                    "name": "sim",
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "client_id": f"gw-dialect-{dialect}",
                    "subscriptions": [subscription(dialect, fahrenheit=fahrenheit)],
                    "sensor_ids": ids,
                }
            ]
        },
    )
    async with running_gateway(config) as gw:
        await wait_for(lambda: gw.counters.connected.get("sim"), timeout=15, what="subscribed")
        with SensorNodeSim(
            mosquitto.host,
            mosquitto.port,
            DEVICES,
            interval_s=10,
            dialect=dialect,
            fahrenheit=fahrenheit,
            client_id=f"sim-{dialect}",
            seed=3,
        ) as nodes:
            for _ in range(ROUNDS):
                await asyncio.to_thread(nodes.publish_round)
            await wait_for(lambda: nodes.pending == 0, what="PUBACKs")
        want = len(DEVICES) * ROUNDS
        await wait_for(lambda: gw.counters.committed >= want, what=f"{want} readings")
        rows = [r for _, r in gw.runner.journal.readings_after(0, 1000)]
    assert len(rows) == want
    assert Counter(r.sensor for r in rows) == {f"s-{d}": ROUNDS for d in DEVICES}
    got = sorted((r.sensor, r.temp_c) for r in rows)
    published = sorted((f"s-{d}", t) for d, t in nodes.published)
    for (sensor, stored), (want_sensor, sent) in zip(got, published, strict=True):
        assert sensor == want_sensor
        # °F on the wire is rounded to 0.01 °F, so back in °C it is within 0.003 °C.
        assert stored == (pytest.approx(sent, abs=0.003) if fahrenheit else sent)
