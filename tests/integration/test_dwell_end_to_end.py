"""Custody in over MQTT and the CLI; a staged shipment left on the dock alarms on time.

The gateway runs on a ManualClock: the test moves time, nothing waits for real minutes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.apps.localservices import Mosquitto
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.core.clock import ManualClock, iso_utc
from gateway.runtime.daemon import Gateway
from tests.integration.harness import hub_config, wait_for

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "coldchain/v1/hub-test/"
MIN_NS = 60 * 1_000_000_000


def _config(tmp_path: Path, broker: Mosquitto) -> GatewayConfig:
    return hub_config(
        tmp_path,
        zones=[
            {"id": "inbound", "kind": "receiving"},
            {"id": "dock-1", "kind": "dock"},
        ],
        sinks={"planner": {"host": broker.host, "port": broker.port, "client_id": "gw-dwell"}},
    )


class Planner:
    """Collects the events stream and publishes commands."""

    def __init__(self, broker: Mosquitto) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="planner-dwell")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"{PREFIX}events", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.events.append(json.loads(msg.payload))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Events of one type."""
        with self._lock:
            return [e for e in self.events if e["type"] == kind]

    def custody(self, body: dict[str, Any]) -> None:
        """Send a scanner's custody command."""
        self.client.publish(f"{PREFIX}cmd/custody", json.dumps(body), qos=1).wait_for_publish(5)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


async def test_staged_and_never_handed_over_alarms_at_the_deadline(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = json.loads((ROOT / "docs/schemas/alert-event.schema.json").read_text())
    clock = ManualClock()
    t0 = clock.now_ns()
    config = _config(tmp_path, mosquitto)
    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    planner = Planner(mosquitto)
    try:
        await wait_for(lambda: gateway.counters.connected.get("planner"), what="feed up")
        planner.custody(
            {"shipment": "SH-1", "event": "received", "zone": "inbound", "actor": "ana",
             "ts_ns": t0, "profile": "chilled"}
        )  # fmt: skip
        planner.custody(
            {"shipment": "SH-1", "event": "staged", "zone": "dock-1", "actor": "ana",
             "ts_ns": t0 + 2 * MIN_NS}
        )  # fmt: skip
        planner.custody({"shipment": "SH-1", "event": "teleported"})  # malformed
        await wait_for(lambda: len(planner.of_type("command.rejected")) == 1, what="rejection")
        await wait_for(
            lambda: (
                gateway.engine.ledger.shipment("SH-1") is not None
                and gateway.engine.ledger.shipment("SH-1").kind == "staged"
            ),  # type: ignore[union-attr]
            what="staged recorded",
        )
        staged_at = t0 + 2 * MIN_NS

        # 15:59 after staging: nothing yet. The rule warns at 80 % of 20 min = 16:00.
        clock.advance((staged_at + 16 * MIN_NS - 1 - clock.now_ns()) / 1e9)
        await gateway.engine.tick()
        assert [a for a in gateway.alerts.active() if a.subject == "SH-1"] == []
        clock.advance(1e-9)
        await gateway.engine.tick()
        (warn,) = [a for a in gateway.alerts.active() if a.subject == "SH-1"]
        assert (warn.severity, warn.raised_ns) == ("warning", staged_at + 16 * MIN_NS)
        clock.advance(4 * 60)
        await gateway.engine.tick()
        (violated,) = [a for a in gateway.alerts.active() if a.subject == "SH-1"]
        assert violated.id == warn.id
        assert violated.severity == "critical"

        await wait_for(lambda: len(planner.of_type("alert.escalated")) == 1, what="escalation")
        for event in planner.events:
            if event["type"].startswith("alert."):
                jsonschema.validate(event, schema)
        raised = planner.of_type("alert.raised")
        assert [e["subject"] for e in raised] == ["SH-1"]

        # The carrier arrives: a CLI handoff through the journal inbox resolves the alert.
        # Its time is the test's clock: one far ahead of the hub's would be future_time.
        config_file = tmp_path / "gw.toml"
        config_file.write_text(
            f'[hub]\nid = "hub-test"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
            '[[zones]]\nid = "inbound"\nkind = "receiving"\n'
            '[[zones]]\nid = "dock-1"\nkind = "dock"\n'
        )
        code = main(
            ["handoff", "SH-1", "handed_to_carrier", "--zone", "dock-1", "--by", "bo",
             "--carrier", "DHL", "--wait", "0", "--config", str(config_file),
             "--at", iso_utc(clock.now_ns())]
        )  # fmt: skip
        assert code == 0
        assert "queued" in capsys.readouterr().out
        # A scan that makes no sense (a handed-over shipment picked again) is refused.
        code = main(
            ["handoff", "SH-1", "picked", "--zone", "dock-1", "--by", "bo",
             "--wait", "0", "--config", str(config_file), "--at", iso_utc(clock.now_ns())]
        )  # fmt: skip
        assert code == 0
        clock.advance(60)
        await gateway.engine.tick()
        assert [a for a in gateway.alerts.active() if a.subject == "SH-1"] == []
        await wait_for(lambda: len(planner.of_type("alert.cleared")) == 1, what="cleared")
        rejected_schema = json.loads(
            (ROOT / "docs/schemas/custody-rejected.schema.json").read_text()
        )
        await wait_for(
            lambda: len(planner.of_type("custody.rejected")) == 2, what="custody exceptions"
        )
        rejections = planner.of_type("custody.rejected")
        for event in rejections:
            jsonschema.validate(event, rejected_schema)
        assert [(e["source"], e["reason"]) for e in rejections] == [
            ("mqtt", "malformed"),
            ("cli", "invalid_transition"),
        ]
        assert gateway.engine.ledger.shipment("SH-1").kind == "handed_to_carrier"  # type: ignore[union-attr]
    finally:
        planner.close()
        stop.set()
        await task
