"""`coldchain notify test CONTACT` and `coldchain alerts` against real receivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from tests.gateway.notify.receivers import HttpReceiver, SmtpReceiver

SECRET = "hook-secret-9f8e7d"


def _config(tmp_path: Path, smtp: SmtpReceiver, hooks: HttpReceiver) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f"""
[hub]
id = "hub-test"
[journal]
path = "{tmp_path / "journal.db"}"
[notify]
[[notify.contacts]]
name = "alice"
[[notify.contacts.channels]]
url = "{smtp.url("alice@hub.example")}"
[[notify.contacts.channels]]
kind = "webhook"
url = "{hooks.url("/t")}?key={{key}}"
secrets = {{ key = {{ env = "HOOK_KEY" }} }}
"""
    )
    return path


def test_notify_test_sends_on_every_channel_and_says_what_happened(
    tmp_path: Path,
    smtp: SmtpReceiver,
    http_receiver: HttpReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_KEY", SECRET)
    config = _config(tmp_path, smtp, http_receiver)
    assert main(["notify", "test", "alice", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("OK ") == 2, out
    (mail,) = smtp.to("alice@hub.example")
    assert "TEST" in mail.subject and "no action needed" in mail.body
    (hook,) = http_receiver.hooks
    assert hook.path == f"/t?key={SECRET}"
    assert hook.body["items"][0]["kind"] == "test"
    assert SECRET not in out and "{key}" in out  # the template is shown, never the secret

    smtp.stop()
    http_receiver.status = 503
    assert main(["notify", "test", "alice", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAILED") == 2 and "HTTP 503" in out
    assert SECRET not in out

    assert main(["notify", "test", "nobody", "--config", str(config)]) == 2
    assert "no contact 'nobody' (known: alice)" in capsys.readouterr().err


def test_notify_test_with_a_missing_secret_says_which(
    tmp_path: Path,
    smtp: SmtpReceiver,
    http_receiver: HttpReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOOK_KEY", raising=False)
    config = _config(tmp_path, smtp, http_receiver)
    assert main(["notify", "test", "alice", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "secret unavailable: environment variable HOOK_KEY is not set" in out
    assert len(smtp.to("alice@hub.example")) == 1  # the e-mail channel still went
