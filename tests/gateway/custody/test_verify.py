"""``coldchain verify``: tampering in the journal (plain sqlite3) and in a real InfluxDB."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.apps.localservices import InfluxDB1
from gateway.apps.verify_cli import add_verify_arguments, run_verify
from gateway.custody.chain import HandoffRecord
from gateway.custody.events import CustodyEvent, CustodyKind
from gateway.custody.ledger import CustodyLedger
from gateway.custody.verify import custody_query, verify_influx, verify_journal
from gateway.influxql.client import InfluxQLClient, quote_ident, quote_literal
from gateway.journal.store import Journal
from gateway.outbox.streams import custody_line

K = CustodyKind
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
HUB = "hub-a"
ZONES = {"recv-1", "cold-1", "pack-1", "dock-1"}
PROFILES = {"chilled"}


def ev(kind: K, t_s: int, zone: str, shipment: str = "SH-1", **kw: object) -> CustodyEvent:
    data: dict[str, object] = {
        "shipment": shipment,
        "kind": kind,
        "zone": zone,
        "actor": "dana",
        "ts_ns": T0 + t_s * S,
        **kw,
    }
    return CustodyEvent.model_validate(data)


def _fill(ledger: CustodyLedger, hub_note: str = "") -> list[HandoffRecord]:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", profile="chilled"), temp_c=4.5)
    ledger.apply(ev(K.RECEIVED, 10, "recv-1", "SH-2", carrier="Kool Kargo"), temp_c=4.0)
    ledger.apply(ev(K.PUT_AWAY, 60, "cold-1", note=f"rack 3 {hub_note}".strip()), temp_c=3.25)
    ledger.apply(ev(K.STAGED, 70, "dock-1", "SH-2"), temp_c=None)
    ledger.apply(ev(K.HANDED_TO_CARRIER, 80, "dock-1", "SH-2", carrier="Kool"), temp_c=9.0)
    return ledger.handoff_records_after(0, 100)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def ledger(journal_path: Path) -> Iterator[CustodyLedger]:
    j = Journal(journal_path)
    yield CustodyLedger(j.connection, HUB, ZONES, PROFILES)
    j.close()


def _config(tmp_path: Path, journal_path: Path, influx: tuple[str, str] | None = None) -> Path:
    text = f"""
[hub]
id = "{HUB}"

[journal]
path = "{journal_path}"

[[zones]]
id = "recv-1"
kind = "receiving"

[[zones]]
id = "cold-1"
kind = "cold_storage"

