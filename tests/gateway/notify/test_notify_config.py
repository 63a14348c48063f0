"""check-config on [notify]: every Apprise URL and policy validated, with field paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.core.clock import NS_PER_S
from gateway.notify.config import QuietHours
from gateway.notify.policy import ack_code, normalise_code, quiet_until

BAD = """
[hub]
id = "hub-a"
timezone = "Europe/Lisbon"
[[zones]]
id = "cold-room-1"
kind = "cold_storage"
[notify]
[[notify.contacts]]
name = "alice"
[[notify.contacts.channels]]
url = "mailtos://{user}:{password}@smtp.example.com?to=alice@example.com"
secrets = { user = { env = "SMTP_USER" }, password = { env = "SMTP_PASS" } }
[[notify.contacts.channels]]
url = "nosuchservice://x/y"
[[notify.contacts.channels]]
url = "ntfy://ntfy.example.com/{topic}"
[[notify.contacts.channels]]
kind = "webhook"
url = "ftp://wms.example.com/hook"
[[notify.contacts]]
name = "alice"
channels = [{ url = "json://127.0.0.1:9/hook" }]
[[notify.policies]]
name = "critical"
severities = ["critical"]
zones = ["cold-room-9"]
levels = [{ contacts = ["alice", "bob"] }, { delay_s = 900, contacts = [] }]
quiet_hours = { start = "22h", end = "07:00" }
"""

GOOD = """
[hub]
id = "hub-a"
[[zones]]
id = "cold-room-1"
kind = "cold_storage"
[notify]
[[notify.contacts]]
name = "alice"
[[notify.contacts.channels]]
url = "mailtos://{user}:{password}@smtp.example.com?to=alice@example.com"
secrets = { user = { env = "SMTP_USER" }, password = { file = "/run/credentials/smtp" } }
[[notify.contacts.channels]]
url = "ntfy://ntfy.example.com/coldroom-alerts"
[[notify.contacts.channels]]
kind = "webhook"
url = "https://wms.example.com/hook"
headers = { Authorization = "Bearer {token}" }
secrets = { token = { env = "WMS" } }
[[notify.policies]]
name = "critical"
severities = ["critical"]
levels = [{ contacts = ["alice"] }, { delay_s = 900, contacts = ["alice"] }]
repeat_s = 1800
quiet_hours = { start = "22:00", end = "07:00" }
"""


def test_check_config_lists_every_notify_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    expected = [
        "notify.contacts[0].channels[1]: Value error, Apprise does not accept this URL"
        " (scheme 'nosuchservice'",
        "notify.contacts[0].channels[2]: Value error, placeholder(s) topic have no entry in"
        " secrets",
        "notify.contacts[0].channels[3]: Value error, a webhook url must be http(s)",
        "notify.policies[0].levels[1].contacts: List should have at least 1 item",
        "notify.policies[0].quiet_hours.start: Value error, '22h' is not a 24-hour HH:MM",
    ]
    for line in expected:
        assert line.replace("Value error, ", "") in err, err


def test_check_config_cross_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = BAD.replace('[[notify.contacts.channels]]\nurl = "nosuchservice://x/y"\n', "")
    doc = doc.replace('[[notify.contacts.channels]]\nurl = "ntfy://ntfy.example.com/{topic}"\n', "")
    doc = doc.replace(
        '[[notify.contacts.channels]]\nkind = "webhook"\nurl = "ftp://wms.example.com/hook"\n', ""
    )
    doc = doc.replace(", { delay_s = 900, contacts = [] }", "")
    doc = doc.replace('"22h"', '"22:00"')
    path = tmp_path / "refs.toml"
    path.write_text(doc)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "notify.contacts[1].name: duplicate contact 'alice'" in err
    assert "notify.policies[0].levels[0].contacts[1]: unknown contact 'bob'" in err
    assert "notify.policies[0].zones[0]: unknown zone 'cold-room-9'" in err


def test_a_good_notify_table_passes_without_reading_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)  # SMTP_USER, the credential file and WMS do not exist here
    assert main(["check-config", str(path)]) == 0


def test_run_without_contacts_does_not_import_apprise() -> None:
    probe = (
        "import sys\n"
        "from gateway.cli import build_parser\n"
        "build_parser().parse_args(['run', '--config', 'x.toml'])\n"
        "import gateway.runtime.daemon, gateway.config\n"
        "print('apprise' in sys.modules, 'gateway.notify.channels' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_quiet_hours_wrap_midnight_in_the_hub_time_zone() -> None:
    quiet = QuietHours(start="22:00", end="07:00")
    jan1 = 1_767_225_600 * NS_PER_S  # 2026-01-01T00:00Z
    # New York is UTC-5 in January: 03:00Z is 22:00 local on Dec 31.
    at = jan1 + 3 * 3600 * NS_PER_S
    assert quiet_until(quiet, "America/New_York", at) == jan1 + 12 * 3600 * NS_PER_S
    assert quiet_until(quiet, "America/New_York", at - NS_PER_S) is None
    assert quiet_until(quiet, "UTC", jan1 + 7 * 3600 * NS_PER_S) is None
    day = QuietHours(start="12:00", end="13:00")
    assert quiet_until(day, "UTC", jan1 + 12 * 3600 * NS_PER_S) == jan1 + 13 * 3600 * NS_PER_S


def test_ack_codes_are_short_readable_and_typed_loosely() -> None:
    code = ack_code("excursion-0123456789abcdef")
    assert len(code) == 6 and not set(code) & set("01ILOU")
    assert normalise_code(f" {code[:3].lower()}-{code[3:]} ") == code
    assert ack_code("excursion-0123456789abcdef", 1) != code
