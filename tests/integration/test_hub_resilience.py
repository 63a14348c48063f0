"""One bad message, a restart under load: the hub keeps recording (issue 10).

Real Mosquitto and InfluxDB (tests/conftest.py fixtures), the gateway in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.node import SensorNodeSim
from gateway.apps.localservices import InfluxDB1, Mosquitto
from gateway.runtime.daemon import Gateway
from tests.integration.harness import hub_config, running_gateway, wait_for
from tests.integration.test_mqtt_end_to_end import DEVICES, mqtt_sections, publish_rounds


def _publish_raw(broker: Mosquitto, topic: str, payload: bytes, qos: int = 1) -> None:
    """One message from a client of its own, waiting for the broker's PUBACK."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="rogue")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_two_to_the_64_among_good_readings_is_dead_lettered_without_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    config = hub_config(
        tmp_path,
        **mqtt_sections(
            mosquitto, {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}
        ),
    )
    poison = json.dumps(
        {"id": "node-1", "ts": 1_767_225_600_000, "temp_c": 4.0, "seq": 2**64}
    ).encode()
    async with running_gateway(config) as gw:
        with SensorNodeSim(mosquitto.host, mosquitto.port, DEVICES, interval_s=1, seed=2) as nodes:
            await wait_for(lambda: gw.counters.connected.get("nodes"), what="subscribed")
            await publish_rounds(nodes, 30)
            await asyncio.to_thread(_publish_raw, mosquitto, "sensors/node-1/telemetry", poison)
            await publish_rounds(nodes, 40)
            good = sum(nodes.sent.values())
            await wait_for(lambda: influx.count(db, "reading") == good, what="every good point")
        assert gw.counters.dropped == {"nodes:out_of_range": 1}
        [letter] = gw.journal.dead_letters()
        assert (letter.reason, letter.payload) == ("out_of_range", poison)
        assert "seq" in letter.detail
    # It was acknowledged: a new gateway on the same session gets the next message, and
    # no redelivered poison before it (one session delivers in order).
    async with running_gateway(config) as gw2:
        await wait_for(lambda: gw2.counters.connected.get("nodes"), what="subscribed again")
        with SensorNodeSim(mosquitto.host, mosquitto.port, ["node-2"], interval_s=1) as late:
            await publish_rounds(late, 1)
        await wait_for(lambda: gw2.counters.committed == 1, what="the late reading")
        assert gw2.counters.dead_lettered == 0
        assert gw2.journal.count("dead_letters") == 1


async def test_sigterm_under_load_leaves_no_duplicate_journal_rows(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sections = mqtt_sections(mosquitto, {"api": "v1", "url": "http://127.0.0.1:9"})
    del sections["sinks"]
    config = hub_config(tmp_path, **sections)
    devices = [f"node-{i}" for i in range(1, 21)]
    sections["drivers"]["mqtt"][0]["sensors"] = devices  # the block lists what it feeds
    config = hub_config(
        tmp_path,
        **{
            **sections,
            "sensors": [{"id": d, "zone": "dock-1", "model": "sht3x"} for d in devices],
        },
    )
    with SensorNodeSim(mosquitto.host, mosquitto.port, devices, interval_s=1, seed=3) as nodes:
        for _ in range(3):
            gw = Gateway(config)
            stop = asyncio.Event()
            task = asyncio.create_task(gw.run(stop))
            await wait_for(lambda g=gw: g.counters.connected.get("nodes"), what="subscribed")
            # Publish in a thread while the gateway commits; stop in the middle of it.
            flood = asyncio.create_task(asyncio.to_thread(_rounds, nodes, 150))
            await wait_for(lambda g=gw: g.counters.committed > 500, what="load")
            stop.set()  # what SIGTERM does
            await asyncio.wait_for(task, 30)
            await flood
        await wait_for(lambda: nodes.pending == 0, what="PUBACKs")
        sent = sum(nodes.sent.values())
    # The last gateway takes what was left in the session.
    async with running_gateway(config) as gw:
        await wait_for(
            lambda: gw.journal.count("readings") >= sent, timeout=60, what="every reading"
        )
        await gw.runner.call(lambda: None)  # the journal thread is idle
    db = sqlite3.connect(tmp_path / "journal.db")
    total = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    distinct = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT sensor, ts_ns FROM readings)")
    assert (total, distinct.fetchone()[0]) == (sent, sent)
    db.close()


