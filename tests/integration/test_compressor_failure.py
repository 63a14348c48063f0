"""End to end: a simulated compressor failure -> excursion alert -> InfluxDB and the planner.

Serial board on a pty, real Mosquitto for the planner feed, real InfluxDB. Device time is
simulated (the board stamps readings at its own interval), so the alarm delay is checked
on event time, not on how fast the test runs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import ColdRoom, Probe
from gateway.apps.localservices import InfluxDB1, Mosquitto
from tests.integration.harness import hub_config, running_gateway, wait_for

ROOT = Path(__file__).resolve().parents[2]
DELAY_S = 120
INTERVAL_S = 10


class PlannerSubscriber:
    """A paho client that records every message under the hub's prefix."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"planner-{time.time_ns()}"
        )
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"{prefix}#", qos=1)
        self._client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def events(self) -> list[dict[str, Any]]:
        """Decoded messages on the events topic."""
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def retained_on(broker: Mosquitto, topic: str) -> bytes | None:
    """What a fresh subscriber gets as the retained message of a topic (None: nothing)."""
    got: list[bytes] = []
    done = threading.Event()
    probe = f"probe/{time.time_ns()}"

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == probe:
            done.set()
        elif msg.retain:
            got.append(msg.payload)

    subscribed = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.on_subscribe = lambda *args: subscribed.set()
    c.connect(broker.host, broker.port)
    c.subscribe([(topic, 1), (probe, 1)])
    c.loop_start()
    assert subscribed.wait(5), "no SUBACK"
    c.publish(probe, b"x", qos=1)
    done.wait(5)  # the broker delivers retained messages before the later probe
    c.disconnect()
    c.loop_stop()
    return got[0] if got else None


async def test_compressor_failure_raises_on_time_and_reaches_the_planner(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    schema = json.loads((ROOT / "docs/schemas/alert-event.schema.json").read_text())
    room = ColdRoom(seed=11, door_openings_per_h=0, compressor_fails_at_s=600,
                    failure_drift_c_per_min=0.3)  # fmt: skip
    start_ms = time.time_ns() // 1_000_000 - 10 * 3600 * 1000  # device time: 10 h ago
    prefix = "coldchain/v1/hub-test/"
    planner = PlannerSubscriber(mosquitto, prefix)
    with SensorBoardSim(
        {"1": Probe(room, noise_c=0.0, seed=1)},
        board="A1",
        interval_s=INTERVAL_S,
        start_ms=start_ms,
        link_dir=tmp_path,
    ) as board:
        config = hub_config(
            tmp_path,
            profiles={"chilled_fast": {"min_c": 2, "max_c": 8, "alarm_delay_s": DELAY_S,
                                       "hysteresis_c": 0.5}},
            zones=[{"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled_fast"}],
            sensors=[{"id": "cr1-a", "zone": "cold-room-1", "model": "ds18b20",
                      "interval_s": INTERVAL_S}],
            drivers={"serial": [{"name": "board-a", "port": str(board.link_path),
                                 "board": "A1", "probes": {"1": "cr1-a"}}]},
            sinks={
                "influx": {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1},
                "planner": {"host": mosquitto.host, "port": mosquitto.port,
                            "client_id": "gw-planner-test"},
            },
        )  # fmt: skip
        async with running_gateway(config) as gw:
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            # 40 simulated minutes at 10 s: the compressor fails at minute 10 and the room
            # drifts 0.3 °C/min toward ambient, crossing 8 °C some minutes later.
            for _ in range(240):
                await board.send_lines(1)
            await wait_for(lambda: gw.counters.committed == 240, what="240 readings")
            await gw.sop_settled()
            (alert,) = [a for a in gw.alerts.active() if a.rule == "excursion"]
            assert alert.severity == "critical"
            sent = board.sent.valid["1"]
            first_out = next(r for r in sent if r.temp_c > 8.0)
            assert first_out.ts_ms is not None
            assert alert.started_ns == first_out.ts_ms * 1_000_000
            lateness_s = (alert.raised_ns - alert.started_ns) / 1e9
            assert DELAY_S <= lateness_s <= DELAY_S + INTERVAL_S

            room.compressor_fails_at_s = None  # repaired: the compressor cools again
            for _ in range(240):
                await board.send_lines(1)
            await wait_for(
                lambda: not [a for a in gw.alerts.active() if a.rule == "excursion"],
                what="excursion cleared",
            )

            def planner_saw_both() -> bool:
                kinds = [e["type"] for e in planner.events() if e.get("alert_id") == alert.id]
                return kinds == ["alert.raised", "alert.cleared"]

            await wait_for(planner_saw_both, what="planner got raise and clear")
            checkpoint_schema = json.loads(
                (ROOT / "docs/schemas/evidence-checkpoint.schema.json").read_text()
            )
            for event in planner.events():
                if event["type"] == "evidence.checkpoint":  # signed evidence checkpoints
                    jsonschema.validate(event, checkpoint_schema)
                else:
                    jsonschema.validate(event, schema)
            assert any(e["type"] == "evidence.checkpoint" for e in planner.events())
            assert retained_on(mosquitto, f"{prefix}evidence/checkpoint") is not None
            assert retained_on(mosquitto, f"{prefix}alerts/{alert.id}") is None
            status = retained_on(mosquitto, f"{prefix}status")
            assert status is not None
            assert json.loads(status)["state"] in ("online", "degraded")
            await wait_for(
                lambda: len(influx.rows(
                    f"SELECT state FROM alert WHERE alert_id = '{alert.id}'", db)) == 2,
                what="alert points in InfluxDB",
            )  # fmt: skip
    planner.close()
