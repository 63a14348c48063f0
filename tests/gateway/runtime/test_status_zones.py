"""`coldchain status` shows each zone as the engine judges it and fails when the hub is not well."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from gateway.apps.localservices import Mosquitto
from gateway.cli import main
from gateway.config import parse_config
from gateway.core.clock import iso_utc
from gateway.core.model import Delivery, RawSample
from gateway.runtime.daemon import Gateway


async def _run_with_readings(
    tmp_path: Path, broker: Mosquitto
) -> tuple[dict[str, object], float | None]:
    config = parse_config(
        {
            "hub": {"id": "hub-zones"},
            "journal": {"path": str(tmp_path / "journal.db")},
            "zones": [
                {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
                {"id": "dock-1", "kind": "dock"},
            ],
            "sensors": [
                {"id": "cr1-a", "zone": "cold-room-1", "interval_s": 60},
                {"id": "cr1-b", "zone": "cold-room-1", "interval_s": 60},
                {"id": "dock-a", "zone": "dock-1", "interval_s": 60},
            ],
            # The block that lists the sensors (samples come from source "mqtt:t"); it is
            # connected to a real broker, so the hub is online.
            "drivers": {
                "mqtt": [
                    {
                        "name": "t",
                        "port": broker.port,
                        "sensors": ["cr1-a", "cr1-b", "dock-a"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )
    gateway = Gateway(config)  # the real clock: the status must not read as stale
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    async with asyncio.timeout(30):
        while not gateway.counters.connected.get("t"):
            await asyncio.sleep(0.01)
    now = time.time_ns()
    samples = [
        RawSample(sensor="cr1-a", temp_c=4.0, ts_ns=now, received_ns=now, source="mqtt:t"),
        RawSample(sensor="cr1-b", temp_c=9.5, ts_ns=now, received_ns=now, source="mqtt:t"),
    ]
    await gateway.ingest.submit("drv", Delivery(samples=samples))
    async with asyncio.timeout(30):  # committed, observed by the engine, applied
        while gateway.counters.committed < 2:
            await asyncio.sleep(0.01)
        await gateway.engine.settled()
    engine_value = gateway.engine.monitor.zone_temperature("cold-room-1", time.time_ns())
    await gateway.status.refresh()
    status = json.loads((tmp_path / "status.json").read_text())
    stop.set()
    await task
    return status, engine_value


async def test_status_shows_zone_temperature_limits_state_and_sensors(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    status, engine_value = await _run_with_readings(tmp_path, mosquitto)
    zones = {z["id"]: z for z in status["zones"]}  # type: ignore[attr-defined]
    cold = zones["cold-room-1"]
    # The worst sensor, the very value the engine judges (not the mean, 6.75).
    assert engine_value == 9.5
    assert cold["temp_c"] == engine_value
    assert (cold["min_c"], cold["max_c"]) == (2.0, 8.0)
    assert cold["state"] in {"pending", "alarmed"}  # above 8 °C
    sensors = {s["id"]: s for s in cold["sensors"]}
    assert sensors["cr1-b"]["temp_c"] == 9.5
    assert sensors["cr1-a"]["last_seen"] is not None
    assert zones["dock-1"]["state"] == "no profile"
    assert zones["dock-1"]["sensors"][0]["last_seen"] is None
    assert status["state"] == "online"

    path = tmp_path / "status.json"
    path.write_text(json.dumps({**status, "pid": os.getpid(), "at": iso_utc(time.time_ns())}))
    capsys.readouterr()
    assert main(["status", "--status-file", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("zone", "°C now", "limits", "last seen", "cold-room-1", "9.5", "2..8 °C", "ago"):
        assert text in out, text
    assert main(["status", "--status-file", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["zones"][0]["temp_c"] == 9.5


def test_status_exits_1_when_degraded_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = {
        "hub": "hub-x",
        "pid": os.getpid(),
        "at": iso_utc(time.time_ns()),
        "uptime_s": 5,
        "journal": "j.db",
        "counters": {
            "received": {},
            "connected": {},
            "committed": 0,
            "dropped": {},
            "dead_lettered": 0,
            "flagged": {},
            "written": {},
            "quarantined": {},
            "reconnects": {},
            "last_error": {},
        },
        "active_alerts": [
            {
                "id": "excursion-0123456789abcdef",
                "severity": "critical",
                "rule": "excursion",
                "subject": "a-zone-with-a-rather-long-name-that-a-narrow-terminal-would-cut",
            }
        ],
        "state": "degraded",
        "degraded_reasons": ["driver mqtt disconnected"],
    }
    path = tmp_path / "status.json"
    path.write_text(json.dumps(status))
    assert main(["status", "--status-file", str(path)]) == 1
    captured = capsys.readouterr()
    assert "DEGRADED: driver mqtt disconnected" in captured.err
    assert "excursion-0123456789abcdef" in captured.out  # whole, pasteable into alerts ack
    status["state"] = "online"
    path.write_text(json.dumps(status))
    assert main(["status", "--status-file", str(path), "--json"]) == 0
