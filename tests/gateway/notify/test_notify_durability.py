"""Outages and crashes: nothing lost, nothing repeated, every attempt on the record."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.core.clock import NS_PER_S, ManualClock
from gateway.journal.store import Journal
from gateway.notify.store import NotifyStore
from tests.gateway.notify.receivers import HttpReceiver, SmtpReceiver
from tests.gateway.notify.rig import Rig, notify_config, running
from tests.integration.harness import wait_for

ROOT = Path(__file__).resolve().parents[3]


def one_level(smtp: SmtpReceiver, delay2: float | None = None) -> dict[str, object]:
    """alice at once (and bob after delay2, when given), retries from 5 s to 60 s."""
    levels: list[dict[str, object]] = [{"delay_s": 0, "contacts": ["alice"]}]
    if delay2 is not None:
        levels.append({"delay_s": delay2, "contacts": ["bob"]})
    return {
        "group_wait_s": 2,
        "retry_initial_s": 5,
        "retry_max_s": 60,
        "contacts": [
            {"name": "alice", "channels": [{"url": smtp.url("alice@hub.example")}]},
            {"name": "bob", "channels": [{"url": smtp.url("bob@hub.example")}]},
        ],
        "policies": [{"name": "critical", "severities": ["critical"], "levels": levels}],
    }


async def test_smtp_down_for_a_while_messages_arrive_after_each_once(
    tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver
) -> None:
    config = notify_config(tmp_path, one_level(smtp))
    smtp.stop()
    async with running(config, clock) as rig:
        first = await rig.raise_alert()
        await rig.advance(2)
        for _ in range(10):  # ten minutes of outage, retrying with backoff
            await rig.advance(60)
        second = await rig.raise_alert("sensor_stale", "cr1-a", message="sensor cr1-a silent")
        await rig.advance(60)
        assert smtp.mails == []
        failed = [a for a in await rig.runner.call(rig.notifier.store.history, first.id)]
        assert len(failed) >= 5 and all(a.result == "failed" for a in failed)
        assert "127.0.0.1" in failed[0].detail or "onnection" in failed[0].detail
        smtp.start()
        for _ in range(3):
            await rig.advance(60)
        mails = smtp.to("alice@hub.example")
        bodies = "\n".join(m.body for m in mails)
        assert bodies.count(first.id) == 1 and bodies.count(second.id) == 1
        for _ in range(5):
            await rig.advance(300)
        assert smtp.to("alice@hub.example") == mails  # nothing more, nothing twice
        history = await rig.runner.call(rig.notifier.store.history, first.id)
        assert history[-1].result == "sent"
        assert [a.attempt for a in history] == list(range(1, len(history) + 1))


async def test_webhook_refusing_is_retried_with_the_same_message_id(
    tmp_path: Path, clock: ManualClock, http_receiver: HttpReceiver
) -> None:
    notify = {
        "group_wait_s": 0,
        "contacts": [{"name": "wms", "channels": [
            {"kind": "webhook", "url": http_receiver.url("/t")}]}],
        "policies": [{"name": "all", "severities": ["critical"],
                      "levels": [{"contacts": ["wms"]}]}],
    }  # fmt: skip
    config = notify_config(tmp_path, notify)
    http_receiver.status = 503
    async with running(config, clock) as rig:
        alert = await rig.raise_alert()
        await rig.advance(1)
        await rig.advance(10)
        http_receiver.status = 200
        await rig.advance(60)
        (hook,) = http_receiver.hooks
        history = await rig.runner.call(rig.notifier.store.history, alert.id)
        assert [a.result for a in history][-1] == "sent"
        assert "HTTP 503" in history[0].detail
        assert {a.message_id for a in history} == {hook.body["id"]}


async def test_a_send_interrupted_by_a_crash_goes_once_more_then_never(
    tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver
) -> None:
    """Rows left 'sending' (a crash mid-send) are re-sent once with their id; twice: uncertain."""
    config = notify_config(tmp_path, one_level(smtp))
    rig = Rig(config, clock)
    alert, _ = await rig.runner.call(
        rig.alerts.raise_alert, "excursion", "cold-room-1", "critical", 1, clock.now_ns()
    )
    store = rig.notifier.store
    now = clock.now_ns()
    await rig.runner.call(store.start, now)
    await rig.runner.call(store.ingest_events, now)
    await rig.runner.call(store.fire_due, now)
    clock.advance(2)
    (group,) = await rig.runner.call(store.claim, clock.now_ns())  # now 'sending' ... crash
    await rig.runner.call(rig.journal.close)
    rig.runner._pool.shutdown()

    rig = Rig(config, clock)
    await rig.start()
    await rig.settle()
    (mail,) = smtp.to("alice@hub.example")
    assert mail.headers["X-Coldchain-Message-Id"] == group.message_id
    results = [a.result for a in await rig.runner.call(rig.notifier.store.history, alert.id)]
    assert results == ["interrupted", "sent"]
    await rig.stop()

    # A second crash in the middle of the re-send: the row is marked uncertain, not re-sent.
    journal = Journal(config.journal.path)
    journal.connection.execute(
        "UPDATE notify_outbox SET state = 'sending' WHERE message_id = ?", (group.message_id,)
    )
    journal.close()
    rig = Rig(config, clock)
    await rig.start()
    await rig.settle()
    assert len(smtp.to("alice@hub.example")) == 1
    results = [a.result for a in await rig.runner.call(rig.notifier.store.history, alert.id)]
    assert results == ["interrupted", "sent", "uncertain"]
    await rig.stop()


CHILD = ROOT / "tests" / "gateway" / "notify" / "crash_child.py"


async def test_sigkill_between_raise_and_level_2_level_2_on_time_level_1_not_again(
    tmp_path: Path, smtp: SmtpReceiver
) -> None:
    """A real process, really killed; its clock is a file the test writes (driven time)."""
    clock_file = tmp_path / "clock_ns"
    t0 = 1_767_225_600 * NS_PER_S

    def set_clock(ns: int) -> None:
        # Atomic, so the child never reads a half-written file.
        tmp = tmp_path / "clock_ns.tmp"
        tmp.write_text(str(ns))
        tmp.replace(clock_file)

    set_clock(t0)
    smtp._now_ns = lambda: int(clock_file.read_text())
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[hub]
id = "hub-test"
[journal]
path = "{tmp_path / "journal.db"}"
[[zones]]
id = "cold-room-1"
kind = "cold_storage"
profile = "chilled"
[notify]
group_wait_s = 2
[[notify.contacts]]
name = "alice"
channels = [{{ url = "{smtp.url("alice@hub.example")}" }}]
[[notify.contacts]]
name = "bob"
channels = [{{ url = "{smtp.url("bob@hub.example")}" }}]
[[notify.policies]]
name = "critical"
severities = ["critical"]
levels = [{{ delay_s = 0, contacts = ["alice"] }}, {{ delay_s = 900, contacts = ["bob"] }}]
"""
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    log = tmp_path / "child.log"

    def child(*args: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, str(CHILD), str(config), str(clock_file), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    first = child("--raise")
    try:
        await wait_for(lambda: len(smtp.to("alice@hub.example")) == 0 and _escalating(tmp_path),
                       90, "the alert raised and its escalation journaled")  # fmt: skip
        set_clock(t0 + 2 * NS_PER_S)
        await wait_for(lambda: _sent(tmp_path) == 1, 90, "level 1 sent and recorded")
        set_clock(t0 + 600 * NS_PER_S)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    assert len(smtp.to("alice@hub.example")) == 1

    second = child()
    try:
        await wait_for(lambda: _round_at(tmp_path) >= t0 + 600 * NS_PER_S, 90, "restarted")
        set_clock(t0 + 899 * NS_PER_S)
        await wait_for(lambda: _round_at(tmp_path) >= t0 + 899 * NS_PER_S, 90, "a round at 899 s")
        assert smtp.to("bob@hub.example") == []
        set_clock(t0 + 900 * NS_PER_S)
        await wait_for(lambda: smtp.to("bob@hub.example"), 90, "level 2 after the restart")
        (to_bob,) = smtp.to("bob@hub.example")
        assert to_bob.at_ns == t0 + 900 * NS_PER_S
        assert len(smtp.to("alice@hub.example")) == 1  # level 1 not sent again
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(10)
    assert second.returncode == 0, log.read_text()


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{tmp_path / 'journal.db'}?mode=ro", uri=True)


def _escalating(tmp_path: Path) -> bool:
    try:
        with contextlib.closing(_db(tmp_path)) as db:
            return bool(db.execute("SELECT COUNT(*) FROM notify_escalations").fetchone()[0])
    except sqlite3.Error:
        return False


def _sent(tmp_path: Path) -> int:
    try:
        with contextlib.closing(_db(tmp_path)) as db:
            q = "SELECT COUNT(*) FROM notify_outbox WHERE state = 'sent'"
            return int(db.execute(q).fetchone()[0])
    except sqlite3.Error:
        return 0


def _round_at(tmp_path: Path) -> int:
    path = tmp_path / "round_at"
    text = path.read_text() if path.exists() else ""
    return int(text) if text.strip() else 0


_ = NotifyStore  # the store the child runs; imported so a rename breaks this test file too


async def test_a_webhook_redirect_is_not_followed_and_keeps_its_secret(
    tmp_path: Path, clock: ManualClock, http_receiver: HttpReceiver
) -> None:
    elsewhere = HttpReceiver(clock.now_ns)
    try:
        notify = {
            "group_wait_s": 0,
            "contacts": [{"name": "wms", "channels": [
                {"kind": "webhook", "url": http_receiver.url("/t"),
                 "headers": {"Authorization": "Bearer {t}"},
                 "secrets": {"t": {"value": "s3cr3t-x"}}}]}],
            "policies": [{"name": "all", "severities": ["critical"],
                          "levels": [{"contacts": ["wms"]}]}],
        }  # fmt: skip
        http_receiver.status = 307
        http_receiver.location = elsewhere.url("/steal")
        async with running(notify_config(tmp_path, notify), clock) as rig:
            alert = await rig.raise_alert()
            await rig.advance(1)
            history = await rig.runner.call(rig.notifier.store.history, alert.id)
            assert history[0].result == "failed"
            assert "redirects are not followed" in history[0].detail
            assert elsewhere.hooks == []
    finally:
        elsewhere.close()
