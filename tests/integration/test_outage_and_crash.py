"""Durability: an InfluxDB outage is backfilled exactly; a SIGKILLed gateway loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.board import SensorBoardSim
from firmware_sim.node import SensorNodeSim
from gateway.apps.localservices import InfluxDB1, Mosquitto
from gateway.journal.store import Journal
from tests.integration.harness import hub_config, running_gateway, wait_for

OUTAGE_S = float(os.environ.get("COLDCHAIN_TEST_OUTAGE_S", "30"))
PROBES = {"1": "cr1-a", "2": "cr1-b", "3": "cr1-c"}


async def test_influx_outage_is_backfilled_in_order_without_gaps_or_duplicates(
    tmp_path: Path,
) -> None:
    if not InfluxDB1.binary_available():
        pytest.skip("influxd not installed")
    with (
        InfluxDB1(tmp_path / "influx") as influx,
        SensorBoardSim(3, board="A1", link_dir=tmp_path) as board,
    ):
        influx.create_database("outage")
        config = hub_config(
            tmp_path,
            zones=[{"id": "cold-room-1", "kind": "cold_storage"}],
            sensors=[{"id": s, "zone": "cold-room-1"} for s in PROBES.values()],
            drivers={"serial": [{"name": "board-a", "port": str(board.link_path),
                                 "board": "A1", "probes": PROBES}]},
            sinks={"influx": {"api": "v1", "url": influx.url, "database": "outage",
                              "max_backoff_s": 2, "timeout_s": 2}},
        )  # fmt: skip
        async with running_gateway(config) as gw:
            producing = True

            async def produce() -> None:
                while producing:
                    await board.send_lines(3)
                    await asyncio.sleep(0.1)

            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            producer = asyncio.create_task(produce())
            await wait_for(lambda: gw.counters.written["influx"] > 30, what="first writes")
            await asyncio.to_thread(influx.stop)
            down_at = gw.counters.committed
            await asyncio.sleep(OUTAGE_S)
            assert gw.counters.write_failures["influx"] > 0
            backlog = gw.status.snapshot()["sinks"]["influx"]["backlog"]
            assert backlog > 0, "readings wait in the journal while InfluxDB is down"
            assert gw.counters.committed > down_at + 10 * OUTAGE_S, "ingest goes on"
            await asyncio.to_thread(influx.start)
            await asyncio.sleep(2)
            producing = False
            await producer
            sent = board.sent
            await wait_for(
                lambda: gw.counters.committed == sent.total_valid, what="all lines committed"
            )
            await wait_for(
                lambda: influx.count("outage", "reading") == sent.total_valid,
                timeout=60,
                what="backfill complete",
            )
        for channel, sensor in PROBES.items():
            rows = influx.rows(f"SELECT seq FROM reading WHERE sensor = '{sensor}'", "outage")
            seqs = [r["seq"] for r in rows]
            assert seqs == [line.seq for line in sent.valid[channel]], f"gap or dup in {sensor}"


def _write_config(path: Path, journal: Path, broker: Mosquitto, influx_url: str, db: str) -> None:
    devices = ["node-1", "node-2", "node-3"]
    sensors = "\n".join(
        f'[[sensors]]\nid = "{d}"\nzone = "dock-1"\nmodel = "sht3x"\n' for d in devices
    )
    path.write_text(
        f"""
status_interval_s = 0.2

[hub]
id = "hub-kill"

[journal]
path = "{journal}"
commit_interval_ms = 20

[logging]
format = "json"

[[zones]]
id = "dock-1"
kind = "dock"

{sensors}

[[drivers.mqtt]]
name = "nodes"
host = "{broker.host}"
port = {broker.port}
client_id = "gw-kill-test"
sensors = {json.dumps(devices)}

[[drivers.mqtt.subscriptions]]
topic = "sensors/+/telemetry"
sensor_path = "id"
device_topic_segment = 1
seq_path = "seq"

[sinks.influx]
api = "v1"
url = "{influx_url}"
database = "{db}"
max_backoff_s = 1
""",
        encoding="utf-8",
    )


def _start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def test_sigkill_mid_run_loses_nothing_and_forwarding_resumes(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = tmp_path / "gateway.toml"
    journal = tmp_path / "journal.db"
    _write_config(config, journal, mosquitto, influx.url, db)
    log = tmp_path / "gateway.log"
    gateway = _start_gateway(config, log)
    try:
        with SensorNodeSim(
            mosquitto.host, mosquitto.port, ["node-1", "node-2", "node-3"], interval_s=1
        ) as nodes:

            async def publish_for(seconds: float) -> None:
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    await asyncio.to_thread(nodes.publish_round)
                    await asyncio.sleep(0.01)

            def subscribed() -> bool:
                try:
                    status = json.loads((tmp_path / "status.json").read_text())
                except (OSError, ValueError):
                    return False
                return bool(status["counters"]["connected"].get("nodes"))

            await wait_for(subscribed, timeout=20, what="gateway subscribed")
            await publish_for(2.0)
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            committed_before = Journal(journal).last_id()
            assert committed_before > 0
            await publish_for(2.0)  # the broker holds these for the gateway's session
            gateway = _start_gateway(config, log)
            await publish_for(1.0)
            await wait_for(lambda: nodes.pending == 0, what="PUBACKs")
            sent = dict(nodes.sent)
            for device, n in sent.items():
                await wait_for(
                    lambda d=device, n=n: influx.count(db, "reading", f"sensor = '{d}'") == n,
                    timeout=30,
                    what=f"every reading of {device} in InfluxDB",
                )
            after = Journal(journal)
            assert after.last_id() >= committed_before
            assert after.last_id() >= sum(sent.values())
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            code = gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            pytest.fail("gateway did not exit on SIGTERM")
    assert code == 0, log.read_text()[-2000:]
