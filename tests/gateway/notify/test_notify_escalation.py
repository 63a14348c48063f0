"""Escalation against real receivers (aiosmtpd, an HTTP server), time on a ManualClock.

The webhook payloads are validated against docs/schemas/notification-webhook.schema.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.alerts.store import Severity
from gateway.core.clock import NS_PER_S, ManualClock
from tests.gateway.notify.receivers import HttpReceiver, SmtpReceiver
from tests.gateway.notify.rig import notify_config, running

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs/schemas/notification-webhook.schema.json").read_text())
TOKEN = "wms-token-s3cr3t-value"


def three_levels(smtp: SmtpReceiver, http: HttpReceiver, **policy: Any) -> dict[str, Any]:
    """alice (e-mail + webhook) at once, bob after 15 min, carol after 30 min."""
    return {
        "group_wait_s": 2,
        "contacts": [
            {"name": "alice", "channels": [
                {"url": smtp.url("alice@hub.example")},
                {"kind": "webhook", "url": http.url("/wms"),
                 "headers": {"Authorization": "Bearer {token}"},
                 "secrets": {"token": {"env": "WMS_TOKEN"}}},
            ]},
            {"name": "bob", "channels": [{"url": smtp.url("bob@hub.example")}]},
            {"name": "carol", "channels": [{"url": smtp.url("carol@hub.example")}]},
        ],
        "policies": [{
            "name": "critical", "severities": ["critical"],
            "levels": [{"delay_s": 0, "contacts": ["alice"]},
                       {"delay_s": 900, "contacts": ["bob"]},
                       {"delay_s": 1800, "contacts": ["carol"]}],
            **policy,
        }],
    }  # fmt: skip


async def test_levels_on_time_ack_stops_escalation_and_clear_reaches_everyone(
    tmp_path: Path,
    clock: ManualClock,
    smtp: SmtpReceiver,
    http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WMS_TOKEN", TOKEN)
    config = notify_config(tmp_path, three_levels(smtp, http_receiver))
    t0 = clock.now_ns()
    async with running(config, clock) as rig:
        alert = await rig.raise_alert()
        await rig.settle()
        assert smtp.mails == [] and http_receiver.hooks == []  # the storm window is open
        await rig.advance(2)
        (mail,) = smtp.to("alice@hub.example")
        (hook,) = http_receiver.hooks
        assert mail.at_ns == hook.at_ns == t0 + 2 * NS_PER_S
        assert "ALERT [CRITICAL] excursion on cold-room-1" in mail.body
        code = await rig.runner.call(rig.notifier.store.code_for, alert.id)
        assert code is not None and f"coldchain alerts ack {code}" in mail.body
        # One message per contact channel, each with its own stable id.
        assert {mail.headers["X-Coldchain-Message-Id"], hook.body["id"]} == {
            "hub-test-n1",
            "hub-test-n2",
        }
        assert hook.headers["Authorization"] == f"Bearer {TOKEN}"
        assert hook.headers["Idempotency-Key"] == hook.body["id"]
        jsonschema.validate(hook.body, SCHEMA)
        assert hook.body["items"][0]["ack_code"] == code

        await rig.advance(900 - 2 - 1)
        assert smtp.to("bob@hub.example") == []
        await rig.advance(1)
        (to_bob,) = smtp.to("bob@hub.example")
        assert to_bob.at_ns == t0 + 900 * NS_PER_S  # exactly the configured delay
        assert "(level 2)" in to_bob.body

        await rig.advance(60)
        await rig.ack(alert.id, "bob", "breaker reset, technician on the way")
        await rig.advance(2)
        for who in ("alice@hub.example", "bob@hub.example"):
            last = smtp.to(who)[-1]
            assert "ACKNOWLEDGED" in last.body
            assert "taken by bob" in last.body
            assert "breaker reset, technician on the way" in last.body
        ack_hook = http_receiver.hooks[-1].body
        jsonschema.validate(ack_hook, SCHEMA)
        assert ack_hook["items"][0]["kind"] == "acknowledged"
        assert ack_hook["items"][0]["acknowledged_by"] == "bob"
        assert ack_hook["items"][0]["note"] == "breaker reset, technician on the way"

        await rig.advance(3600)
        assert smtp.to("carol@hub.example") == []  # level 3 never fired

        await rig.clear(alert)
        await rig.advance(2)
        for who in ("alice@hub.example", "bob@hub.example"):
            assert "ALL CLEAR" in smtp.to(who)[-1].body
        assert http_receiver.hooks[-1].body["items"][0]["kind"] == "cleared"
        assert smtp.to("carol@hub.example") == []
        assert len(smtp.to("alice@hub.example")) == 3  # alert, ack notice, all-clear
        assert len(smtp.to("bob@hub.example")) == 3
        assert len(http_receiver.hooks) == 3

        history = await rig.runner.call(rig.notifier.store.history, alert.id)
        sent = [(a.contact, a.channel, a.kind) for a in history if a.result == "sent"]
        assert sent == [
            ("alice", "mailto", "raised"),
            ("alice", "webhook", "raised"),
            ("bob", "mailto", "escalated"),
            ("alice", "mailto", "acknowledged"),
            ("alice", "webhook", "acknowledged"),
            ("bob", "mailto", "acknowledged"),
            ("alice", "mailto", "cleared"),
            ("alice", "webhook", "cleared"),
            ("bob", "mailto", "cleared"),
        ] or sorted(sent) == sorted(
            [
                ("alice", "mailto", "raised"),
                ("alice", "webhook", "raised"),
                ("bob", "mailto", "escalated"),
                ("alice", "mailto", "acknowledged"),
                ("alice", "webhook", "acknowledged"),
                ("bob", "mailto", "acknowledged"),
                ("alice", "mailto", "cleared"),
                ("alice", "webhook", "cleared"),
                ("bob", "mailto", "cleared"),
            ]
        )
        # The token went out in the request and nowhere else.
        dump = "\n".join(rig.journal.connection.iterdump())
        assert TOKEN not in dump


async def test_storm_of_30_alerts_is_one_message_per_contact(
    tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver, http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("WMS_TOKEN", TOKEN)
    config = notify_config(tmp_path, three_levels(smtp, http_receiver))
    async with running(config, clock) as rig:
        for i in range(30):  # a power cut: 30 sensors' alerts within one second
            await rig.raise_alert("sensor_stale", f"probe-{i:02d}", Severity.CRITICAL,
                                  f"sensor probe-{i:02d} silent")  # fmt: skip
            clock.advance(1 / 30)
        await rig.advance(2)
        (mail,) = smtp.to("alice@hub.example")
        (hook,) = http_receiver.hooks
        assert len(hook.body["items"]) == 30
        assert mail.body.count("ALERT [CRITICAL] sensor_stale") == 30
        assert "30 alert notices" in mail.subject
        # Level 2 of the storm is one message for bob, too.
        await rig.advance(900)
        (to_bob,) = smtp.to("bob@hub.example")
        assert to_bob.body.count("(level 2)") == 30


async def test_quiet_hours_hold_a_warning_until_they_end_but_not_a_critical(
    tmp_path: Path, smtp: SmtpReceiver
) -> None:
    # 2026-01-01 is a Thursday; 22:30 local in Lisbon (UTC+0 in winter).
    clock = ManualClock(start_ns=1_767_306_600 * NS_PER_S)  # 2026-01-01T22:30:00Z
    notify = {
        "group_wait_s": 2,
        "contacts": [{"name": "alice", "channels": [{"url": smtp.url("alice@hub.example")}]}],
        "policies": [{
            "name": "all", "severities": ["warning", "critical"],
            "levels": [{"delay_s": 0, "contacts": ["alice"]}],
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        }],
    }  # fmt: skip
    smtp._now_ns = clock.now_ns
    config = notify_config(tmp_path, notify, timezone="Europe/Lisbon")
    async with running(config, clock) as rig:
        warning = await rig.raise_alert("mkt", "cold-room-1", Severity.WARNING, "MKT high")
        critical = await rig.raise_alert()
        await rig.advance(2)
        (mail,) = smtp.to("alice@hub.example")
        assert critical.id in mail.body and warning.id not in mail.body
        await rig.advance(8 * 3600 + 29 * 60)  # 06:59:02 local
        assert len(smtp.to("alice@hub.example")) == 1
        history = await rig.runner.call(rig.notifier.store.history, warning.id)
        assert [a.result for a in history] == ["held"]
        assert "07:00" in history[0].detail
        await rig.advance(60)  # 07:00:02
        mails = smtp.to("alice@hub.example")
        assert len(mails) == 2 and warning.id in mails[1].body
        assert mails[1].at_ns == 1_767_337_200 * NS_PER_S + 2 * NS_PER_S  # 07:00 + group wait


async def test_attempts_reach_the_planner_feed_payload_schema(
    tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver, http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from gateway.notify.service import attempt_line, attempt_payload

    monkeypatch.setenv("WMS_TOKEN", TOKEN)
    schema = json.loads((ROOT / "docs/schemas/notification-attempt.schema.json").read_text())
    config = notify_config(tmp_path, three_levels(smtp, http_receiver))
    async with running(config, clock) as rig:
        alert = await rig.raise_alert()
        await rig.advance(2)
        attempts = await rig.runner.call(rig.notifier.store.attempts_after, 0, 100)
        assert {a.alert_id for a in attempts} == {alert.id}
        for a in attempts:
            jsonschema.validate(attempt_payload("hub-test", a), schema)
            assert attempt_line("hub-test", a).startswith("notification,")


async def test_the_last_level_repeats_until_acknowledged(
    tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver
) -> None:
    notify = {
        "group_wait_s": 2,
        "contacts": [{"name": "alice", "channels": [{"url": smtp.url("alice@hub.example")}]}],
        "policies": [{"name": "critical", "severities": ["critical"],
                      "levels": [{"delay_s": 0, "contacts": ["alice"]}], "repeat_s": 600}],
    }  # fmt: skip
    config = notify_config(tmp_path, notify)
    t0 = clock.now_ns()
    async with running(config, clock) as rig:
        alert = await rig.raise_alert()
        await rig.advance(2)
        await rig.advance(597)
        assert len(smtp.to("alice@hub.example")) == 1
        await rig.advance(1)  # 600 s: the first repeat, exactly on time
        await rig.advance(600)  # 1200 s: the second
        mails = smtp.to("alice@hub.example")
        assert [m.at_ns for m in mails] == [
            t0 + 2 * NS_PER_S,
            t0 + 600 * NS_PER_S,
            t0 + 1200 * NS_PER_S,
        ]
        assert all("STILL UNACKNOWLEDGED" in m.body for m in mails[1:])
        await rig.ack(alert.id, "alice", "on it")
        await rig.advance(2)
        await rig.advance(3600)
        mails = smtp.to("alice@hub.example")
        assert len(mails) == 4 and "ACKNOWLEDGED" in mails[-1].body  # no repeat after the ack
