"""A failing cold room wakes people up, end to end, and the claim report shows who was told.

Serial board on a pty -> gateway -> excursion alert -> notifier -> aiosmtpd and a real HTTP
receiver in this process; InfluxDB real. Readings carry device time (the alarm delay runs
on it); escalation runs on a ManualClock given to the gateway as its notification clock,
so "level 2 at exactly 15 minutes" is checked without waiting 15 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema

from firmware_sim.board import SensorBoardSim
from firmware_sim.thermal import Probe
from gateway.apps.localservices import InfluxDB1, Mosquitto
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.core.clock import NS_PER_S, ManualClock
from gateway.runtime.daemon import Gateway
from tests.gateway.notify.receivers import HttpReceiver, SmtpReceiver
from tests.integration.harness import hub_config, wait_for
from tests.integration.test_compressor_failure import PlannerSubscriber

ROOT = Path(__file__).resolve().parents[2]


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


@contextlib.asynccontextmanager
async def running(config: GatewayConfig, clock: ManualClock) -> AsyncIterator[Gateway]:
    """The gateway on the real clock, its notifications on the test's clock."""
    gateway = Gateway(config, notify_clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
        yield gateway
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def settle(gw: Gateway) -> None:
    """Let the notifier finish a round on the current (test) time."""
    notifier = gw.notifications
    assert notifier is not None
    before = notifier.rounds
    notifier.wake()
    await wait_for(lambda: notifier.rounds > before and notifier.idle, 90, "a notifier round")


async def advance(gw: Gateway, clock: ManualClock, seconds: float) -> None:
    """Move the notification clock and let the notifier act on it."""
    clock.advance(seconds)
    await settle(gw)


async def test_compressor_failure_escalates_ack_stops_it_clear_reaches_all_and_the_report(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str], mosquitto: Mosquitto, capsys: Any
) -> None:
    influx, db = influx_db
    planner = PlannerSubscriber(mosquitto, "coldchain/v1/hub-test/")
    clock = ManualClock(start_ns=time.time_ns())
    t0 = clock.now_ns()
    smtp = SmtpReceiver(clock.now_ns)
    smtp.start()
    hooks = HttpReceiver(clock.now_ns)
    room = SetRoom(4.0)
    start_ms = time.time_ns() // 1_000_000 - 3600_000  # device time: an hour ago
    notify = {
        "group_wait_s": 2,
        "contacts": [
            {"name": "alice", "channels": [{"url": smtp.url("alice@hub.example")},
                                           {"kind": "webhook", "url": hooks.url("/wms")}]},
            {"name": "bob", "channels": [{"url": smtp.url("bob@hub.example")}]},
            {"name": "carol", "channels": [{"url": smtp.url("carol@hub.example")}]},
        ],
        "policies": [{"name": "cold-rooms", "severities": ["critical"],
                      "zones": ["cold-room-1"], "rules": ["excursion"],
                      "levels": [{"delay_s": 0, "contacts": ["alice"]},
                                 {"delay_s": 900, "contacts": ["bob"]},
                                 {"delay_s": 1800, "contacts": ["carol"]}]}],
    }  # fmt: skip
    try:
        with SensorBoardSim(
            {"1": Probe(room, noise_c=0.0, resolution_c=0.0)},  # type: ignore[arg-type]
            board="A1",
            start_ms=start_ms,
            link_dir=tmp_path,
        ) as board:
            config = hub_config(
                tmp_path,
                profiles={"fast": {"min_c": 2, "max_c": 8, "alarm_delay_s": 5,
                                   "hysteresis_c": 0.5}},
                zones=[{"id": "cold-room-1", "kind": "cold_storage", "profile": "fast"}],
                sensors=[{"id": "cr1-a", "zone": "cold-room-1", "interval_s": 1}],
                drivers={"serial": [{"name": "board-a", "port": str(board.link_path),
                                     "board": "A1", "probes": {"1": "cr1-a"}}]},
                sinks={"influx": {"api": "v1", "url": influx.url, "database": db,
                                  "max_backoff_s": 1},
                       "planner": {"host": mosquitto.host, "port": mosquitto.port,
                                   "client_id": "gw-notify-test"}},
                notify=notify,
            )  # fmt: skip
            async with running(config, clock) as gw:
                await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
                received = {"shipment": "SH-1", "event": "received", "zone": "cold-room-1",
                            "actor": "scan-1", "profile": "fast",
                            "ts_ns": (start_ms + 1000) * 1_000_000}  # fmt: skip
                await gw.engine.apply_custody(json.dumps(received).encode(), "test")
                put_away = {**received, "event": "put_away", "ts_ns": (start_ms + 2000) * 1_000_000}
                put_away.pop("profile")
                await gw.engine.apply_custody(json.dumps(put_away).encode(), "test")
                await board.send_lines(5)
                room.temperature_c = 9.5  # the compressor stops
                await board.send_lines(10)
                await wait_for(
                    lambda: [a for a in gw.alerts.active() if a.rule == "excursion"],
                    what="excursion raised",
                )
                (alert,) = [a for a in gw.alerts.active() if a.rule == "excursion"]
                await settle(gw)
                await advance(gw, clock, 2)
                (to_alice,) = smtp.to("alice@hub.example")
                (hook,) = hooks.hooks
                assert to_alice.at_ns == hook.at_ns == t0 + 2 * NS_PER_S
                assert alert.id in to_alice.body and "cold-room-1" in to_alice.subject
                schema = json.loads(
                    (ROOT / "docs/schemas/notification-webhook.schema.json").read_text()
                )
                jsonschema.validate(hook.body, schema)
                code = hook.body["items"][0]["ack_code"]

                await advance(gw, clock, 897)
                assert smtp.to("bob@hub.example") == []
                await advance(gw, clock, 1)  # 900 s after the raise
                (to_bob,) = smtp.to("bob@hub.example")
                assert to_bob.at_ns == t0 + 900 * NS_PER_S

                # Bob takes it from the e-mail's code, on the command line.
                config_file = tmp_path / "gw.toml"
                config_file.write_text(
                    f'[hub]\nid = "hub-test"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
                )
                note = "compressor breaker tripped, reset; technician called"
                argv = ["alerts", "ack", code.lower(), "--by", "bob", "--note", note]
                assert main([*argv, "--config", str(config_file)]) == 0
                await advance(gw, clock, 1)  # the notifier's poll finds the CLI's ack
                await advance(gw, clock, 2)
                for who in ("alice@hub.example", "bob@hub.example"):
                    assert "taken by bob" in smtp.to(who)[-1].body
                    assert note in smtp.to(who)[-1].body
                await advance(gw, clock, 1800)
                assert smtp.to("carol@hub.example") == []  # level 3 stopped by the ack

                room.temperature_c = 4.0  # repaired
                await board.send_lines(5)
                await wait_for(
                    lambda: not [a for a in gw.alerts.active() if a.rule == "excursion"],
                    what="excursion cleared",
                )
                await settle(gw)
                await advance(gw, clock, 2)
                for who in ("alice@hub.example", "bob@hub.example"):
                    assert "ALL CLEAR" in smtp.to(who)[-1].body
                assert hooks.hooks[-1].body["items"][0]["kind"] == "cleared"
                assert smtp.to("carol@hub.example") == []
                for kind, second in (("picked", 28), ("packed", 29), ("handed_to_carrier", 30)):
                    step = {
                        "shipment": "SH-1",
                        "event": kind,
                        "zone": "cold-room-1",
                        "actor": "scan-1",
                        "ts_ns": (start_ms + second * 1000) * 1_000_000,
                    }
                    if kind == "handed_to_carrier":
                        step["carrier"] = "DHL"
                    await gw.engine.apply_custody(json.dumps(step).encode(), "test")
                await wait_for(
                    lambda: influx.count(db, "notification", "result = 'sent'") == 9,
                    what="the attempts in InfluxDB",
                )
                # The record on the planner feed.
                attempt_schema = json.loads(
                    (ROOT / "docs/schemas/notification-attempt.schema.json").read_text()
                )

                def attempts_on_feed() -> list[dict[str, Any]]:
                    return [e for e in planner.events() if e.get("type") == "notification.attempt"]

                def sent_on_feed() -> int:
                    return len([e for e in attempts_on_feed() if e["result"] == "sent"])

                await wait_for(lambda: sent_on_feed() == 9, what="attempts on the planner feed")
                for event in attempts_on_feed():
                    jsonschema.validate(event, attempt_schema)
                    assert event["alert_id"] in {alert.id} or event["result"] in {"unrouted"}

        status = json.loads((tmp_path / "status.json").read_text())
        assert status["notifications"]["sent"] >= 3  # outbox rows by state, no URLs
        assert "mailto" not in json.dumps(status["notifications"])

        # The record on the command line.
        capsys.readouterr()
        assert main(["alerts", "show", alert.id, "--config", str(config_file)]) == 0
        shown = capsys.readouterr().out
        assert "bob via mailto" in shown and "escalated L2" in shown
        assert "acknowledged by bob at" in shown and note in shown
        assert "cleared at" in shown

        # The claim report, from the journal and from InfluxDB.
        trace_cfg = tmp_path / "trace.toml"
        trace_cfg.write_text(
            config_file.read_text()
            + "[profiles.fast]\nmin_c = 2\nmax_c = 8\nalarm_delay_s = 5\nhysteresis_c = 0.5\n"
            + '[[zones]]\nid = "cold-room-1"\nkind = "cold_storage"\nprofile = "fast"\n'
            + '[[sensors]]\nid = "cr1-a"\nzone = "cold-room-1"\ninterval_s = 1\n'
            + f'[sinks.influx]\napi = "v1"\nurl = "{influx.url}"\ndatabase = "{db}"\n'
        )
        trace_schema = json.loads((ROOT / "docs/schemas/trace-summary.schema.json").read_text())
        for source in ("journal", "influx"):
            out = tmp_path / f"reports-{source}"
            argv = ["trace", "SH-1", "--config", str(trace_cfg), "--source", source,
                    "--out", str(out), "--quiet"]  # fmt: skip
            assert main(argv) == 0
            summary = json.loads((out / "trace-SH-1.json").read_text())
            jsonschema.validate(summary, trace_schema)
            (alarm,) = [a for a in summary["alarms"] if a["rule"] == "excursion"]
            assert alarm["acknowledged_by"] == "bob"
            assert alarm["ack_note"] == note
            told = [(n["contact"], n["channel"], n["kind"]) for n in alarm["notifications"]
                    if n["result"] == "sent"]  # fmt: skip
            assert ("alice", "mailto", "raised") in told
            assert ("alice", "webhook", "raised") in told
            assert ("bob", "mailto", "escalated") in told
            assert ("bob", "mailto", "acknowledged") in told
            assert ("alice", "mailto", "cleared") in told
            assert not [t for t in told if t[0] == "carol"]
            assert (out / "trace-SH-1.pdf").stat().st_size > 0
    finally:
        planner.close()
        smtp.stop()
        hooks.close()
