"""`coldchain status` reads the daemon's status file and shows its counters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.apps.localservices import free_port
from gateway.cli import main
from gateway.config import parse_config
from gateway.core.clock import ManualClock
from gateway.core.model import Delivery, RawSample
from gateway.runtime.daemon import Gateway


async def test_status_shows_counters_of_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        {
            "hub": {"id": "hub-status"},
            "journal": {"path": str(tmp_path / "journal.db")},
            "zones": [{"id": "cr1", "kind": "cold_storage"}],
            "sensors": [{"id": "s1", "zone": "cr1"}],
            # Listed so its readings are accepted; nothing answers on the port, and the
            # samples below are handed to the ingest directly.
            "drivers": {
                "mqtt": [
                    {
                        "name": "drv",
                        "port": free_port(),
                        "sensors": ["s1"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    sample = RawSample(sensor="s1", temp_c=4.0, ts_ns=1, received_ns=1, source="mqtt:drv")
    later = RawSample(sensor="s1", temp_c=4.0, ts_ns=2, received_ns=2, source="mqtt:drv")
    ghost = RawSample(sensor="ghost", temp_c=4.0, ts_ns=1, received_ns=1, source="mqtt:drv")
    # The copy of sample is a redelivery: skipped and counted, not committed.
    await gateway.ingest.submit("drv", Delivery(samples=[sample, later, sample, ghost]))
    stop.set()
    await task

    status = json.loads((tmp_path / "status.json").read_text())
    assert status["counters"]["committed"] == 2
    assert status["counters"]["dropped"] == {"drv:unknown_sensor": 1}
    assert status["counters"]["duplicates"] == {"drv": 1}

    assert main(["status", "--status-file", str(tmp_path / "status.json")]) == 0
    out = capsys.readouterr().out
    assert "hub-status" in out
    assert "drv:unknown_sensor" in out
    assert main(["status", "--status-file", str(tmp_path / "missing.json")]) == 1


async def test_status_projects_disk_writes_and_card_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        {
            "hub": {"id": "hub-wear"},
            "journal": {"path": str(tmp_path / "journal.db"), "card_endurance_tb": 4},
            "zones": [{"id": "cr1", "kind": "cold_storage"}],
            "sensors": [{"id": "s1", "zone": "cr1"}],
            "drivers": {
                "mqtt": [
                    {
                        "name": "drv",
                        "port": free_port(),
                        "sensors": ["s1"],
                        "subscriptions": [{"topic": "s/+", "sensor_topic_segment": 1}],
                    }
                ]
            },
        }
    )
    clock = ManualClock()
    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    await gateway.status.refresh()  # the first sample of the wear meter
    sample = RawSample(sensor="s1", temp_c=4.0, ts_ns=1, received_ns=1, source="mqtt:drv")
    await gateway.ingest.submit("drv", Delivery(samples=[sample]))
    await gateway.ingest.close()  # commits now (an fsync and its pages: bytes written)
    clock.advance(10)
    await gateway.status.refresh()
    stop.set()
    await task

    wear = json.loads((tmp_path / "status.json").read_text())["disk_writes"]
    assert wear["bytes_per_s"] >= 0  # 0 on a tmpfs, which counts no block writes
    assert wear["card_endurance_tb"] == 4
    assert set(wear) >= {"bytes_per_reading", "gb_per_day", "card_years"}
    # Fresh (just written by a live pid), but its driver never connected: degraded, 1.
    assert main(["status", "--status-file", str(tmp_path / "status.json")]) == 1
    captured = capsys.readouterr()
    assert "DEGRADED" in captured.err
    out = captured.out
    assert "disk writes" in out
    assert "4 TBW card lasts" in out
