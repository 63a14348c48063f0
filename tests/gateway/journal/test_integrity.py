"""A damaged journal: moved aside at start, a fresh one, salvage, verify never OK."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.core.model import Reading
from gateway.journal.integrity import integrity_problems, open_checked, salvage
from gateway.journal.store import Journal
from gateway.runtime.daemon import Gateway

T0 = 1_767_225_600 * 10**9


def _journal_with_readings(path: Path, n: int) -> None:
    j = Journal(path)
    for start in range(0, n, 500):
        j.commit_batch(
            [
                Reading("s1", T0 + i, T0 + i, 4.0 + i % 7, "t", "cr1", seq=i)
                for i in range(start, min(n, start + 500))
            ],
            [],
            T0,
        )
    j.checkpoint()
    j.close()


def _damage(path: Path, page: int = 30, size: int = 4096) -> None:
    """Overwrite 4 KB in the middle of the file (a bad SD card sector, while stopped)."""
    with path.open("r+b") as f:
        f.seek(page * 1024)
        f.write(os.urandom(size))


def test_a_sound_journal_opens_and_a_damaged_one_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _journal_with_readings(path, 5000)
    journal, damage = open_checked(path)
    journal.close()
    assert damage is None
    _damage(path)
    assert integrity_problems(path)
    journal, damage = open_checked(path)
    assert damage is not None
    assert damage.moved_to.name.startswith("journal.db.damaged-")
    assert damage.moved_to.exists()
    assert journal.count("readings") == 0  # fresh
    journal.close()


def test_salvage_recovers_the_readable_rows_and_reports_the_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "journal.db.damaged"
    _journal_with_readings(damaged, 5000)
    _damage(damaged)
    into = tmp_path / "journal.db"
    report = salvage(damaged, into)
    copied = report.copied["readings"]
    assert 0 < copied < 5000  # most came back, the overwritten pages did not
    assert report.lost_ids["readings"] == 5000 - copied
    restored = Journal(into)
    assert restored.count("readings") == copied
    assert not integrity_problems(into)
    restored.close()
    assert main(["journal", "salvage", str(damaged), "--into", str(tmp_path / "b.db")]) == 0
    out = capsys.readouterr().out
    assert "readings:" in out and "ids missing (lost)" in out


async def test_the_daemon_starts_on_a_damaged_journal_with_a_fresh_one_and_the_alert(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    _journal_with_readings(path, 5000)
    _damage(path)
    config = parse_config(
        {
            "hub": {"id": "hub-d"},
            "journal": {"path": str(path)},
            "zones": [{"id": "cr1", "kind": "cold_storage"}],
            "sensors": [{"id": "s1", "zone": "cr1"}],
        }
    )
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    await gateway.sop_settled()
    active = await gateway.runner.call(gateway.alerts.active)
    stop.set()
    await task
    assert [(a.rule, str(a.severity)) for a in active] == [("journal_damaged", "critical")]
    assert gateway.journal_damage is not None
    assert gateway.journal_damage.moved_to.name.startswith("journal.db.damaged-")


def test_verify_never_says_ok_for_a_damaged_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    _journal_with_readings(path, 5000)
    _damage(path)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[hub]\nid = "h"\n[journal]\npath = "{path}"\n'
        '[[zones]]\nid = "cr1"\nkind = "cold_storage"\n'
    )
    code = main(["verify", "--config", str(cfg), "--source", "journal"])
    out = capsys.readouterr()
    assert code != 0
    assert "journal: OK" not in out.out
    assert "integrity_check" in out.out + out.err


def test_status_of_a_dead_daemon_is_stale_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = tmp_path / "status.json"
    # A pid that cannot be running (pid_max is at most 2**22).
    status.write_text(json.dumps({"hub": "h", "pid": 2**22 + 1, "at": "2026-01-01T00:00:00Z"}))
    assert main(["status", "--status-file", str(status), "--json"]) == 3
    assert "pid 4194305) is not running" in capsys.readouterr().err
    # A live pid (this one) but a file nobody rewrote for 10 minutes: stale too.
    status.write_text(json.dumps({"hub": "h", "pid": os.getpid(), "at": "x"}))
    old = time.time() - 600
    os.utime(status, (old, old))
    assert main(["status", "--status-file", str(status), "--json"]) == 3
    assert "written 600 s ago" in capsys.readouterr().err
