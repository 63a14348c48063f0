"""Handoffs through the running gateway: chained, stamped with the zone temperature,
forwarded to InfluxDB, and `coldchain verify` notices tampering in either copy."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import Probe
from gateway.apps.localservices import InfluxDB1
from gateway.cli import main
from tests.integration.harness import hub_config, running_gateway, wait_for


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


async def test_handoffs_are_chained_forwarded_and_verified(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str], capsys: pytest.CaptureFixture[str]
) -> None:
    influx, db = influx_db
    room = SetRoom(3.5)
    with SensorBoardSim(
        {"1": Probe(room, noise_c=0.0, resolution_c=0.0)},  # type: ignore[arg-type]
        board="A1",
        link_dir=tmp_path,
    ) as board:
        sections = {
            "zones": [
                {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
                {"id": "dock-1", "kind": "dock"},
            ],
            "sensors": [{"id": "cr1-a", "zone": "cold-room-1", "interval_s": 1}],
            "drivers": {"serial": [{"name": "board-a", "port": str(board.link_path),
                                    "board": "A1", "probes": {"1": "cr1-a"}}]},
            "sinks": {"influx": {"api": "v1", "url": influx.url, "database": db,
                                 "max_backoff_s": 1}},
        }  # fmt: skip
        config = hub_config(tmp_path, **sections)
        async with running_gateway(config) as gw:
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            await board.send_lines(3)
            await wait_for(lambda: gw.counters.committed == 3, what="readings")
            now = time.time_ns()
            for i, (kind, zone) in enumerate(
                [("received", "cold-room-1"), ("put_away", "cold-room-1"),
                 ("picked", "cold-room-1"), ("packed", "cold-room-1"), ("staged", "dock-1")]
            ):  # fmt: skip
                body = {"shipment": "SH-9", "event": kind, "zone": zone, "actor": "ana",
                        "ts_ns": now + i * 1_000_000_000}  # fmt: skip
                await gw.engine.apply_custody(json.dumps(body).encode(), "test")
            await wait_for(
                lambda: len(influx.rows("SELECT seq FROM custody", db)) == 5, what="custody"
            )
    rows = influx.rows("SELECT seq, temp_c, event, prev_hash, hash FROM custody", db)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["temp_c"] == pytest.approx(3.5), "zone temperature at handoff"
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))

    config_file = tmp_path / "gw.toml"
    config_file.write_text(
        f'[hub]\nid = "hub-test"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
        '[[zones]]\nid = "cold-room-1"\nkind = "cold_storage"\n'
        '[[zones]]\nid = "dock-1"\nkind = "dock"\n'
        f'[sinks.influx]\napi = "v1"\nurl = "{influx.url}"\ndatabase = "{db}"\n'
    )
    assert main(["verify", "--config", str(config_file), "--source", "both"]) == 0
    capsys.readouterr()

    # Someone "fixes" the temperature at the third handoff in InfluxDB.
    third = influx.rows("SELECT * FROM custody WHERE seq = 3", db)[0]
    influx.write(
        db,
        f"custody,event={third['event']},hub=hub-test,shipment=SH-9,zone={third['zone']}"
        f" temp_c=2.0 {third['time']}",
    )
    assert main(["verify", "--config", str(config_file), "--source", "influx"]) == 1
    out = capsys.readouterr().out
    assert "seq 3" in out

    # And in the journal, someone changes the actor of the first record.
    with sqlite3.connect(tmp_path / "journal.db") as db_conn:
        db_conn.execute("UPDATE custody_events SET actor = 'mallory' WHERE seq = 1")
    assert main(["verify", "--config", str(config_file), "--source", "journal"]) == 1
    assert "seq 1" in capsys.readouterr().out
