"""A cold room that warms past its limit raises one alert, journaled and in InfluxDB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import Probe
from gateway.alerts.store import Alert
from gateway.apps.localservices import InfluxDB1
from gateway.cli import main
from tests.integration.harness import hub_config, running_gateway, wait_for


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


EXCURSION_POINTS = "SELECT state, alert_id, subject FROM alert WHERE rule = 'excursion'"


def excursions(gw: Any) -> list[Alert]:
    """Active excursion alerts (a step change also trips the sensor-spike health rule)."""
    return [a for a in gw.alerts.active() if a.rule == "excursion"]


def _config(tmp_path: Path, port: str, influx: InfluxDB1, db: str) -> object:
    return hub_config(
        tmp_path,
        profiles={"fast": {"min_c": 2, "max_c": 8, "alarm_delay_s": 5, "hysteresis_c": 0.5}},
        zones=[{"id": "cold-room-1", "kind": "cold_storage", "profile": "fast"}],
        sensors=[{"id": "cr1-a", "zone": "cold-room-1", "interval_s": 1}],
        drivers={"serial": [{"name": "board-a", "port": port, "board": "A1",
                             "probes": {"1": "cr1-a"}}]},
        sinks={"influx": {"api": "v1", "url": influx.url, "database": db, "max_backoff_s": 1}},
    )  # fmt: skip


async def test_excursion_raises_once_clears_and_reaches_influx(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str], capsys: pytest.CaptureFixture[str]
) -> None:
    influx, db = influx_db
    room = SetRoom(4.0)
    start_ms = time.time_ns() // 1_000_000 - 600_000
    with SensorBoardSim(
        {"1": Probe(room, noise_c=0.0, resolution_c=0.0)},  # type: ignore[arg-type]
        board="A1",
        start_ms=start_ms,
        link_dir=tmp_path,
    ) as board:
        config = _config(tmp_path, str(board.link_path), influx, db)
        async with running_gateway(config) as gw:  # type: ignore[arg-type]
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            await board.send_lines(5)  # 1 line per second of device time, inside the band
            room.temperature_c = 9.5
            await board.send_lines(4)  # out of range for 3 s: below the 5 s delay
            await wait_for(lambda: gw.counters.committed == 9, what="9 readings")
            assert excursions(gw) == []
            await board.send_lines(6)  # now out of range for 9 s
            await wait_for(lambda: len(excursions(gw)) == 1, what="alert raised")
            (alert,) = excursions(gw)
            assert alert.rule == "excursion"
            assert alert.subject == "cold-room-1"
            # 4 -> 9.5 °C in one second is beyond the 5 °C/min rate-of-change limit: the
            # first reading of the step is flagged SPIKE at ingest and skipped by the rules;
            # the next one confirms the new level (docs/sop-semantics.md, spikes).
            first_out_ns = (start_ms + 7 * 1000) * 1_000_000
            assert alert.started_ns == first_out_ns, (
                "starts at the first usable out-of-range reading"
            )
            assert alert.raised_ns - alert.started_ns <= (5 + 1) * 1_000_000_000
            room.temperature_c = 7.8  # inside, but not by the 0.5 hysteresis margin
            await board.send_lines(3)
            await wait_for(lambda: gw.counters.committed == 18, what="18 readings")
            assert len(excursions(gw)) == 1, "no clear inside the hysteresis band"
            room.temperature_c = 5.0
            await board.send_lines(2)
            await wait_for(lambda: excursions(gw) == [], what="alert cleared")
            await wait_for(
                lambda: (
                    len(influx.rows("SELECT state FROM alert WHERE rule = 'excursion'", db)) == 2
                ),
                what="raised and cleared points in InfluxDB",
            )
        rows = influx.rows(
            "SELECT state, alert_id, subject FROM alert WHERE rule = 'excursion'", db
        )
        assert [r["state"] for r in rows] == ["raised", "cleared"]
        assert {r["alert_id"] for r in rows} == {alert.id}

    config_file = tmp_path / "gw.toml"
    config_file.write_text(
        f'[hub]\nid = "hub-test"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
    )
    # The step changes also tripped the sensor-spike rule: list it, acknowledge it.
    assert main(["alerts", "--config", str(config_file)]) == 0
    listed = capsys.readouterr().out
    assert "excursion-" not in listed
    spike_id = listed.split("\t")[0]
    assert spike_id.startswith("sensor_spike-")
    assert main(["alerts", "ack", spike_id, "--by", "alice", "--config", str(config_file)]) == 0
    assert main(["alerts", "--config", str(config_file)]) == 0
    assert "(ack: alice)" in capsys.readouterr().out
    assert main(["alerts", "ack", "nope", "--by", "bob", "--config", str(config_file)]) == 1


async def test_restart_mid_excursion_does_not_raise_twice(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    room = SetRoom(4.0)
    start_ms = time.time_ns() // 1_000_000 - 600_000
    with SensorBoardSim(
        {"1": Probe(room, noise_c=0.0, resolution_c=0.0)},  # type: ignore[arg-type]
        board="A1",
        start_ms=start_ms,
        link_dir=tmp_path,
    ) as board:
        config = _config(tmp_path, str(board.link_path), influx, db)
        room.temperature_c = 11.0
        async with running_gateway(config) as gw:  # type: ignore[arg-type]
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            await board.send_lines(10)
            await wait_for(lambda: len(excursions(gw)) == 1, what="alert raised")
            (before,) = excursions(gw)
        async with running_gateway(config) as gw2:  # type: ignore[arg-type]
            await wait_for(lambda: gw2.counters.connected.get("board-a"), 5, "port reopened")
            await board.send_lines(10)  # still hot: the new detector re-detects
            await wait_for(lambda: gw2.counters.committed == 10, what="10 more readings")
            await gw2.sop_settled()
            assert [a.id for a in excursions(gw2)] == [before.id]
            events = gw2.alerts.events_after(0, 100)
            kinds = [e.kind for _, e in events if e.alert.rule == "excursion"]
            assert kinds == ["raised"], "one raise across the restart"
