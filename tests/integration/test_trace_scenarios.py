"""Claim reports from a simulated hub: serial boards on ptys -> gateway -> real InfluxDB ->
`coldchain trace`. A clean shipment is accepted, one left on a warm dock past its budget
is rejected for it, one whose zone sensor went silent is sent to review with the gap."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import Probe
from gateway.apps.localservices import InfluxDB1
from gateway.cli import main
from tests.integration.harness import hub_config, running_gateway, wait_for

MIN_MS = 60_000


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


def _custody(start_ms: int) -> list[dict[str, Any]]:
    def ev(shipment: str, kind: str, zone: str, minute: float, **extra: str) -> dict[str, Any]:
        ts = (start_ms + round(minute * MIN_MS)) * 1_000_000
        return {"shipment": shipment, "event": kind, "zone": zone, "actor": "scan-1",
                "ts_ns": ts, **extra}  # fmt: skip

    return [
        ev("SH-OK", "received", "cold-room-1", 1, profile="chilled"),
        ev("SH-OK", "put_away", "cold-room-1", 2),
        ev("SH-OK", "picked", "cold-room-1", 30),
        ev("SH-OK", "packed", "cold-room-1", 31),
        ev("SH-OK", "staged", "dock-1", 38),
        ev("SH-OK", "handed_to_carrier", "dock-1", 40, carrier="DHL"),
        ev("SH-WARM", "received", "cold-room-1", 1, profile="chilled"),
        ev("SH-WARM", "staged", "dock-1", 10),
        ev("SH-WARM", "handed_to_carrier", "dock-1", 90, carrier="DHL"),
        ev("SH-GAP", "received", "cold-room-2", 1, profile="chilled"),
        ev("SH-GAP", "put_away", "cold-room-2", 2),
        ev("SH-GAP", "picked", "cold-room-2", 58),
        ev("SH-GAP", "packed", "cold-room-2", 59),
        ev("SH-GAP", "handed_to_carrier", "cold-room-2", 60, carrier="UPS"),
    ]


async def test_accept_reject_and_review_from_a_simulated_hub(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    start_ms = time.time_ns() // 1_000_000 - 3 * 3600 * 1000  # device time: 3 h ago
    cold, warm, cold2 = SetRoom(4.0), SetRoom(20.0), SetRoom(3.5)
    board_a = SensorBoardSim(
        {"1": Probe(cold, seed=1), "2": Probe(warm, seed=2)},
        board="A1", interval_s=60, start_ms=start_ms, link_dir=tmp_path,
    )  # fmt: skip
    board_b = SensorBoardSim(
        {"1": Probe(cold2, seed=3)},
        board="B1", interval_s=60, start_ms=start_ms, link_dir=tmp_path,
    )  # fmt: skip
    sensors = {"cr1-a": "cold-room-1", "dock-a": "dock-1", "cr2-a": "cold-room-2"}
    zones = [
        {"id": "cold-room-1", "kind": "cold_storage", "profile": "chilled"},
        {"id": "dock-1", "kind": "dock"},
        {"id": "cold-room-2", "kind": "cold_storage", "profile": "chilled"},
    ]
    config = hub_config(
        tmp_path,
        zones=zones,
        sensors=[{"id": s, "zone": z, "model": "ds18b20", "interval_s": 60}
                 for s, z in sensors.items()],
        drivers={"serial": [
            {"name": "board-a", "port": str(board_a.link_path), "board": "A1",
             "probes": {"1": "cr1-a", "2": "dock-a"}},
            {"name": "board-b", "port": str(board_b.link_path), "board": "B1",
             "probes": {"1": "cr2-a"}},
        ]},
        sinks={"influx": {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}},
    )  # fmt: skip
    with board_a, board_b:
        async with running_gateway(config) as gw:
            await wait_for(
                lambda: (
                    gw.counters.connected.get("board-a") and gw.counters.connected.get("board-b")
                ),
                what="ports opened",
            )
            await board_a.send_lines(2 * 100)  # 100 simulated minutes of both probes
            await board_b.send_lines(20)  # cold-room-2's probe dies after 20 minutes
            for body in _custody(start_ms):
                await gw.engine.apply_custody(json.dumps(body).encode(), "test")
            await wait_for(lambda: gw.counters.committed == 220, what="all readings")
            await wait_for(
                lambda: (
                    influx.count(db, "reading") == 220
                    and len(influx.rows("SELECT seq FROM custody", db)) == 14
                ),
                what="readings and custody in InfluxDB",
            )

    config_file = tmp_path / "trace.toml"
    config_file.write_text(
        f'[hub]\nid = "hub-test"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
        + "".join(
            f'[[zones]]\nid = "{z["id"]}"\nkind = "{z["kind"]}"\n'
            + (f'profile = "{z["profile"]}"\n' if "profile" in z else "")
            for z in zones
        )
        + "".join(
            f'[[sensors]]\nid = "{s}"\nzone = "{z}"\ninterval_s = 60\n' for s, z in sensors.items()
        )
        + f'[sinks.influx]\napi = "v1"\nurl = "{influx.url}"\ndatabase = "{db}"\n'
    )
    reports = tmp_path / "reports"
    summaries = {}
    for shipment in ("SH-OK", "SH-WARM", "SH-GAP"):
        code = main(["trace", shipment, "--config", str(config_file), "--source", "influx",
                     "--out", str(reports), "--quiet"])  # fmt: skip
        assert code == 0
        summaries[shipment] = json.loads((reports / f"trace-{shipment}.json").read_text())

    ok, warm, gap = summaries["SH-OK"], summaries["SH-WARM"], summaries["SH-GAP"]
    assert ok["verdict"] == "accept", ok["reasons"]
    assert warm["verdict"] == "reject"
    assert any(r["code"].startswith("budget") for r in warm["reasons"]), warm["reasons"]
    assert gap["verdict"] == "review", gap["reasons"]
    assert any(r["code"] == "data_gap" for r in gap["reasons"]), gap["reasons"]
    (first_gap,) = gap["gaps"]
    last_reading_ms = start_ms + 20 * MIN_MS  # board B's 20th and last line
    assert first_gap["zone"] == "cold-room-2"
    # the last reading stands for its max gap (3 x its interval), then the time is unknown
    assert abs(_ms(first_gap["start"]) - last_reading_ms - 3 * MIN_MS) <= MIN_MS
    assert _ms(first_gap["end"]) == start_ms + 60 * MIN_MS  # handed over: custody ends
    assert (reports / "trace-SH-WARM.pdf").stat().st_size > 0


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