[[zones]]
id = "dock-1"
kind = "dock"
"""
    if influx is not None:
        text += f'\n[sinks.influx]\nurl = "{influx[0]}"\ndatabase = "{influx[1]}"\n'
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(config: Path, *extra: str) -> int:
    p = argparse.ArgumentParser()
    add_verify_arguments(p)
    return run_verify(p.parse_args(["--config", str(config), *extra]))


# -- the journal ---------------------------------------------------------------------------


def test_intact_journal_verifies(ledger: CustodyLedger) -> None:
    _fill(ledger)
    result = verify_journal(ledger)
    assert (result.ok, result.checked, result.last_seq, result.first_bad_seq) == (
        True,
        5,
        5,
        None,
    )


def test_verify_reads_the_journal_while_the_daemon_holds_the_write_lock(
    ledger: CustodyLedger, journal_path: Path, tmp_path: Path
) -> None:
    """verify opens the journal read-only: it needs no write lock and changes nothing."""
    _fill(ledger)
    config = _config(tmp_path, journal_path)
    writer = sqlite3.connect(str(journal_path), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the daemon in the middle of a commit
    try:
        assert _run(config) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    reader = Journal.open_readonly(journal_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.connection.execute("DELETE FROM custody_events")
    finally:
        reader.close()


def test_temp_changed_with_plain_sqlite_names_that_record(
    ledger: CustodyLedger, journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(ledger)
    config = _config(tmp_path, journal_path)
    assert _run(config) == 0
    assert "journal: OK, 5 record(s)" in capsys.readouterr().out

    db = sqlite3.connect(str(journal_path))
    db.execute("UPDATE custody_events SET temp_c = 2.0 WHERE seq = 3")
    db.commit()
    db.close()

    result = verify_journal(ledger)
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 3, "hash mismatch")
    assert (result.shipment, result.event, result.ts_ns) == ("SH-1", "put_away", T0 + 60 * S)

    assert _run(config, "--source", "journal") == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out
    assert "journal: FAILED at seq 3 (SH-1, put_away, 2026-01-01T00:01:00" in out
    assert out.rstrip().endswith("hash mismatch")


def test_deleted_row_and_unchained_row_in_the_journal(
    ledger: CustodyLedger, journal_path: Path
) -> None:
    _fill(ledger)
    db = sqlite3.connect(str(journal_path))
    db.execute("DELETE FROM custody_events WHERE seq = 2")
    db.commit()
    result = verify_journal(ledger)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "sequence gap" in (result.reason or "")

    # Hiding the last record by erasing its seq leaves an accepted row outside the chain.
    db.execute("UPDATE custody_events SET seq = NULL, hash = NULL WHERE seq >= 2")
    db.commit()
    db.close()
    result = verify_journal(ledger)
    assert not result.ok
    assert "has no seq/hash" in (result.reason or "")


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[hub]\nid = "bad id"\n', encoding="utf-8")
    assert _run(bad) == 2
    missing_journal = _config(tmp_path, tmp_path / "nowhere.db")
    assert _run(missing_journal) == 2
    assert _run(missing_journal, "--source", "influx") == 2
    assert "needs [sinks.influx]" in capsys.readouterr().err


# -- InfluxQL quoting ----------------------------------------------------------------------


def test_influxql_literals_and_identifiers_are_escaped() -> None:
    assert quote_literal("a'b\\c") == "'a\\'b\\\\c'"
    assert quote_ident('we"ird\\') == '"we\\"ird\\\\"'
    assert custody_query("hub-a", InfluxQLClient("http://127.0.0.1:9", "db")) == (
        'SELECT * FROM "custody" WHERE "hub" = \'hub-a\''
    )
    client = InfluxQLClient("http://127.0.0.1:9", 'd"b', retention_policy="rp 1")
    assert custody_query("hub-a", client).startswith('SELECT * FROM "d\\"b"."rp 1"."custody"')


@pytest.mark.parametrize(
    "hub", ["hub-a' OR hub = 'hub-b", "x'; DROP DATABASE db; --", "/.*/", "", "hub a", "h\\"]
)
def test_crafted_hub_ids_are_refused_before_any_query(hub: str) -> None:
    with pytest.raises(ValueError, match="invalid hub id"):
        verify_influx("http://127.0.0.1:9", "db", hub)


# -- InfluxDB (real influxd) ---------------------------------------------------------------


def _write(server: InfluxDB1, db: str, records: list[HandoffRecord]) -> None:
    server.write(db, "\n".join(custody_line(r) for r in records))


@pytest.mark.integration
def test_tampering_in_influxdb_is_named(
    influx_db: tuple[InfluxDB1, str], ledger: CustodyLedger
) -> None:
    server, db = influx_db
    records = _fill(ledger)
    _write(server, db, records)
    result = verify_influx(server.url, db, HUB)
    assert (result.ok, result.checked, result.last_seq) == (True, 5, 5)

    # Same measurement, tags and time: the point is overwritten with another temperature.
    _write(server, db, [replace(records[2], temp_c=2.0)])
    assert server.rows('SELECT temp_c FROM custody WHERE "seq" = 3', db)[0]["temp_c"] == 2
    result = verify_influx(server.url, db, HUB)
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 3, "hash mismatch")
    assert (result.shipment, result.event, result.ts_ns) == ("SH-1", "put_away", T0 + 60 * S)

    _write(server, db, [records[2]])  # restore
    assert verify_influx(server.url, db, HUB).ok
    server.query(f'DELETE FROM "custody" WHERE "shipment" = \'SH-2\' AND time = {T0 + 70 * S}', db)
    result = verify_influx(server.url, db, HUB)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.reason == "sequence gap: expected 4 got 5 (missing record)"


@pytest.mark.integration
def test_quotes_and_backslashes_round_trip_and_verify(
    influx_db: tuple[InfluxDB1, str], journal_path: Path
) -> None:
    server, db = influx_db
    j = Journal(journal_path)
    try:
        ledger = CustodyLedger(j.connection, HUB, ZONES, PROFILES)
        ledger.apply(ev(K.RECEIVED, 0, "recv-1", "SH.1:x", actor='O\'Brien \\ "Bob"'), temp_c=-18.5)
        ledger.apply(
            ev(K.PUT_AWAY, 5, "cold-1", "SH.1:x", note='it\'s "fine"\\ ok, °C\nnext line'),
            temp_c=1e-05,
        )
        records = ledger.handoff_records_after(0, 10)
    finally:
        j.close()
    _write(server, db, records)
    result = verify_influx(server.url, db, HUB)
    assert (result.ok, result.checked) == (True, 2), result


@pytest.mark.integration
def test_another_hub_cannot_be_read_or_mixed_in(
    influx_db: tuple[InfluxDB1, str], ledger: CustodyLedger, tmp_path: Path
) -> None:
    server, db = influx_db
    _write(server, db, _fill(ledger))
    other_journal = Journal(tmp_path / "other.db")
    try:
        other = CustodyLedger(other_journal.connection, "hub-b", ZONES, PROFILES)
        _write(server, db, _fill(other, hub_note="hub-b"))
    finally:
        other_journal.close()
    assert verify_influx(server.url, db, HUB).checked == 5
    assert verify_influx(server.url, db, "hub-b").checked == 5
    # A hub id that happens to look like a regex or has no data: nothing matched, nothing leaked.
    assert verify_influx(server.url, db, "hub-.").checked == 0


@pytest.mark.integration
def test_run_verify_checks_both_and_names_the_record(
    influx_db: tuple[InfluxDB1, str],
    ledger: CustodyLedger,
    journal_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, db = influx_db
    records = _fill(ledger)
    _write(server, db, records)
    j = Journal(journal_path)
    j.set_cursor("influx", "custody", 5, T0)  # the forwarder confirmed seq 1..5
    j.close()
    config = _config(tmp_path, journal_path, (server.url, db))
    assert _run(config) == 0
    out = capsys.readouterr().out
    assert "journal: OK, 5" in out and "influx: OK, 5" in out and "journal vs influx: OK" in out

    # The last point removed from InfluxDB: only the forwarder cursor shows it is missing.
    server.query(f'DELETE FROM "custody" WHERE time = {T0 + 80 * S}', db)
    assert _run(config, "--source", "both") == 1
    out = capsys.readouterr().out
    assert "influx: FAILED at seq 5 (SH-2, handed_to_carrier" in out
    assert "missing record" in out

    _write(server, db, [replace(records[4], actor="mallory")])
    assert _run(config, "--source", "influx") == 1
    assert "influx: FAILED at seq 5 (SH-2, handed_to_carrier" in capsys.readouterr().out


@pytest.mark.integration
def test_a_rewritten_journal_chain_is_caught_by_the_cross_check(
    influx_db: tuple[InfluxDB1, str],
    journal_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, db = influx_db
    j = Journal(journal_path)
    ledger = CustodyLedger(j.connection, HUB, ZONES, PROFILES)
    _write(server, db, _fill(ledger))
    j.close()
    # Rewrite the journal consistently: temperatures dropped, every hash recomputed.
    db_file = sqlite3.connect(str(journal_path))
    db_file.execute("DROP INDEX custody_events_seq")  # make it look like a pre-chain file
    for column in ("hub", "seq", "temp_c", "prev_hash", "hash"):
        db_file.execute(f"ALTER TABLE custody_events DROP COLUMN {column}")
    db_file.commit()
    db_file.close()
    j = Journal(journal_path)
    CustodyLedger(j.connection, HUB, ZONES, PROFILES)  # re-chains with temp_c unknown
    j.close()
    config = _config(tmp_path, journal_path, (server.url, db))
    assert _run(config) == 1
    out = capsys.readouterr().out
    assert "journal: OK, 5" in out and "influx: OK, 5" in out
    assert "journal vs influx: FAILED at seq 1 (SH-1, received" in out


def test_a_journal_without_the_chain_is_reported_not_a_traceback(
    journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal from before the custody chain: verify says so (exit 3: unreadable)."""
    Journal(journal_path).close()  # readings only: no custody tables at all
    assert _run(_config(tmp_path, journal_path)) == 3
    out = capsys.readouterr()
    assert "no custody chain this version can read" in out.out + out.err
