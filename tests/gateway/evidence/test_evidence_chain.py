"""The evidence chain on a real journal file: seals, tags, removals, and what verify names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.model import Reading
from gateway.evidence.chain import RowEncoder, Sealer, canonical_row, load_head
from gateway.evidence.verify import check_chain
from gateway.journal.store import Journal

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def _reading(i: int, temp: float = 4.0) -> Reading:
    return Reading(
        sensor=f"s{i % 3}",
        ts_ns=T0 + i * S,
        received_ns=T0 + i * S + 1,
        temp_c=temp + i / 10,
        source="mqtt",
        zone="cold-1",
        rh=None if i % 2 else 50.5,
        quality=0,
        seq=i,
    )


def _journal(path: Path, interval_ns: int = 0) -> tuple[Journal, list[int]]:
    journal = Journal(path)
    now = [T0]
    journal.sealer = Sealer(journal.connection, lambda: now[0], interval_ns=interval_ns)
    return journal, now


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=8),
)


@given(st.lists(values, min_size=3, max_size=3))
def test_fast_encoder_is_the_published_canonical_form(row: list[object]) -> None:
    columns = ["zeta", "id", "Alpha"]
    assert RowEncoder("t", columns).encode(row) == canonical_row("t", columns, row)


def test_an_added_column_leaves_old_rows_canonical_form_unchanged() -> None:
    before = canonical_row("readings", ["id", "temp_c"], [1, 4.0])
    assert canonical_row("readings", ["id", "temp_c", "new"], [1, 4.0, None]) == before


def test_commits_are_sealed_and_verify(tmp_path: Path) -> None:
    journal, now = _journal(tmp_path / "j.db")
    for c in range(3):
        journal.commit_batch([_reading(c * 10 + i) for i in range(10)], [], now[0])
        now[0] += 2 * S
    head = load_head(journal.connection)
    assert head.seq == 3 and head.rows == {"readings": 30}
    report = check_chain(journal.connection)
    assert report.finding is None
    assert report.rows_checked == {"readings": 30}
    journal.close()


def test_seal_interval_batches_several_commits_into_one_entry(tmp_path: Path) -> None:
    journal, now = _journal(tmp_path / "j.db", interval_ns=10 * S)
    for c in range(10):
        now[0] += 2 * S
        journal.commit_batch([_reading(c)], [], now[0])
    entries = journal.connection.execute("SELECT COUNT(*) FROM evidence_chain").fetchone()[0]
    assert entries == 2  # at 2 s and 12 s
    assert journal.sealer is not None
    journal.sealer.seal_now(now[0])
    assert check_chain(journal.connection).rows_checked == {"readings": 10}
    journal.close()


def test_edit_delete_and_entry_edit_are_named(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal, now = _journal(path)
    journal.commit_batch([_reading(i) for i in range(10)], [], now[0])
    journal.commit_batch([_reading(i) for i in range(10, 20)], [], now[0] + S)
    journal.close()

    def finding(sql: str, *args: object) -> str:
        copy = tmp_path / f"c{abs(hash(sql))}.db"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as db:
            db.execute(sql, args)
        db = sqlite3.connect(copy)
        found = check_chain(db).finding
        db.close()
        assert found is not None
        return found.describe()

    named = "readings id 12 (sensor s2, zone cold-1, 2026-01-01T00:00:11.000Z, 9.0 °C)"
    assert named in finding("UPDATE readings SET temp_c = 9 WHERE id = 12")
    assert "altered" in finding("UPDATE readings SET quality = 4 WHERE id = 1")
    text = finding("DELETE FROM readings WHERE id = 15")
    assert "readings id 15: deleted" in text
    assert "the row before it is readings id 14" in text
    assert "chain entry 2" in finding("UPDATE evidence_chain SET at_ns = at_ns + 1 WHERE seq = 2")
    assert "missing entry" in finding("DELETE FROM evidence_chain WHERE seq = 1")


def test_retention_removals_are_recorded_and_explained(tmp_path: Path) -> None:
    journal, now = _journal(tmp_path / "j.db")
    journal.commit_batch([_reading(i) for i in range(10)], [], now[0])
    journal.set_cursor("influx", "readings", 6, 1)
    assert journal.prune(_reading(8).received_ns, ["influx"]) == 6
    report = check_chain(journal.connection)
    assert report.finding is None
    assert report.removed == {"readings": 6}
    assert report.rows_checked == {"readings": 4}
    removal = journal.connection.execute(
        "SELECT spans, note FROM evidence_chain WHERE kind = 'removal'"
    ).fetchall()
    assert removal == [('{"readings":[0,6,6]}', "retention")]
    # A deletion after the removed range is still a deletion.
    journal.connection.execute("DELETE FROM readings WHERE id = 9")
    found = check_chain(journal.connection).finding
    assert found is not None and "readings id 9" in found.record
    journal.close()


def test_rows_written_outside_a_commit_are_sealed_by_seal_now(tmp_path: Path) -> None:
    journal, now = _journal(tmp_path / "j.db")
    journal.commit_batch([_reading(0)], [], now[0])
    journal.connection.execute(
        "INSERT INTO config_log (at_ns, kind, fingerprint, detail)"
        " VALUES (1, 'initial', 'ab', '{}')"
    )
    assert check_chain(journal.connection).unsealed == {"config_log": 1}
    assert journal.sealer is not None
    entry = journal.sealer.seal_now(now[0] + S)
    assert entry is not None and set(entry.spans) == {"config_log"}
    assert check_chain(journal.connection).rows_checked == {"readings": 1, "config_log": 1}
    journal.close()


def test_a_sealing_bug_never_loses_the_commit(tmp_path: Path) -> None:
    journal, now = _journal(tmp_path / "j.db")
    assert journal.sealer is not None

    def broken(now_ns: int) -> None:
        raise RuntimeError("bug")

    journal.sealer.seal = broken  # type: ignore[method-assign]
    assert journal.commit_batch([_reading(0)], [], now[0]) == 1
    assert journal.sealer.failures == 1
    journal.close()
