"""MQTT sensor nodes -> real Mosquitto -> gateway -> real InfluxDB (v1) or VictoriaMetrics (v2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from firmware_sim.node import SensorNodeSim
from gateway.apps.localservices import InfluxDB1, Mosquitto, VictoriaMetrics
from tests.integration.harness import hub_config, running_gateway, wait_for

DEVICES = ["node-1", "node-2", "node-3"]


def mqtt_sections(broker: Mosquitto, sink: dict[str, Any]) -> dict[str, Any]:
    """Zones, sensors, an MQTT driver on the broker, and the given sink."""
    return {
        "zones": [{"id": "dock-1", "kind": "dock"}],
        "sensors": [{"id": d, "zone": "dock-1", "model": "sht3x"} for d in DEVICES],
        "drivers": {
            "mqtt": [
                {
                    "name": "nodes",
                    "host": broker.host,
                    "port": broker.port,
                    "client_id": "gw-test-nodes",
                    "sensors": list(DEVICES),
                    "subscriptions": [
                        {
                            "topic": "sensors/+/telemetry",
                            "sensor_path": "id",
                            "device_topic_segment": 1,
                            "temp_path": "temp_c",
                            "ts_path": "ts",
                            "rh_path": "rh",
                            "battery_path": "battery_v",
                            "seq_path": "seq",
                        }
                    ],
                }
            ]
        },
        "sinks": {"influx": sink},
    }


async def publish_rounds(nodes: SensorNodeSim, rounds: int) -> None:
    """Publish rounds without blocking the loop the gateway runs on."""
    for _ in range(rounds):
        await asyncio.to_thread(nodes.publish_round)
    await wait_for(lambda: nodes.pending == 0, what="PUBACKs for every publish")


async def test_nodes_to_influx_with_dead_letters(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = hub_config(
        tmp_path,
        **mqtt_sections(
            mosquitto, {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}
        ),
    )
    async with running_gateway(config) as gw:
        with SensorNodeSim(
            mosquitto.host, mosquitto.port, DEVICES, interval_s=1, malformed_rate=0.1, seed=4
        ) as nodes:
            # The driver subscribes asynchronously; publish once it is subscribed.
            await _wait_subscribed(gw, nodes)
            await publish_rounds(nodes, 100)
            good = sum(nodes.sent.values())
            bad = sum(nodes.malformed.values())
            await wait_for(lambda: influx.count(db, "reading") == good, what="all points")
            await wait_for(lambda: gw.counters.dead_lettered == bad, what="dead letters")
        letters = gw.runner.journal.dead_letters(1000)
        assert len(letters) == bad > 0
        assert {d.reason for d in letters} <= {"not_json", "missing_field", "bad_type"}
        assert all(d.topic.startswith("sensors/") and d.payload for d in letters)
        for device in DEVICES:
            n = influx.count(db, "reading", f"sensor = '{device}'")
            assert n == nodes.sent[device]


async def _wait_subscribed(gw: Any, nodes: SensorNodeSim) -> None:
    """Wait until the MQTT driver reports it is subscribed (its empty first delivery)."""
    await wait_for(lambda: gw.counters.connected.get("nodes"), timeout=15, what="subscribed")


async def test_broker_restart_reconnects_and_keeps_flowing(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = hub_config(
        tmp_path,
        **mqtt_sections(
            mosquitto, {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}
        ),
    )
    async with running_gateway(config) as gw:
        with SensorNodeSim(mosquitto.host, mosquitto.port, DEVICES, interval_s=1) as nodes:
            await _wait_subscribed(gw, nodes)
            await publish_rounds(nodes, 20)
            await asyncio.to_thread(mosquitto.restart)
            await wait_for(lambda: gw.counters.reconnects["nodes"] >= 1, what="reconnect")
            await publish_rounds(nodes, 20)
            good = sum(nodes.sent.values())
            await wait_for(lambda: influx.count(db, "reading") == good, what="all points")
    assert gw.counters.connected["nodes"] in (True, False)


async def test_v2_write_path_against_a_real_server(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    sink = {
        "api": "v2",
        "url": victoria.url,
        "org": "acme",
        "bucket": "coldchain",
        "token": {"value": "not-checked-by-victoria"},
        "max_backoff_s": 1,
    }
    config = hub_config(tmp_path, **mqtt_sections(mosquitto, sink))
    async with running_gateway(config) as gw:
        # Timestamps in the past: VictoriaMetrics' export stops at "now".
        start_ms = time.time_ns() // 1_000_000 - 120_000
        with SensorNodeSim(
            mosquitto.host, mosquitto.port, DEVICES, interval_s=1, start_ms=start_ms
        ) as nodes:
            await _wait_subscribed(gw, nodes)
            await publish_rounds(nodes, 10)
            good = sum(nodes.sent.values())
            # written counts every stream (the evidence checkpoints too); the stored
            # count below is the exact check.
            await wait_for(lambda: gw.counters.written["influx"] >= good, what="v2 writes")
    stored = await asyncio.to_thread(victoria.wait_for_count, '{__name__="reading_temp_c"}', good)
    assert stored == good
