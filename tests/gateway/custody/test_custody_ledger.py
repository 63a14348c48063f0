"""Custody events: parsing, transitions, every reject reason, the inbox, and restart."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.custody.events import (
    REJECT_REASONS,
    TRANSITIONS,
    CustodyEvent,
    CustodyInterval,
    CustodyKind,
    CustodyRejected,
    from_json,
)
from gateway.custody.ledger import CustodyLedger
from gateway.journal.store import Journal

K = CustodyKind
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
ZONES = {"recv-1", "cold-1", "cold-2", "pack-1", "dock-1"}
PROFILES = {"chilled", "frozen"}
SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "schemas" / "custody-event.schema.json"


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


@pytest.fixture
def ledger(journal: Journal) -> CustodyLedger:
    return CustodyLedger(journal.connection, "hub-a", ZONES, PROFILES)


def ev(
    kind: K | str, t_s: float, zone: str = "cold-1", shipment: str = "SH-1", **kw: Any
) -> CustodyEvent:
    return CustodyEvent(
        shipment=shipment, kind=K(kind), zone=zone, actor="dana", ts_ns=T0 + int(t_s * S), **kw
    )


def _walk(ledger: CustodyLedger, *steps: tuple[K, str], shipment: str = "SH-1") -> None:
    for i, (kind, zone) in enumerate(steps):
        ledger.apply(ev(kind, i * 60, zone, shipment))


# -- parsing -------------------------------------------------------------------------------


def test_wire_payload_with_iso_time_parses_to_ns() -> None:
    event = from_json(
        b'{"shipment": "SH-1", "event": "received", "zone": "recv-1", "actor": "dana",'
        b' "at": "2026-01-01T00:00:01.5Z", "carrier": "Kool Kargo", "profile": "chilled"}'
    )
    assert event.kind is K.RECEIVED
    assert event.ts_ns == T0 + int(1.5 * S)
    assert event.carrier == "Kool Kargo"


def test_at_with_offset_is_converted_to_utc() -> None:
    event = from_json(
        b'{"shipment": "SH-1", "event": "received", "zone": "z", "actor": "a",'
        b' "at": "2026-01-01T01:00:00+01:00"}'
    )
    assert event.ts_ns == T0


def test_ts_ms_and_round_trip_through_to_json() -> None:
    event = from_json(
        json.dumps(
            {
                "shipment": "SH-1",
                "event": "staged",
                "zone": "dock-1",
                "actor": "a",
                "ts_ms": T0 // 1_000_000,
            }
        ).encode()
    )
    assert event.ts_ns == T0
    assert from_json(event.to_json()) == event


BASE = {"shipment": "SH-1", "event": "received", "zone": "z", "actor": "a", "ts_ms": T0 // 10**6}


def _p(drop: tuple[str, ...] = (), **changes: Any) -> bytes:
    data = {k: v for k, v in {**BASE, **changes}.items() if k not in drop}
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not JSON"),
        (_p(drop=("ts_ms",)), "exactly one"),
        (_p(drop=("ts_ms",), at="2026-01-01T00:00:00"), "at must look like"),
        (_p(drop=("ts_ms",), at="2026-01-01 00:00:00Z"), "at must look like"),
        (_p(drop=("ts_ms",), at="2026-02-30T00:00:00Z"), "not a valid date"),
        (_p(drop=("ts_ms",), at=1767225600), "ISO 8601 string"),
        (_p(at="2026-01-01T00:00:00Z"), "exactly one"),
        (_p(kind="received"), "either event or kind"),
        (_p(shipment="bad id"), "shipment"),
        (_p(shipment='x"; DROP'), "shipment"),
        (_p(shipment="x" * 65), "shipment"),
        (_p(event="teleported"), "kind"),
        (_p(zone=""), "zone"),
        (_p(actor=""), "actor"),
        (_p(actor=" dana"), "surrounding spaces"),
        (_p(actor="da\nna"), "control characters"),
        (_p(ts_ms=T0 // 10**9), "ts_ns"),
        (_p(ts_ms="1"), "integer"),
        (_p(ts_ms=True), "integer"),
        (_p(x=1), "x"),
        (_p(note="n" * 501), "note"),
        (_p(drop=("actor",)), "actor"),
    ],
)
def test_malformed_payloads_are_rejected_with_a_detail(payload: bytes, fragment: str) -> None:
    with pytest.raises(CustodyRejected) as info:
        from_json(payload)
    assert info.value.reason == "malformed"
    assert fragment in info.value.detail


# -- transitions ---------------------------------------------------------------------------


def test_full_outbound_path_is_accepted(ledger: CustodyLedger) -> None:
    _walk(
        ledger,
        (K.RECEIVED, "recv-1"),
        (K.PUT_AWAY, "cold-1"),
        (K.PICKED, "cold-1"),
        (K.PACKED, "pack-1"),
        (K.STAGED, "dock-1"),
        (K.HANDED_TO_CARRIER, "dock-1"),
    )
    state = ledger.shipment("SH-1")
    assert state is not None
    assert state.kind is K.HANDED_TO_CARRIER
    assert not state.open
    assert ledger.open_shipments() == []


def test_every_allowed_transition_is_accepted(journal: Journal) -> None:
    ledger = CustodyLedger(journal.connection, "hub-a", ZONES, PROFILES)
    paths = {
        K.RECEIVED: [K.RECEIVED],
        K.PUT_AWAY: [K.RECEIVED, K.PUT_AWAY],
        K.PICKED: [K.RECEIVED, K.PUT_AWAY, K.PICKED],
        K.PACKED: [K.RECEIVED, K.PUT_AWAY, K.PICKED, K.PACKED],
        K.STAGED: [K.RECEIVED, K.STAGED],
        K.HANDED_TO_CARRIER: [K.RECEIVED, K.STAGED, K.HANDED_TO_CARRIER],
        K.RETURNED: [K.RECEIVED, K.RETURNED],
    }
    n = 0
    for source, nexts in TRANSITIONS.items():
        for target in nexts:
            n += 1
            sid = f"T-{n}"
            for i, kind in enumerate([*paths[source], target]):
                ledger.apply(ev(kind, i, "cold-1", sid))
            state = ledger.shipment(sid)
            assert state is not None and state.kind is target
    assert n == sum(len(v) for v in TRANSITIONS.values())


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([K.RECEIVED], K.PICKED),
        ([K.RECEIVED], K.HANDED_TO_CARRIER),
        ([K.RECEIVED], K.RECEIVED),
        ([K.RECEIVED, K.PUT_AWAY], K.PACKED),
        ([K.RECEIVED, K.PUT_AWAY, K.PICKED], K.STAGED),
        ([K.RECEIVED, K.STAGED, K.HANDED_TO_CARRIER], K.PUT_AWAY),
        ([K.RECEIVED, K.STAGED, K.HANDED_TO_CARRIER], K.HANDED_TO_CARRIER),
        ([K.RECEIVED, K.RETURNED], K.HANDED_TO_CARRIER),
    ],
)
def test_invalid_transitions_are_rejected_and_recorded(
    ledger: CustodyLedger, path: list[K], bad: K
) -> None:
    for i, kind in enumerate(path):
        ledger.apply(ev(kind, i))
    before = ledger.shipment("SH-1")
    with pytest.raises(CustodyRejected) as info:
        ledger.apply(ev(bad, 100, note="double scan?"))
    assert info.value.reason == "invalid_transition"
    assert f"{path[-1].value} -> {bad.value}" in info.value.detail
    assert ledger.shipment("SH-1") == before
    [row] = ledger.rejected()
    assert row.id == info.value.record_id
    assert (row.accepted, row.kind, row.reason, row.note) == (
        False,
        bad.value,
        "invalid_transition",
        "double scan?",
    )


def test_event_older_than_the_last_accepted_one_is_an_invalid_transition(
    ledger: CustodyLedger,
) -> None:
    ledger.apply(ev(K.RECEIVED, 100))
    with pytest.raises(CustodyRejected) as info:
        ledger.apply(ev(K.PUT_AWAY, 50))
    assert info.value.reason == "invalid_transition"
    assert "older" in info.value.detail


def test_each_reject_reason_is_recorded(journal: Journal) -> None:
    ledger = CustodyLedger(journal.connection, "hub-a", ZONES, PROFILES, max_future_s=300)
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", profile="chilled"))
    cases: list[tuple[str, bytes]] = [
        ("malformed", b"{not json"),
        ("unknown_zone", ev(K.PUT_AWAY, 1, "nowhere").to_json()),
        ("unknown_profile", ev(K.PUT_AWAY, 1, profile="bananas").to_json()),
        ("unknown_shipment", ev(K.PICKED, 1, shipment="SH-GHOST").to_json()),
        ("invalid_transition", ev(K.PACKED, 1).to_json()),
        ("profile_conflict", ev(K.PUT_AWAY, 1, profile="frozen").to_json()),
        ("future_time", ev(K.PUT_AWAY, 5 + 301).to_json()),
    ]
    assert sorted(r for r, _ in cases) == sorted(REJECT_REASONS)
    for reason, payload in cases:
        with pytest.raises(CustodyRejected) as info:
            ledger.apply_payload(payload, now_ns=T0 + 5 * S)
        assert info.value.reason == reason
    rows = ledger.rejected()
    assert [r.reason for r in reversed(rows)] == [r for r, _ in cases]
    assert all(r.payload for r in rows), "the raw payload is kept for every rejection"
    assert all(r.recorded_ns == T0 + 5 * S for r in rows)
    state = ledger.shipment("SH-1")
    assert state is not None and state.kind is K.RECEIVED


def test_malformed_payload_keeps_what_can_be_read(ledger: CustodyLedger) -> None:
    with pytest.raises(CustodyRejected):
        ledger.apply_payload(
            b'{"shipment": "SH-9", "event": "received", "zone": "recv-1"}', now_ns=T0, source="mqtt"
        )
    [row] = ledger.rejected()
    assert (row.shipment, row.kind, row.zone, row.ts_ns, row.source) == (
        "SH-9",
        "received",
        "recv-1",
        None,
        "mqtt",
    )
    assert ledger.history("SH-9", include_rejected=True) == [row]
    assert ledger.history("SH-9") == []


def test_exact_redelivery_is_idempotent(ledger: CustodyLedger) -> None:
    first = ledger.apply(ev(K.RECEIVED, 0, "recv-1"))
    again = ledger.apply(ev(K.RECEIVED, 0, "recv-1"))
    assert again.duplicate
    assert again.event_id == first.event_id
    assert len(ledger.history("SH-1")) == 1
    assert ledger.rejected() == []


def test_profile_is_remembered_and_carrier_is_the_latest(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", profile="chilled"))
    ledger.apply(ev(K.STAGED, 1, "dock-1"))
    state = ledger.apply(ev(K.HANDED_TO_CARRIER, 2, "dock-1", carrier="Kool Kargo"))
    assert (state.profile, state.carrier, state.first_ns) == ("chilled", "Kool Kargo", T0)


def test_handed_over_shipment_can_come_back_as_a_return(ledger: CustodyLedger) -> None:
    _walk(ledger, (K.RECEIVED, "recv-1"), (K.STAGED, "dock-1"), (K.HANDED_TO_CARRIER, "dock-1"))
    assert ledger.in_zone("dock-1") == []
    state = ledger.apply(ev(K.RETURNED, 3600, "recv-1"))
    assert state.open
    assert ledger.in_zone("recv-1") == ["SH-1"]


def test_intervals_merge_same_zone_and_end_at_handover(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"))
    ledger.apply(ev(K.PUT_AWAY, 600, "cold-1"))
    ledger.apply(ev(K.PICKED, 3600, "cold-1"))
    ledger.apply(ev(K.PACKED, 4000, "pack-1"))
    assert ledger.intervals("SH-1")[-1] == CustodyInterval("pack-1", T0 + 4000 * S, None)
    ledger.apply(ev(K.STAGED, 4200, "dock-1"))
    ledger.apply(ev(K.HANDED_TO_CARRIER, 4500, "dock-1"))
    assert ledger.intervals("SH-1") == [
        ("recv-1", T0, T0 + 600 * S),
        ("cold-1", T0 + 600 * S, T0 + 4000 * S),
        ("pack-1", T0 + 4000 * S, T0 + 4200 * S),
        ("dock-1", T0 + 4200 * S, T0 + 4500 * S),
    ]
    assert ledger.intervals("SH-UNKNOWN") == []


def test_in_zone_and_open_shipments(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", "SH-2"))
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", "SH-1"))
    ledger.apply(ev(K.PUT_AWAY, 60, "cold-1", "SH-2"))
    assert ledger.in_zone("recv-1") == ["SH-1"]
    assert ledger.in_zone("cold-1") == ["SH-2"]
    assert [s.shipment for s in ledger.open_shipments()] == ["SH-1", "SH-2"]


def test_ledger_refuses_a_connection_with_implicit_transactions(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "x.db"))
    try:
        with pytest.raises(ValueError, match="isolation_level"):
            CustodyLedger(db, "hub-a", ZONES, PROFILES)
    finally:
        db.close()


# -- restart and the inbox -----------------------------------------------------------------


def test_restart_rebuilds_state_from_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    ledger = CustodyLedger(j.connection, "hub-a", ZONES, PROFILES)
    ledger.apply(ev(K.RECEIVED, 0, "recv-1", "SH-1", profile="chilled"))
    ledger.apply(ev(K.STAGED, 60, "dock-1", "SH-1"))
    _walk(
        ledger,
        (K.RECEIVED, "recv-1"),
        (K.STAGED, "dock-1"),
        (K.HANDED_TO_CARRIER, "dock-1"),
        shipment="SH-2",
    )
    with pytest.raises(CustodyRejected):
        ledger.apply(ev(K.PICKED, 0, "cold-1", "SH-3"))
    before = (ledger.open_shipments(), ledger.shipment("SH-2"), ledger.intervals("SH-1"))
    j.close()

    j2 = Journal(path)
    try:
        again = CustodyLedger(j2.connection, "hub-a", ZONES, PROFILES)
        assert (again.open_shipments(), again.shipment("SH-2"), again.intervals("SH-1")) == before
        assert again.in_zone("dock-1") == ["SH-1"]
        assert len(again.rejected()) == 1
        # Transitions continue from the rebuilt state.
        assert again.apply(ev(K.HANDED_TO_CARRIER, 120, "dock-1", "SH-1")).open is False
    finally:
        j2.close()


def test_inbox_round_trip_between_two_connections(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    daemon_db = _connect(path)
    cli_db = _connect(path)
    try:
        daemon = CustodyLedger(daemon_db, "hub-a", ZONES, PROFILES)
        cli = CustodyLedger(cli_db, "hub-a", ZONES, PROFILES)
        assert daemon_db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

        good = cli.submit_to_inbox(ev(K.RECEIVED, 0, "recv-1").to_json(), now_ns=T0)
        bad = cli.submit_to_inbox(ev(K.PICKED, 1, "recv-1", "SH-X").to_json(), now_ns=T0)
        junk = cli.submit_to_inbox(b"\x00garbage", now_ns=T0)
        status = cli.inbox_status(good)
        assert status is not None and not status.processed

        assert [i for i, _ in daemon.take_inbox(10)] == [good, bad, junk]
        results = daemon.process_inbox(now_ns=T0 + S)
        assert [i for i, _ in results] == [good, bad, junk]
        assert not isinstance(results[0][1], CustodyRejected)
        assert (
            isinstance(results[1][1], CustodyRejected)
            and results[1][1].reason == "unknown_shipment"
        )
        assert isinstance(results[2][1], CustodyRejected) and results[2][1].reason == "malformed"
        assert daemon.take_inbox(10) == []
        assert daemon.process_inbox(now_ns=T0 + 2 * S) == []

        done = cli.inbox_status(good)
        assert done is not None and done.processed and done.record is not None
        assert done.record.accepted and done.record.source == "cli"
        rejected = cli.inbox_status(bad)
        assert rejected is not None and rejected.record is not None
        assert rejected.record.reason == "unknown_shipment"
        assert cli.inbox_status(9999) is None

        state = daemon.shipment("SH-1")
        assert state is not None and state.zone == "recv-1"
        assert daemon.in_zone("recv-1") == ["SH-1"]
    finally:
        daemon_db.close()
        cli_db.close()


def test_take_and_mark_processed(ledger: CustodyLedger) -> None:
    a = ledger.submit_to_inbox(b"{}", now_ns=T0)
    b = ledger.submit_to_inbox(b"[]", now_ns=T0)
    assert ledger.take_inbox(1) == [(a, b"{}")]
    ledger.mark_processed([a], now_ns=T0 + S)
    assert ledger.take_inbox(10) == [(b, b"[]")]


def test_records_after_is_an_outbox_of_accepted_and_rejected(ledger: CustodyLedger) -> None:
    ledger.apply(ev(K.RECEIVED, 0, "recv-1"))
    with pytest.raises(CustodyRejected):
        ledger.apply(ev(K.RECEIVED, 1, "nowhere", "SH-2"))
    rows = ledger.records_after(0)
    assert [r.accepted for r in rows] == [True, False]
    assert ledger.records_after(rows[0].id) == rows[1:]


# -- the wire schema -----------------------------------------------------------------------


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_schema_accepts_what_the_parser_accepts() -> None:
    validator = _validator()
    samples = [
        {
            "shipment": "SH-1",
            "event": "received",
            "zone": "recv-1",
            "actor": "dana",
            "at": "2026-01-01T00:00:00Z",
        },
        {
            "shipment": "SH-1",
            "event": "staged",
            "zone": "dock-1",
            "actor": "a",
            "ts_ms": T0 // 1_000_000,
        },
        json.loads(
            ev(
                K.HANDED_TO_CARRIER, 5, "dock-1", carrier="Kool Kargo", profile="chilled", note="ok"
            ).to_json()
        ),
    ]
    for sample in samples:
        validator.validate(sample)
        from_json(json.dumps(sample).encode())


@pytest.mark.parametrize(
    "sample",
    [
        {"shipment": "SH-1", "event": "received", "zone": "z", "actor": "a"},
        {
            "shipment": "SH 1",
            "event": "received",
            "zone": "z",
            "actor": "a",
            "ts_ms": 1767225600000,
        },
        {"shipment": "SH-1", "event": "lost", "zone": "z", "actor": "a", "ts_ms": 1767225600000},
        {
            "shipment": "SH-1",
            "event": "received",
            "zone": "z",
            "actor": "a",
            "ts_ms": 1767225600000,
            "extra": 1,
        },
        {
            "shipment": "SH-1",
            "event": "received",
            "zone": "z",
            "actor": "a",
            "ts_ms": 1767225600000,
            "at": "2026-01-01T00:00:00Z",
        },
        {
            "shipment": "SH-1",
            "event": "received",
            "zone": "z",
            "actor": "a",
            "at": "2026-01-01T00:00:00",
        },
    ],
)
def test_schema_and_parser_both_refuse(sample: dict[str, Any]) -> None:
    assert not _validator().is_valid(sample)
    with pytest.raises(CustodyRejected):
        from_json(json.dumps(sample).encode())


def test_an_event_dated_far_ahead_of_the_hub_clock_is_refused_and_locks_nothing(
    journal: Journal,
) -> None:
    """The review's attack: a "received" dated 2099 locked a shipment against real handoffs."""
    ledger = CustodyLedger(journal.connection, "hub-a", ZONES, PROFILES, max_future_s=300)
    ledger.apply_payload(ev(K.RECEIVED, 0, "recv-1").to_json(), now_ns=T0)
    future = ev(K.PUT_AWAY, 0).model_copy(update={"ts_ns": 4_070_908_800 * S})  # 2099
    with pytest.raises(CustodyRejected) as info:
        ledger.apply_payload(future.to_json(), now_ns=T0 + S)
    assert info.value.reason == "future_time"
    assert "2099-01-01" in info.value.detail
    # Within the bound (a scanner clock a little ahead) is fine, and the real handoff works.
    state = ledger.apply_payload(ev(K.PUT_AWAY, 200).to_json(), now_ns=T0 + 60 * S)
    assert state.kind is K.PUT_AWAY


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "dana\u202egnp.exe"),  # bidi override: reads differently than it is
        ("actor", "da\u200bna"),  # zero-width space: looks like "dana"
        ("note", "ok\x1b[2Jall sensors OK"),  # ESC: clears a terminal
        ("note", "line\nforged line"),
        ("carrier", "Kool\x07Kargo"),  # BEL
        ("actor", "x" * 129),
        ("note", "x" * 501),
    ],
)
def test_free_text_with_controls_bidi_zero_width_or_too_long_is_refused(
    ledger: CustodyLedger, field: str, value: str
) -> None:
    body = json.loads(ev(K.RECEIVED, 0, "recv-1").to_json())
    body[field] = value
    with pytest.raises(CustodyRejected) as info:
        ledger.apply_payload(json.dumps(body).encode(), now_ns=T0)
    assert info.value.reason == "malformed"
    assert field in info.value.detail
