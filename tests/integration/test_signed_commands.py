"""Authorised commands end to end: the shipped broker set-up, signed envelopes, a real daemon.

The gateway's planner feed logs in as ``coldchain-feed``; the scanner as ``scanner-01``
(the only account the reference ACL lets write ``cmd/custody``), the planner as
``planner`` (``cmd/ack``). The hub requires signatures. Every refusal comes back on the
``events`` topic as ``command.rejected`` with its code, validated against its schema.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts.store import Severity
from gateway.apps.localservices import Mosquitto
from gateway.cli import main
from gateway.commands.signed import sign_command
from gateway.custody.verify import check_journal
from tests.conftest import _require
from tests.integration.harness import hub_config, running_gateway, wait_for
from tests.integration.secured_broker import Client, SecuredBroker, secured_broker

HUB = "hub-test"
PREFIX = f"coldchain/v1/{HUB}/"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
USERS = ["coldchain-feed", "scanner-01", "planner"]


def _validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


REJECTED = _validator("command-rejected")
ENVELOPE = _validator("signed-command")


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    _require(Mosquitto.binary_available(), "mosquitto")
    with secured_broker(tmp_path / "mqtt", USERS) as secured:
        yield secured


def _public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _config(tmp_path: Path, broker: SecuredBroker) -> Any:
    secret = tmp_path / "feed-password"
    secret.write_text(broker.passwords["coldchain-feed"])
    (tmp_path / "gateway.toml").write_text(
        f'[hub]\nid = "{HUB}"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
    )
    return hub_config(
        tmp_path,
        hub={"id": HUB},
        zones=[{"id": "recv-1", "kind": "receiving"}, {"id": "cold-1", "kind": "cold_storage"}],
        sinks={
            "planner": {
                "port": broker.port,
                "username": "coldchain-feed",
                "password": {"file": str(secret)},
                "max_backoff_s": 0.5,
            }
        },
        commands={"require_signatures": True},
    )


def _enroll(tmp_path: Path, name: str, role: str, key: Ed25519PrivateKey) -> None:
    """Through the CLI, as an operator would."""
    config = tmp_path / "gateway.toml"
    args = ["keys", "--config", str(config), "enroll", name, "--role", role]
    code = main([*args, "--public-key", _public_b64(key)])
    assert code == 0


def _custody(event: str, at_ms: int, actor: str = "dana") -> dict[str, object]:
    zone = "recv-1" if event == "received" else "cold-1"
    body: dict[str, object] = {"shipment": "SH-1", "event": event, "zone": zone, "actor": actor}
    body["ts_ms"] = at_ms
    if event == "received":
        body["profile"] = "chilled"
    return body


class Replies:
    """The scanner's view of ``events``: command.rejected replies, schema-checked."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def rejected(self) -> list[dict[str, Any]]:
        out = []
        for message in list(self.client.messages):
            body = json.loads(message.payload)
            if body.get("type") == "command.rejected":
                REJECTED.validate(body)
                out.append(body)
        return out

    async def code(self, n: int) -> str:
        """The code of the n-th rejection (1-based), once it arrived."""
        await wait_for(lambda: len(self.rejected()) >= n, what=f"rejection {n}")
        return str(self.rejected()[n - 1].get("code"))


