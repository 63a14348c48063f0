"""The journal: durable batches, cursors per sink, survival across reopen and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.core.model import Reading, Reject
from gateway.journal.store import Journal


def _reading(i: int, sensor: str = "s1", zone: str = "z1") -> Reading:
    return Reading(
        sensor=sensor,
        ts_ns=1_700_000_000_000_000_000 + i * 1_000_000_000,
        received_ns=1_700_000_000_000_000_000 + i * 1_000_000_000 + 5,
        temp_c=4.0 + i / 100,
        source="serial:test",
        zone=zone,
        seq=i,
    )


def test_batches_get_dense_ids_and_read_back_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    assert j.commit_batch([_reading(i) for i in range(3)], [], 0) == 3
    assert j.commit_batch([_reading(i) for i in range(3, 5)], [], 0) == 5
    rows = j.readings_after(2, 10)
    assert [rid for rid, _ in rows] == [3, 4, 5]
    assert rows[0][1] == _reading(2)
    j.close()


def test_cursor_per_sink_and_backlog(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.commit_batch([_reading(i) for i in range(10)], [], 0)
    assert j.backlog("influx").records == 10
    j.set_cursor("influx", "readings", 7, 1)
    j.set_cursor("other", "readings", 2, 1)
    assert j.backlog("influx").records == 3
    assert j.backlog("influx").oldest_ts_ns == _reading(7).received_ns
    assert j.backlog("other").records == 8
    j.close()


def test_reopen_keeps_data_cursors_and_id_sequence(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.commit_batch([_reading(i) for i in range(4)], [], 0)
    j.set_cursor("influx", "readings", 4, 1)
    j.close()
    j2 = Journal(tmp_path / "j.db")
    assert j2.cursor("influx", "readings") == 4
    assert j2.commit_batch([_reading(9)], [], 0) == 5
    j2.close()


def test_dead_letters_keep_payload_and_reason(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    reject = Reject("not_json", "mqtt:nodes", b"\xff{", "sensors/x", "line 1", True)
    j.commit_batch([], [reject], 42)
    (dl,) = j.dead_letters()
    assert (dl.reason, dl.payload, dl.topic, dl.received_ns) == (
        "not_json",
        b"\xff{",
        "sensors/x",
        42,
    )
    j.close()


def test_readings_between_selects_zone_and_interval(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.commit_batch([_reading(i, zone="z1") for i in range(5)] + [_reading(2, "s9", "z2")], [], 0)
    got = j.readings_between(["z1"], _reading(1).ts_ns, _reading(3).ts_ns)
    assert [r.seq for r in got] == [1, 2]
    j.close()


def test_committed_batches_survive_sigkill(tmp_path: Path) -> None:
    """A child commits batches and reports each; we SIGKILL it and count what survived."""
    db = tmp_path / "j.db"
    script = textwrap.dedent(
        f"""
        import sys
        from gateway.journal.store import Journal
        from gateway.core.model import Reading
        j = Journal({str(db)!r})
        i = 0
        while True:
            batch = [Reading("s1", i * 10 + k, 0, 1.0, "x", "z", seq=i * 10 + k) for k in range(10)]
            last = j.commit_batch(batch, [], 0)
            print(last, flush=True)
            i += 1
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 500:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    j = Journal(db)
    # Everything the child reported as committed is there, in order, without holes.
    assert j.last_id() >= acknowledged
    rows = j.readings_after(0, 1_000_000)
    assert [rid for rid, _ in rows] == list(range(1, len(rows) + 1))
    assert [r.seq for _, r in rows] == list(range(len(rows)))
    j.close()


def test_prune_keeps_undelivered_and_recent_readings(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.commit_batch([_reading(i) for i in range(10)], [], 0)
    j.set_cursor("influx", "readings", 6, 1)
    cutoff = _reading(8).received_ns  # readings 0..7 are old enough
    assert j.prune(cutoff, ["influx"], chunk=2) == 6  # only ids 1..6 were delivered
    assert [rid for rid, _ in j.readings_after(0, 100)] == [7, 8, 9, 10]
    assert j.commit_batch([_reading(11)], [], 0) == 11, "ids are never reused"
    j.close()
