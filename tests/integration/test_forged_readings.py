"""The review's forged-reading attack, against the shipped broker set-up and a real InfluxDB.

A 12.5 degC excursion reading of node-1 is in InfluxDB. Attackers then try to replace it
with 4.0 degC at the same (sensor, time), the way the security review did:

- anonymously, and with a wrong password: the broker refuses the connection;
- as another node (node-2, a real account) on its own topic with node-1's id, and with
  a serial probe's id: the gateway refuses ``identity_mismatch`` (dead letter, alert);
- as node-2 on node-1's topic: the broker's ACL drops it (``pattern write
  sensors/%u/telemetry``);
- as node-1 itself (its account and topic: a stolen node password), a second value for
  the committed (sensor, time): the journal refuses it ``conflicting_duplicate``.

Afterwards InfluxDB still holds exactly the one 12.5 degC point.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.localservices import InfluxDB1, Mosquitto
from tests.conftest import _require
from tests.integration.harness import hub_config, running_gateway, wait_for
from tests.integration.secured_broker import Client, SecuredBroker, secured_broker

T_MS = 1_767_225_600_000  # the real reading's device time
# CONNACK "not authorised": 5 in MQTT 3.1.1, which paho 2 reports as reason code 135.
NOT_AUTHORISED = (5, 135)
USERS = ["coldchain-ingest", "coldchain-feed", "node-1", "node-2", "scanner-01", "planner"]


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    _require(Mosquitto.binary_available(), "mosquitto")
    with secured_broker(tmp_path / "mqtt", USERS) as secured:
        yield secured


def _config(tmp_path: Path, broker: SecuredBroker, influx: InfluxDB1, db: str) -> Any:
    secret = tmp_path / "ingest-password"
    secret.write_text(broker.passwords["coldchain-ingest"])
    return hub_config(
        tmp_path,
        zones=[
            {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
            {"id": "dock-1", "kind": "dock"},
        ],
        sensors=[
            {"id": "node-1", "zone": "cold-room-1"},
            {"id": "node-2", "zone": "dock-1"},
            {"id": "cr1-a", "zone": "cold-room-1", "model": "ds18b20"},
        ],
        drivers={
            "mqtt": [
                {
                    "name": "nodes",
                    "port": broker.port,
                    "username": "coldchain-ingest",
                    "password": {"file": str(secret)},
                    "sensors": ["node-1", "node-2"],
                    "subscriptions": [
                        {
                            "topic": "sensors/+/telemetry",
                            "sensor_path": "id",
                            "device_topic_segment": 1,
                        }
                    ],
                }
            ]
        },
        sinks={"influx": {"url": influx.url, "database": db, "max_backoff_s": 1}},
    )


def _reading(sensor: str, temp: float, ts_ms: int = T_MS) -> bytes:
    return json.dumps({"id": sensor, "temp_c": temp, "ts": ts_ms}).encode()


async def test_forged_readings_are_refused_and_influx_keeps_the_real_point(
    tmp_path: Path, broker: SecuredBroker, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = _config(tmp_path, broker, influx, db)
    node1 = Client(broker.port, "node-1", broker.passwords["node-1"])
    node2 = Client(broker.port, "node-2", broker.passwords["node-2"])
    async with running_gateway(config) as gw:
        await wait_for(lambda: gw.counters.connected.get("nodes"), what="driver subscribed")
        with node1, node2:
            assert await asyncio.to_thread(node1.connect) == 0
            assert await asyncio.to_thread(node2.connect) == 0
            await asyncio.to_thread(
                node1.publish, "sensors/node-1/telemetry", _reading("node-1", 12.5)
            )
            await wait_for(lambda: influx.count(db, "reading") == 1, what="the real point")

            # Anonymous and wrong-password clients never get in (CONNACK 5: not authorised).
            anonymous = Client(broker.port, None, None)
            assert await asyncio.to_thread(anonymous.connect) in NOT_AUTHORISED
            anonymous.close()
            wrong = Client(broker.port, "node-1", "guessed")
            assert await asyncio.to_thread(wrong.connect) in NOT_AUTHORISED
            wrong.close()

            # node-2 reports node-1's reading (and a serial probe's) on its own topic.
            for forged in ("node-1", "cr1-a"):
                await asyncio.to_thread(
                    node2.publish, "sensors/node-2/telemetry", _reading(forged, 4.0)
                )
            await wait_for(lambda: gw.counters.dead_lettered == 2, what="two dead letters")

            # node-2 on node-1's topic: the ACL drops it. The broker handled it before its
            # PUBACK, so once node-2's own later reading is in, the forged one would be too.
            await asyncio.to_thread(
                node2.publish, "sensors/node-1/telemetry", _reading("node-1", 4.0)
            )
            await asyncio.to_thread(
                node2.publish, "sensors/node-2/telemetry", _reading("node-2", 6.0)
            )
            await wait_for(lambda: influx.count(db, "reading") == 2, what="node-2's own reading")

            # node-1's own account sends 4.0 for the committed time: refused, not stored.
            await asyncio.to_thread(
                node1.publish, "sensors/node-1/telemetry", _reading("node-1", 4.0)
            )
            await wait_for(lambda: gw.counters.dead_lettered == 3, what="the conflict")

        letters = gw.runner.journal.dead_letters(10)
        assert sorted(d.reason for d in letters) == [
            "conflicting_duplicate",
            "identity_mismatch",
            "identity_mismatch",
        ]
        assert gw.counters.dropped["nodes:identity_mismatch"] == 2
        assert gw.counters.dropped["nodes:conflicting_duplicate"] == 1

        async def alerted() -> set[str]:
            active = await gw.runner.call(gw.alerts.active)
            return {a.rule for a in active if a.subject == "mqtt:nodes"}

        await wait_for(
            lambda: _contains(alerted(), {"identity_mismatch", "conflicting_duplicate"}),
            what="identity_mismatch and conflicting_duplicate alerts",
        )

    rows = influx.rows('SELECT "temp_c" FROM "reading" WHERE "sensor" = \'node-1\'', db)
    assert [(r["time"], r["temp_c"]) for r in rows] == [(T_MS * 1_000_000, 12.5)]


async def _contains(found: Any, wanted: set[str]) -> bool:
    return wanted <= await found
