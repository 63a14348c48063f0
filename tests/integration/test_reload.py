"""SIGHUP: a broken config is refused and logged, a valid one is applied, nothing is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.node import SensorNodeSim
from gateway.apps.localservices import InfluxDB1, Mosquitto
from tests.integration.harness import wait_for

DEVICES = ["node-1", "node-2", "node-3"]


def _config_text(
    journal: Path, broker: Mosquitto, influx: InfluxDB1, db: str, sensors: list[str]
) -> str:
    blocks = "\n".join(
        f'[[sensors]]\nid = "{s}"\nzone = "dock-1"\nmodel = "sht3x"\n' for s in sensors
    )
    return f"""
status_interval_s = 0.2

[hub]
id = "hub-reload"

[journal]
path = "{journal}"

[logging]
format = "json"

[[zones]]
id = "dock-1"
kind = "dock"

{blocks}

[[drivers.mqtt]]
name = "nodes"
host = "{broker.host}"
port = {broker.port}
client_id = "gw-reload-test"
sensors = {json.dumps(sensors)}

[[drivers.mqtt.subscriptions]]
topic = "sensors/+/telemetry"
sensor_path = "id"
device_topic_segment = 1
seq_path = "seq"

[sinks.influx]
api = "v1"
url = "{influx.url}"
database = "{db}"
max_backoff_s = 1
"""


def _connected(status_file: Path) -> bool:
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return False
    return bool(status["counters"]["connected"].get("nodes"))


async def test_sighup_refuses_broken_config_applies_valid_one_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = tmp_path / "gateway.toml"
    journal = tmp_path / "journal.db"
    log = tmp_path / "gateway.log"
    config.write_text(_config_text(journal, mosquitto, influx, db, DEVICES[:2]))
    with log.open("ab") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for(lambda: _connected(tmp_path / "status.json"), what="daemon subscribed")
        with SensorNodeSim(mosquitto.host, mosquitto.port, DEVICES, interval_s=1) as nodes:

            async def publish(rounds: int) -> None:
                for _ in range(rounds):
                    await asyncio.to_thread(nodes.publish_round)
                    await asyncio.sleep(0.01)

            await publish(20)
            # node-3 is not configured yet: its readings are dead-lettered, not lost.
            config.write_text("[hub]\nid = 'hub reload'\n[journal]\ncommit_interval_ms = 0\n")
            daemon.send_signal(signal.SIGHUP)
            await wait_for(lambda: "reload refused" in log.read_text(), what="refusal logged")
            await publish(20)
            text = log.read_text()
            assert "hub.id" in text
            assert "journal.commit_interval_ms" in text
            assert daemon.poll() is None, "the daemon keeps running on the old config"

            (tmp_path / "status.json").unlink()
            config.write_text(_config_text(journal, mosquitto, influx, db, DEVICES))
            daemon.send_signal(signal.SIGHUP)
            await wait_for(lambda: _connected(tmp_path / "status.json"), what="reloaded")
            await publish(20)
            await wait_for(lambda: nodes.pending == 0, what="PUBACKs")
            sent = dict(nodes.sent)
        for device in DEVICES[:2]:
            await wait_for(
                lambda d=device: influx.count(db, "reading", f"sensor = '{d}'") == sent[d],
                timeout=30,
                what=f"every reading of {device} across both reloads",
            )
        # node-3 readings sent after the valid reload are stored as readings.
        await wait_for(
            lambda: influx.count(db, "reading", "sensor = 'node-3'") >= 20,
            what="the new sensor applied",
        )
        # `coldchain status` against the running daemon shows its live figures.
        await wait_for(
            lambda: json.loads((tmp_path / "status.json").read_text())["counters"]["committed"] > 0,
            what="live status",
        )
        status = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        for text in ("hub-reload", "readings/s", "received  nodes (up)", "backlog   influx"):
            assert text in status.stdout, status.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            pytest.fail("daemon did not stop on SIGTERM")
    assert code == 0, log.read_text()[-2000:]
