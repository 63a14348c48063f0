"""Session takeover: the review connected with the planner feed's documented client id.

On a broker without the reference set-up the takeover works (the broker closes our
session, MQTT 5 reason 142), and the gateway says so: a critical ``session_takeover``
alert and a counter. With the reference set-up (``use_username_as_clientid``) another
account cannot take the id at all: the feed stays connected and commands keep arriving.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.localservices import Mosquitto
from tests.conftest import _require
from tests.integration.harness import hub_config, running_gateway, wait_for
from tests.integration.secured_broker import Client, secured_broker

HUB = "hub-test"
PREFIX = f"coldchain/v1/{HUB}/"
DOCUMENTED_ID = f"coldchain-{HUB}-planner"


def _zones() -> list[dict[str, str]]:
    return [{"id": "recv-1", "kind": "receiving"}]


async def _takeover_alerts(gw: Any) -> list[Any]:
    active = await gw.runner.call(gw.alerts.active)
    return [a for a in active if a.rule == "session_takeover"]


async def test_a_takeover_of_the_feeds_session_is_detected_and_alerted(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = hub_config(
        tmp_path,
        zones=_zones(),
        sinks={"planner": {"port": mosquitto.port, "max_backoff_s": 0.5}},
    )
    async with running_gateway(config) as gw:
        await wait_for(lambda: gw.counters.connected.get("planner"), what="feed connected")
        assert gw.planner is not None and gw.planner.client_id == DOCUMENTED_ID
        attacker = Client(mosquitto.port, None, None, client_id=DOCUMENTED_ID)
        with attacker:
            assert await asyncio.to_thread(attacker.connect) == 0

            async def alerted() -> bool:
                return bool(await _takeover_alerts(gw))

            await wait_for(alerted, what="session_takeover alert")
        (alert,) = await _takeover_alerts(gw)
        assert (alert.subject, str(alert.severity)) == (DOCUMENTED_ID, "critical")
        assert gw.counters.dropped["planner:session_taken_over"] >= 1
    assert "already connected, closing old connection" in mosquitto.log_path.read_text()


async def test_with_the_reference_broker_another_account_cannot_take_the_session(
    tmp_path: Path,
) -> None:
    _require(Mosquitto.binary_available(), "mosquitto")
    with secured_broker(tmp_path / "mqtt", ["coldchain-feed", "scanner-01"]) as broker:
        secret = tmp_path / "feed-password"
        secret.write_text(broker.passwords["coldchain-feed"])
        config = hub_config(
            tmp_path,
            hub={"id": HUB},
            zones=_zones(),
            sinks={
                "planner": {
                    "port": broker.port,
                    "username": "coldchain-feed",
                    "password": {"file": str(secret)},
                    "max_backoff_s": 0.5,
                }
            },
        )
        async with running_gateway(config) as gw:
            await wait_for(lambda: gw.counters.connected.get("planner"), what="feed connected")
            # The scanner account tries both the documented id and the feed's username.
            for stolen in (DOCUMENTED_ID, "coldchain-feed"):
                attacker = Client(
                    broker.port, "scanner-01", broker.passwords["scanner-01"], client_id=stolen
                )
                with attacker:
                    assert await asyncio.to_thread(attacker.connect) == 0
                    # A command sent now reaches the gateway: its session was not taken.
                    body = {
                        "shipment": f"SH-{stolen}",
                        "event": "received",
                        "zone": "recv-1",
                        "actor": "dana",
                        "ts_ms": time.time_ns() // 1_000_000,
                    }
                    await asyncio.to_thread(
                        attacker.publish, f"{PREFIX}cmd/custody", json.dumps(body).encode()
                    )
                    await wait_for(
                        lambda s=f"SH-{stolen}": gw.engine.ledger.shipment(s) is not None,
                        what="the command during the attempt",
                    )
            assert gw.counters.reconnects["planner"] == 0
            assert await _takeover_alerts(gw) == []


@pytest.fixture(autouse=True)
def _mosquitto_available() -> None:
    _require(Mosquitto.binary_available(), "mosquitto")