def _rounds(nodes: SensorNodeSim, rounds: int) -> None:
    for _ in range(rounds):
        nodes.publish_round()


class RetainedWatcher:
    """A planner-side client that keeps the latest retained payload per topic."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.seen: dict[str, bytes] = {}
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="planner-watch"
        )
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.seen[msg.topic] = msg.payload

    def rules(self) -> list[str]:
        """Rules of the active retained alerts seen (an empty payload removes one)."""
        return [json.loads(p)["rule"] for p in list(self.seen.values()) if p]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "6m") -> Iterator[Path]:
    """A tmpfs of its own (root only): a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the disk-full test fills it)")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Grow a file until the filesystem is full (again); returns it."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    try:
        with filler.open("ab") as f:
            while True:
                f.write(chunk)
                f.flush()
    except OSError:
        pass  # full
    return filler


async def test_a_full_disk_is_a_state_alerted_everywhere_and_recording_resumes(
    tmp_path: Path, mosquitto: Mosquitto, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    with small_tmpfs(tmp_path / "disk") as disk:
        sections = mqtt_sections(
            mosquitto, {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}
        )
        sections["sinks"]["planner"] = {
            "host": mosquitto.host,
            "port": mosquitto.port,
            "client_id": "gw-planner",
            "status_interval_s": 0.5,
        }
        config = hub_config(tmp_path, **sections)
        config = config.model_copy(
            update={"journal": config.journal.model_copy(update={"path": str(disk / "journal.db")})}
        )
        watcher = RetainedWatcher(mosquitto, "coldchain/v1/hub-test/alerts/+")
        try:
            async with running_gateway(config) as gw:
                with SensorNodeSim(
                    mosquitto.host, mosquitto.port, DEVICES, interval_s=1, seed=5
                ) as nodes:
                    await wait_for(lambda: gw.counters.connected.get("nodes"), what="subscribed")
                    await publish_rounds(nodes, 20)
                    await wait_for(lambda: gw.counters.committed == 60, what="first readings")
                    filler = await asyncio.to_thread(fill, disk)

                    async def unwritable() -> bool:
                        # SQLite reuses WAL frames after a checkpoint, so commits succeed now
                        # and then until the file itself must grow; whatever it releases is
                        # taken again here, until the commits fail for good.
                        await asyncio.to_thread(nodes.publish_round)
                        await asyncio.to_thread(fill, disk)
                        return gw.journal_health.failures_in_a_row >= 5

                    await wait_for(unwritable, timeout=60, what="the journal to fail")
                    # No exit; the alert is out on the channels that need no disk.
                    await wait_for(
                        lambda: "journal_unwritable" in watcher.rules(), what="planner alert"
                    )
                    await wait_for(
                        lambda: influx.count(db, "alert", "rule = 'journal_unwritable'") >= 1,
                        what="InfluxDB alert point",
                    )
                    assert any("journal unwritable" in r for r in gw.status.hub_state()[1])
                    await publish_rounds(nodes, 10)  # accepted by the broker, held there
                    sent = sum(nodes.sent.values())
                    assert gw.counters.committed < sent
                    filler.unlink()  # space returns
                    await wait_for(lambda: gw.journal_health.writable, timeout=30, what="recovery")
                    await wait_for(
                        lambda: gw.counters.committed == sent, timeout=30, what="every reading"
                    )
                    await wait_for(
                        lambda: "journal_unwritable" not in watcher.rules(), what="cleared"
                    )
                    await gw.sop_settled()
                    history = await gw.runner.call(gw.alerts.events_after, 0, 100)
                    kinds = [
                        str(e.kind) for _, e in history if e.alert.rule == "journal_unwritable"
                    ]
                    assert kinds[:1] == ["raised"] and kinds[-1:] == ["cleared"]
            rows = sqlite3.connect(disk / "journal.db").execute("SELECT COUNT(*) FROM readings")
            assert rows.fetchone()[0] == sent
        finally:
            watcher.close()