async def test_unsigned_forged_future_and_replayed_commands_are_refused_signed_accepted(
    tmp_path: Path, broker: SecuredBroker
) -> None:
    config = _config(tmp_path, broker)
    scanner_key, planner_key, impostor = (Ed25519PrivateKey.generate() for _ in range(3))
    _enroll(tmp_path, "scanner-07", "custody", scanner_key)
    _enroll(tmp_path, "planner-hq", "ack", planner_key)
    assert (tmp_path / "command-keys.json").stat().st_mode & 0o777 == 0o640

    scanner = Client(broker.port, "scanner-01", broker.passwords["scanner-01"])
    planner = Client(broker.port, "planner", broker.passwords["planner"])
    async with running_gateway(config) as gw:
        await wait_for(lambda: gw.counters.connected.get("planner"), what="feed connected")
        with scanner, planner:
            assert await asyncio.to_thread(scanner.connect) == 0
            assert await asyncio.to_thread(planner.connect) == 0
            scanner.mqtt.subscribe(f"{PREFIX}events", qos=1)
            replies = Replies(scanner)
            now_ms = time.time_ns() // 1_000_000
            custody_topic = f"{PREFIX}cmd/custody"

            def send(client: Client, topic: str, body: dict[str, object]) -> Any:
                return asyncio.to_thread(client.publish, topic, json.dumps(body).encode())

            # 1. unsigned
            await send(scanner, custody_topic, _custody("received", now_ms))
            assert await replies.code(1) == "unsigned"
            # 2. signed by another key under the enrolled name
            forged = sign_command(
                impostor, "scanner-07", HUB, "custody", _custody("received", now_ms), now_ms
            )
            await send(scanner, custody_topic, forged)
            assert await replies.code(2) == "bad_signature"
            # 3. a real signature, the command altered afterwards
            good = sign_command(
                scanner_key, "scanner-07", HUB, "custody", _custody("received", now_ms), now_ms
            )
            ENVELOPE.validate(good)
            altered = {**good, "command": str(good["command"]).replace("dana", "mallory")}
            await send(scanner, custody_topic, altered)
            assert await replies.code(3) == "bad_signature"
            # 4. issued an hour ahead of the hub's clock
            ahead = sign_command(
                scanner_key,
                "scanner-07",
                HUB,
                "custody",
                _custody("received", now_ms),
                now_ms + 3_600_000,
            )
            await send(scanner, custody_topic, ahead)
            assert await replies.code(4) == "future_dated"
            # 5. signed for another hub
            elsewhere = sign_command(
                scanner_key,
                "scanner-07",
                "hub-other",
                "custody",
                _custody("received", now_ms),
                now_ms,
            )
            await send(scanner, custody_topic, elsewhere)
            assert await replies.code(5) == "bad_signature"
            # 6. the good one is accepted ...
            await send(scanner, custody_topic, good)
            await wait_for(lambda: gw.engine.ledger.shipment("SH-1") is not None, what="accepted")
            # 7. ... and its copy refused as a replay
            await send(scanner, custody_topic, good)
            assert await replies.code(6) == "replayed"
            # 8. a signed event dated 2099 (the review's shipment lock) is refused
            locked = sign_command(
                scanner_key,
                "scanner-07",
                HUB,
                "custody",
                _custody("put_away", 4_070_908_800_000),
                now_ms,
            )
            await send(scanner, custody_topic, locked)
            await wait_for(lambda: len(replies.rejected()) >= 7, what="future event")
            assert "future_time" in replies.rejected()[6]["reason"]
            assert replies.rejected()[6]["key"] == "scanner-07"

            # Acks: a custody key may not sign them; the planner's may.
            raised, _ = await gw.runner.call(
                gw.alerts.raise_alert, "sensor_stale", "probe-1", Severity("warning"),
                time.time_ns(), time.time_ns(), None, None, "stale", {},
            )  # fmt: skip
            ack = {"alert_id": raised.id, "by": "ops on call", "note": "looking"}
            wrong_role = sign_command(scanner_key, "scanner-07", HUB, "ack", ack, now_ms)
            await send(planner, f"{PREFIX}cmd/ack", wrong_role)
            assert await replies.code(8) == "not_allowed"
            await send(planner, f"{PREFIX}cmd/ack", {"alert_id": raised.id, "by": "x" * 70_000})
            await wait_for(lambda: len(replies.rejected()) >= 9, what="70 KB ack")
            assert "bytes, at most" in replies.rejected()[8]["reason"]
            signed_ack = sign_command(planner_key, "planner-hq", HUB, "ack", ack, now_ms)
            await send(planner, f"{PREFIX}cmd/ack", signed_ack)

            async def acknowledged() -> bool:
                alert = await gw.runner.call(gw.alerts.get, raised.id)
                return alert is not None and alert.acknowledged_by == "ops on call"

            await wait_for(acknowledged, what="signed ack applied")
        alert = await gw.runner.call(gw.alerts.get, raised.id)
        assert alert is not None and alert.details["acknowledged_key"] == "planner-hq"
        history = await gw.runner.call(gw.engine.ledger.history, "SH-1")
        assert [(r.kind, r.actor, r.signer) for r in history] == [
            ("received", "dana", "scanner-07")
        ]
        assert gw.counters.dropped["planner:refused_replayed"] == 1

    # The signer is part of the hashed record: the chain verifies with it.
    result, records, _ = await asyncio.to_thread(check_journal, tmp_path / "journal.db", config)
    assert result.ok, result
    assert [r.signer for r in records] == ["scanner-07"]
