"""`coldchain status` reads the daemon's status file and shows its counters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
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
        }
    )
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    sample = RawSample(sensor="s1", temp_c=4.0, ts_ns=1, received_ns=1, source="t")
    ghost = RawSample(sensor="ghost", temp_c=4.0, ts_ns=1, received_ns=1, source="t")
    await gateway.ingest.submit("drv", Delivery(samples=[sample, sample, ghost]))
    stop.set()
    await task

    status = json.loads((tmp_path / "status.json").read_text())
    assert status["counters"]["committed"] == 2
    assert status["counters"]["dropped"] == {"drv:unknown_sensor": 1}

    assert main(["status", "--status-file", str(tmp_path / "status.json")]) == 0
    out = capsys.readouterr().out
    assert "hub-status" in out
    assert "drv:unknown_sensor" in out
    assert main(["status", "--status-file", str(tmp_path / "missing.json")]) == 1
