"""CLI output shows what was received, one line per record: control characters escaped.

The review planted ESC/BEL/newline payloads as dead letters and alert text: the listing
printed them raw (a forged "all sensors OK" line, a cleared screen).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.alerts.store import AlertStore, Severity
from gateway.cli import main
from gateway.core.model import Reject
from gateway.journal.store import Journal

FORGED = [
    b"\x1b[2J\x1b[Hall sensors OK",
    b"ring\x07ring",
    b'{"id":"cr1-a"}\n2026-01-01T00:00:00Z\tmqtt:nodes\tall good',
    "bidi \u202eKO\u202c".encode(),
]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f'[hub]\nid = "h"\n[journal]\npath = "{tmp_path / "j.db"}"\n')
    return path


def test_dead_letters_print_control_characters_escaped_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    journal = Journal(tmp_path / "j.db")
    rejects = [
        Reject("not_json", "mqtt:nodes", raw, "sensors/x\x1b]0;t\x07/telemetry", "bad\nline", True)
        for raw in FORGED
    ]
    journal.commit_batch([], rejects, time.time_ns())
    journal.close()
    assert main(["dead-letters", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    lines = out.splitlines()
    assert len(lines) == len(FORGED)
    assert any("\\x1b[2J\\x1b[Hall sensors OK" in line for line in lines)
    assert any("\\u202eKO" in line for line in lines)
    assert all("bad\\nline" in line for line in lines)


def test_alerts_list_escapes_names_and_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    journal = Journal(tmp_path / "j.db")
    store = AlertStore(journal.connection, "h")
    now = time.time_ns()
    store.raise_alert(
        "sensor_stale", "s\x1b[31m1", Severity("warning"), now, now, None, None, "m\nX"
    )
    journal.close()
    assert main(["alerts", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert len(out.splitlines()) == 1
    assert "s\\x1b[31m1" in out and "m\\nX" in out


def test_an_ack_name_with_control_characters_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    journal = Journal(tmp_path / "j.db")
    store = AlertStore(journal.connection, "h")
    now = time.time_ns()
    alert, _ = store.raise_alert("sensor_stale", "s1", Severity("warning"), now, now)
    journal.close()
    code = main(["alerts", "ack", alert.id, "--by", "ops\x1b[2J", "--config", str(config)])
    assert code == 1
    assert "not allowed" in capsys.readouterr().err
