"""Handoff records: seq without gaps, prev links, hashes, tamper detection, restart, migration."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.custody.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    HandoffRecord,
    canonical_bytes,
    record_hash,
)
from gateway.custody.events import CustodyEvent, CustodyKind, CustodyRejected
from gateway.custody.ledger import CustodyLedger
from gateway.custody.verify import verify_chain
from gateway.journal.store import Journal
from gateway.outbox.streams import custody_line, custody_stream

K = CustodyKind
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
HUB = "hub-a"
ZONES = {"recv-1", "cold-1", "pack-1", "dock-1"}
PROFILES = {"chilled", "frozen"}


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


@pytest.fixture
def ledger(journal: Journal) -> CustodyLedger:
    return CustodyLedger(journal.connection, HUB, ZONES, PROFILES)


def ev(kind: K, t_s: int, zone: str, shipment: str = "SH-1", **kw: Any) -> CustodyEvent:
    return CustodyEvent(
        shipment=shipment, kind=kind, zone=zone, actor="dana", ts_ns=T0 + t_s * S, **kw
    )


def _two_shipments(ledger: CustodyLedger) -> list[HandoffRecord]:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", profile="chilled"), temp_c=4.5)
    ledger.apply(ev(K.RECEIVED, 10, "recv-1", "SH-2"), temp_c=4.0)
    ledger.apply(ev(K.PUT_AWAY, 60, "cold-1"), temp_c=3.25)
    ledger.apply(ev(K.STAGED, 70, "dock-1", "SH-2"), temp_c=None)
    ledger.apply(ev(K.HANDED_TO_CARRIER, 80, "dock-1", "SH-2", carrier="Kool"), temp_c=9)
    return ledger.handoff_records_after(0, 100)


def _script_hash(record: HandoffRecord) -> str:
    """The re-verification rule from docs/custody-records.md, written out independently."""
    doc = {k: getattr(record, k) for k in HASHED_FIELDS}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_records_get_seq_one_to_n_with_prev_links_across_shipments(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.shipment for r in records] == ["SH-1", "SH-2", "SH-1", "SH-2", "SH-2"]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert [r.temp_c for r in records] == [4.5, 4.0, 3.25, None, 9.0]
    assert isinstance(records[4].temp_c, float), "an int temperature is stored as a float"
    assert ledger.last_seq() == 5
    assert ledger.handoff_record(3) == records[2]
    assert ledger.handoff_record(99) is None
    assert ledger.handoff_records_after(3, 1) == [records[3]]
    assert verify_chain(records, HUB).ok


def test_hash_is_sha256_of_the_documented_canonical_json(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    for r in records:
        assert record_hash(r.fields()) == r.hash == _script_hash(r)
    first = records[0]
    assert canonical_bytes(first.fields()) == (
        b'{"actor":"dana","carrier":null,"event":"received","hub":"hub-a","note":null,'
        b'"prev_hash":"' + GENESIS_HASH.encode() + b'","profile":"chilled","seq":1,'
        b'"shipment":"SH-1","temp_c":4.5,"ts_ns":1767225600000000000,"zone":"recv-1"}'
    )


def test_canonical_form_keeps_floats_and_unicode_exact() -> None:
    fields: dict[str, object] = {
        "hub": "h",
        "seq": 1,
        "shipment": "s",
        "event": "received",
        "zone": "z",
        "actor": 'Zoë "Z" \\',
        "carrier": None,
        "profile": None,
        "note": "line\nbreak °C",
        "ts_ns": T0,
        "temp_c": 4.0,
        "prev_hash": GENESIS_HASH,
    }
    text = canonical_bytes(fields).decode("utf-8")
    assert '"temp_c":4.0' in text
    assert '"actor":"Zoë \\"Z\\" \\\\"' in text
    assert '"note":"line\\nbreak °C"' in text
    with pytest.raises(ValueError, match="temp_c"):
        canonical_bytes({**fields, "temp_c": 4})
    with pytest.raises(ValueError, match="seq"):
        canonical_bytes({**fields, "seq": "1"})
    with pytest.raises(ValueError, match="lacks"):
        canonical_bytes({k: v for k, v in fields.items() if k != "hub"})


def test_rejected_events_do_not_consume_seq(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=4.0)
    with pytest.raises(CustodyRejected):
        ledger.apply(ev(K.PACKED, 5, "pack-1"), temp_c=4.0)
    with pytest.raises(CustodyRejected):
        ledger.apply_payload(b"{junk", now_ns=T0 + 6 * S, temp_c=4.0)
    ledger.apply(ev(K.PUT_AWAY, 10, "cold-1"), temp_c=3.0)
    rejected = ledger.rejected()
    assert len(rejected) == 2
    assert all(r.seq is None and r.hash is None for r in rejected)
    assert [r.seq for r in ledger.handoff_records_after(0, 10)] == [1, 2]
    assert [r.seq for r in ledger.history("SH-1")] == [1, 2]
    assert ledger.history("SH-1")[1].temp_c == 3.0


def test_redelivery_does_not_make_a_second_record(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=4.0)
    assert ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=5.0).duplicate
    assert ledger.last_seq() == 1


def test_apply_payload_and_inbox_take_the_zone_temperature(ledger: CustodyLedger) -> None:
    ledger.apply_payload(ev(K.RECEIVED, 0, "recv-1").to_json(), now_ns=T0, temp_c=6.5)
    ledger.submit_to_inbox(ev(K.PUT_AWAY, 60, "cold-1").to_json(), now_ns=T0)
    ledger.submit_to_inbox(ev(K.PICKED, 120, "cold-1").to_json(), now_ns=T0)
    asked: list[str] = []

    def temp_of(zone: str) -> float | None:
        asked.append(zone)
        return {"cold-1": 2.5}.get(zone)

    ledger.process_inbox(T0 + 200 * S, temp_of=temp_of)
    records = ledger.handoff_records_after(0, 10)
    assert [(r.event, r.temp_c) for r in records] == [
        ("received", 6.5),
        ("put_away", 2.5),
        ("picked", 2.5),
    ]
    assert asked == ["cold-1", "cold-1"]
    assert ledger.records_after(0)[1].seq == 2


def test_nan_temperature_is_stored_as_unknown(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=float("nan"))
    [record] = ledger.handoff_records_after(0, 10)
    assert record.temp_c is None
    assert verify_chain([record], HUB).ok


@pytest.mark.parametrize(
    ("field", "value"),
    [("temp_c", 4.6), ("temp_c", None), ("actor", "mallory"), ("ts_ns", T0 + 61 * S)],
)
def test_a_modified_field_fails_at_exactly_that_seq(
    ledger: CustodyLedger, field: str, value: object
) -> None:
    records = _two_shipments(ledger)
    records[2] = replace(records[2], **{field: value})
    result = verify_chain(records, HUB)
    assert not result.ok
    assert (result.first_bad_seq, result.reason, result.checked) == (3, "hash mismatch", 2)
    assert (result.shipment, result.event) == ("SH-1", "put_away")


def test_a_rehashed_modification_breaks_the_next_link(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    forged = replace(records[1], temp_c=2.0)
    records[1] = replace(forged, hash=record_hash(forged.fields()))
    result = verify_chain(records, HUB)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.reason == "prev_hash does not link to seq 2"


def test_a_deleted_record_is_a_gap(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    del records[1]
    result = verify_chain(records, HUB)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.reason == "sequence gap: expected 2 got 3 (missing record)"


def test_a_cut_off_tail_needs_the_expected_last_seq(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)[:3]
    assert verify_chain(records, HUB).ok
    result = verify_chain(records, HUB, expect_last=5)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.reason is not None and result.reason.startswith("missing record")


def test_reordering_is_detected(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    swapped = [records[0], records[2], records[1], *records[3:]]
    result = verify_chain(swapped, HUB)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "expected 2 got 3" in (result.reason or "")
    # Swapping the seq numbers as well (to keep the order plausible) breaks the hashes.
    renumbered = [
        records[0],
        replace(records[2], seq=2),
        replace(records[1], seq=3),
        *records[3:],
    ]
    result = verify_chain(renumbered, HUB)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.reason == "prev_hash does not link to seq 1"


def test_another_hub_and_a_forged_genesis_are_refused(ledger: CustodyLedger) -> None:
    records = _two_shipments(ledger)
    assert verify_chain(records, "hub-b").reason == "hub is 'hub-a', not 'hub-b'"
    forged = replace(records[0], prev_hash="1" * 64)
    result = verify_chain([forged], HUB)
    assert result.reason == "prev_hash does not link to the genesis hash"


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    ledger = CustodyLedger(j.connection, HUB, ZONES, PROFILES)
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=4.0)
    ledger.apply(ev(K.PUT_AWAY, 60, "cold-1"), temp_c=3.0)
    last = ledger.handoff_record(2)
    j.close()

    j2 = Journal(path)
    try:
        again = CustodyLedger(j2.connection, HUB, ZONES, PROFILES)
        assert again.last_seq() == 2
        again.apply(ev(K.PICKED, 120, "cold-1"), temp_c=3.5)
        third = again.handoff_record(3)
        assert third is not None and last is not None
        assert third.prev_hash == last.hash
        assert verify_chain(again.handoff_records_after(0, 10), HUB).ok
    finally:
        j2.close()


def test_custody_commits_are_full_sync_even_on_a_normal_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db", synchronous="normal")
    try:
        seen: list[str] = []
        j.connection.set_trace_callback(seen.append)
        ledger = CustodyLedger(j.connection, HUB, ZONES, PROFILES)
        seen.clear()
        ledger.apply(ev(K.RECEIVED, 0, "recv-1"), temp_c=4.0)
        j.connection.set_trace_callback(None)
        assert seen.index("PRAGMA synchronous=FULL") < seen.index("COMMIT")
        assert seen[-1] == "PRAGMA synchronous=1", "the journal's own level is restored"
        assert j.connection.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        j.close()


_OLD_SCHEMA = """
CREATE TABLE custody_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, recorded_ns INTEGER NOT NULL, source TEXT NOT NULL,
    accepted INTEGER NOT NULL, ts_ns INTEGER, shipment TEXT, kind TEXT, zone TEXT, actor TEXT,
    carrier TEXT, profile TEXT, note TEXT, reason TEXT, detail TEXT, payload TEXT
);
"""


def test_a_journal_from_before_the_chain_is_migrated_and_chained(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(str(path))
    db.executescript(_OLD_SCHEMA)
    rows = [
        (1, "cli", 1, T0, "SH-1", "received", "recv-1", "dana", None, None, None, None),
        (2, "cli", 0, T0, "SH-2", "picked", "recv-1", "dana", None, None, "x", "unknown_shipment"),
        (3, "cli", 1, T0 + S, "SH-1", "put_away", "cold-1", "dana", None, None, None, None),
    ]
    db.executemany(
        "INSERT INTO custody_events (id, source, accepted, ts_ns, shipment, kind, zone, actor,"
        " carrier, profile, note, reason, recorded_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0)",
        rows,
    )
    db.commit()
    db.close()
    j = Journal(path)
    try:
        ledger = CustodyLedger(j.connection, HUB, ZONES, PROFILES)
        records = ledger.handoff_records_after(0, 10)
        assert [(r.seq, r.event, r.temp_c) for r in records] == [
            (1, "received", None),
            (2, "put_away", None),
        ]
        assert verify_chain(records, HUB).ok
        ledger.apply(ev(K.PICKED, 2, "cold-1"), temp_c=3.0)
        assert ledger.last_seq() == 3
        # A second open does not re-chain anything.
        CustodyLedger(j.connection, HUB, ZONES, PROFILES)
        assert ledger.last_seq() == 3
    finally:
        j.close()


def test_custody_line_has_the_design_tags_and_fields(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", profile="chilled", note='a "b", c'), temp_c=4.5)
    ledger.apply(ev(K.STAGED, 60, "dock-1"), temp_c=None)
    first, second = ledger.handoff_records_after(0, 10)
    assert custody_line(first) == (
        "custody,event=received,hub=hub-a,shipment=SH-1,zone=recv-1"
        f' actor="dana",temp_c=4.5,seq=1i,prev_hash="{GENESIS_HASH}",hash="{first.hash}",'
        f'note="a \\"b\\", c",profile="chilled" {T0}'
    )
    line = custody_line(second)
    assert "temp_c" not in line and "carrier" not in line and "note" not in line
    assert line.endswith(f'seq=2i,prev_hash="{first.hash}",hash="{second.hash}" {T0 + 60 * S}')


def test_custody_stream_pages_by_seq(journal: Journal, ledger: CustodyLedger) -> None:
    _two_shipments(ledger)
    stream = custody_stream(ledger)
    assert stream.name == "custody"
    last, count, body = stream.fetch(journal, 0, 2)
    assert (last, count) == (2, 2)
    assert body.decode().count("\n") == 1 and b"seq=2i" in body
    last, count, body = stream.fetch(journal, 2, 100)
    assert (last, count) == (5, 3)
    assert stream.fetch(journal, 5, 100) == (5, 0, b"")


def test_the_script_in_the_docs_reverifies_an_export(ledger: CustodyLedger, tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "custody-records.md").read_text()
    script = doc.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "reverify.py").write_text(script, encoding="utf-8")
    records = _two_shipments(ledger)
    # As InfluxDB's JSON would give it: the float 9.0 as 9.
    export = [
        {**r.fields(), "hash": r.hash, "temp_c": 9}
        if r.seq == 5
        else {**r.fields(), "hash": r.hash}
        for r in records
    ]
    (tmp_path / "good.json").write_text(json.dumps(export), encoding="utf-8")
    export[1]["actor"] = "mallory"
    (tmp_path / "bad.json").write_text(json.dumps(export), encoding="utf-8")
    run = [sys.executable, str(tmp_path / "reverify.py")]
    good = subprocess.run([*run, str(tmp_path / "good.json")], capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.count(" ok") == 5
    bad = subprocess.run([*run, str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "2 SH-2 received BROKEN"
