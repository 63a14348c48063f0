"""Alert lifecycle: deterministic ids, one active per rule+subject, outbox, restart."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.store import (
    Alert,
    AlertAlreadyCleared,
    AlertError,
    AlertState,
    AlertStore,
    EventKind,
    Severity,
    UnknownAlert,
    alert_id,
)
from gateway.journal.store import Journal
from gateway.outbox.streams import alert_line
from gateway.sinks.planner.payloads import event_payload, retained_payload

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000
RULE = "excursion.single"
ZONE = "cold-1"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


@pytest.fixture
def store(journal: Journal) -> AlertStore:
    return AlertStore(journal._db, "hub-a")


def _raise(
    store: AlertStore,
    started: int = T0,
    severity: Severity = Severity.WARNING,
    subject: str = ZONE,
    value: float = 9.5,
) -> tuple[Alert, bool]:
    return store.raise_alert(
        RULE,
        subject,
        severity,
        started_ns=started,
        raised_ns=started + 900 * S,
        value=value,
        limit=8.0,
        message="above 8.0 °C for 15 min",
        details={"profile": "chilled", "sensors": ["s1", "s2"]},
    )


def test_alert_id_is_deterministic_and_readable() -> None:
    a = alert_id("hub-a", RULE, ZONE, T0)
    assert a == alert_id("hub-a", RULE, ZONE, T0)
    assert a.startswith(f"{RULE}-")
    assert len(a.rsplit("-", 1)[1]) == 16
    assert a != alert_id("hub-b", RULE, ZONE, T0)
    assert a != alert_id("hub-a", RULE, ZONE, T0 + 1)
    assert a != alert_id("hub-a", RULE, "cold-2", T0)


def test_raise_ack_clear_lifecycle(store: AlertStore) -> None:
    alert, new = _raise(store)
    assert new
    assert alert.state is AlertState.RAISED
    assert alert.id == alert_id("hub-a", RULE, ZONE, T0)
    assert alert.details == {"profile": "chilled", "sensors": ["s1", "s2"]}
    assert store.active() == [alert]

    acked = store.acknowledge(alert.id, "dana", T0 + 1000 * S, note="door closed")
    assert acked.state is AlertState.ACKNOWLEDGED
    assert acked.acknowledged_by == "dana"
    assert acked.acknowledged_ns == T0 + 1000 * S
    assert store.active() == [acked]

    cleared = store.clear(RULE, ZONE, T0 + 2000 * S, value=7.4)
    assert cleared is not None
    assert cleared.state is AlertState.CLEARED
    assert cleared.cleared_ns == T0 + 2000 * S
    assert cleared.value == 7.4
    assert cleared.acknowledged_by == "dana"
    assert store.active() == []
    assert store.get(alert.id) == cleared

    kinds = [(e.kind, e.at_ns) for _, e in store.events_after(0, 100)]
    assert kinds == [
        (EventKind.RAISED, T0 + 900 * S),
        (EventKind.ACKNOWLEDGED, T0 + 1000 * S),
        (EventKind.CLEARED, T0 + 2000 * S),
    ]
    ack_event = store.events_after(0, 100)[1][1]
    assert ack_event.note == "door closed"
    assert ack_event.alert == acked


def test_raise_without_ack_can_clear(store: AlertStore) -> None:
    alert, _ = _raise(store)
    cleared = store.clear(RULE, ZONE, T0 + 2000 * S)
    assert cleared is not None
    assert cleared.acknowledged_by is None
    assert cleared.value == alert.value  # kept when no clearing value is given


def test_one_active_alert_per_rule_and_subject(store: AlertStore) -> None:
    first, new = _raise(store)
    assert new
    # re-detected with a different start (e.g. detector state lost): still the same alert
    again, new_again = _raise(store, started=T0 + 60 * S)
    assert not new_again
    assert again == first
    # another subject or another rule is a separate alert
    other, new_other = _raise(store, subject="cold-2")
    assert new_other
    assert other.id != first.id
    third, new_third = store.raise_alert(
        "sensor.stale", ZONE, Severity.WARNING, started_ns=T0, raised_ns=T0
    )
    assert new_third
    assert {a.id for a in store.active()} == {first.id, other.id, third.id}
    assert len(store.events_after(0, 100)) == 3


def test_database_enforces_one_active(store: AlertStore, journal: Journal) -> None:
    _raise(store)
    with pytest.raises(sqlite3.IntegrityError):
        journal._db.execute(
            "INSERT INTO alerts (id, hub, rule, subject, severity, state, started_ns,"
            " raised_ns, message, details) VALUES ('x', 'hub-a', ?, ?, 'warning', 'raised',"
            " 0, 0, '', '{}')",
            (RULE, ZONE),
        )


def test_after_clear_a_new_excursion_gets_a_new_id(store: AlertStore) -> None:
    first, _ = _raise(store)
    store.clear(RULE, ZONE, T0 + 2000 * S)
    second, new = _raise(store, started=T0 + 5000 * S)
    assert new
    assert second.id != first.id
    assert second.state is AlertState.RAISED
    assert [a.id for a in store.active()] == [second.id]
    assert store.get(first.id) is not None


def test_replaying_a_cleared_excursion_does_not_raise_again(store: AlertStore) -> None:
    first, _ = _raise(store)
    store.clear(RULE, ZONE, T0 + 2000 * S)
    again, new = _raise(store)  # same started_ns: same deterministic id
    assert not new
    assert again.id == first.id
    assert again.state is AlertState.CLEARED
    assert store.active() == []
    assert len(store.events_after(0, 100)) == 2


def test_escalation_updates_in_place_and_appends_an_event(store: AlertStore) -> None:
    first, _ = _raise(store, severity=Severity.WARNING)
    store.acknowledge(first.id, "dana", T0 + 950 * S)
    escalated, changed = _raise(store, severity=Severity.CRITICAL, value=12.0)
    assert changed
    assert escalated.id == first.id
    assert escalated.severity is Severity.CRITICAL
    assert escalated.value == 12.0
    # The ack was for the warning: the critical alert needs its own (issue 13).
    assert escalated.state is AlertState.RAISED
    assert escalated.acknowledged_by is None
    assert store.active() == [escalated]
    # same or lower severity is a no-op
    same, changed_again = _raise(store, severity=Severity.WARNING)
    assert not changed_again
    assert same.severity is Severity.CRITICAL
    kinds = [e.kind for _, e in store.events_after(0, 100)]
    assert kinds == [EventKind.RAISED, EventKind.ACKNOWLEDGED, EventKind.ESCALATED]


def test_acknowledge_errors_and_idempotence(store: AlertStore) -> None:
    with pytest.raises(UnknownAlert, match="no alert with id 'nope'"):
        store.acknowledge("nope", "dana", T0)
    with pytest.raises(KeyError):
        store.acknowledge("nope", "dana", T0)
    alert, _ = _raise(store)
    with pytest.raises(AlertError, match="needs a name"):
        store.acknowledge(alert.id, "", T0)
    first = store.acknowledge(alert.id, "dana", T0 + 1000 * S)
    second = store.acknowledge(alert.id, "sam", T0 + 1100 * S)
    assert second == first  # the first acknowledgement stands
    assert [e.kind for _, e in store.events_after(0, 100)].count(EventKind.ACKNOWLEDGED) == 1
    store.clear(RULE, ZONE, T0 + 2000 * S)
    with pytest.raises(AlertAlreadyCleared, match="cleared"):
        store.acknowledge(alert.id, "dana", T0 + 3000 * S)


def test_clear_without_active_alert_returns_none(store: AlertStore) -> None:
    assert store.clear(RULE, ZONE, T0) is None
    assert store.events_after(0, 10) == []
    assert store.last_event_id() == 0


def test_bad_details_are_refused_without_a_write(store: AlertStore) -> None:
    with pytest.raises(AlertError, match="JSON"):
        store.raise_alert(RULE, ZONE, Severity.WARNING, T0, T0, details={"bad": object()})
    assert store.active() == []
    assert store.events_after(0, 10) == []


def test_events_after_pages_in_order(store: AlertStore) -> None:
    for i in range(5):
        _raise(store, subject=f"zone-{i}", started=T0 + i * S)
    store.clear(RULE, "zone-2", T0 + 100 * S)
    page1 = store.events_after(0, 3)
    assert [eid for eid, _ in page1] == [1, 2, 3]
    page2 = store.events_after(page1[-1][0], 10)
    assert [eid for eid, _ in page2] == [4, 5, 6]
    assert [e.alert.subject for _, e in page1 + page2] == [
        "zone-0",
        "zone-1",
        "zone-2",
        "zone-3",
        "zone-4",
        "zone-2",
    ]
    assert page2[-1][1].kind is EventKind.CLEARED
    assert store.last_event_id() == 6
    assert store.events_after(6, 10) == []


def test_event_snapshots_do_not_change_with_later_state(store: AlertStore) -> None:
    alert, _ = _raise(store)
    store.acknowledge(alert.id, "dana", T0 + 1000 * S)
    (_, raised), (_, acked) = store.events_after(0, 10)
    assert raised.alert.state is AlertState.RAISED
    assert raised.alert.acknowledged_by is None
    assert acked.alert.state is AlertState.ACKNOWLEDGED


def test_restart_restores_active_alerts_without_a_second_raise(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j1 = Journal(path)
    s1 = AlertStore(j1._db, "hub-a")
    alert, _ = _raise(s1)
    acked_other, _ = _raise(s1, subject="cold-2")
    s1.acknowledge(acked_other.id, "dana", T0 + 1000 * S)
    j1.close()

    j2 = Journal(path)
    s2 = AlertStore(j2._db, "hub-a")
    restored = {a.id: a for a in s2.active()}
    assert set(restored) == {alert.id, acked_other.id}
    assert restored[acked_other.id].state is AlertState.ACKNOWLEDGED
    assert restored[alert.id].details == alert.details
    again, new = _raise(s2)  # the detector re-detects the same excursion after restart
    assert not new
    assert again == restored[alert.id]
    assert len(s2.events_after(0, 100)) == 3
    # a plain sqlite3 connection to the same file sees the same state
    j2.close()
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        assert {a.id for a in AlertStore(db, "hub-a").active()} == set(restored)
        assert AlertStore(db, "hub-b").active() == []
    finally:
        db.close()


def test_stores_of_different_hubs_are_separate(journal: Journal) -> None:
    a = AlertStore(journal._db, "hub-a")
    b = AlertStore(journal._db, "hub-b")
    alert_a, _ = _raise(a)
    alert_b, new_b = _raise(b)
    assert new_b
    assert alert_a.id != alert_b.id
    assert b.get(alert_a.id) is None
    with pytest.raises(UnknownAlert):
        b.acknowledge(alert_a.id, "dana", T0)


def test_failed_transaction_rolls_back(store: AlertStore, journal: Journal) -> None:
    _raise(store)
    journal._db.execute("DROP TABLE alert_events")
    with pytest.raises(sqlite3.OperationalError):
        _raise(store, subject="cold-9")
    assert not journal._db.in_transaction
    assert [a.subject for a in store.active()] == [ZONE]


def test_usable_from_the_journal_thread(journal: Journal) -> None:
    result: list[bool] = []

    def work() -> None:
        s = AlertStore(journal._db, "hub-a")
        result.append(_raise(s)[1])

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert result == [True]


def test_event_payload_fields(store: AlertStore) -> None:
    alert, _ = _raise(store)
    acked = store.acknowledge(alert.id, "dana", T0 + 1000 * S, note="checked")
    p = event_payload(acked, EventKind.ACKNOWLEDGED, T0 + 1000 * S, note="checked")
    assert p["type"] == "alert.acknowledged"
    assert p["schema"] == "1"
    assert p["hub"] == "hub-a"
    assert p["alert_id"] == alert.id
    assert p["started_at"] == "2026-01-01T00:00:00.000Z"
    assert p["raised_at"] == "2026-01-01T00:15:00.000Z"
    assert p["at"] == "2026-01-01T00:16:40.000Z"
    assert p["acknowledged_by"] == "dana"
    assert p["cleared_at"] is None
    assert p["note"] == "checked"
    assert p["value"] == 9.5
    assert p["limit"] == 8.0


def test_nan_value_is_not_stored_or_published(store: AlertStore) -> None:
    alert, _ = _raise(store, value=float("nan"))
    assert alert.value is None
    assert event_payload(alert, "raised", T0)["value"] is None
    assert "value=" not in alert_line(alert, T0)


def test_retained_payload_refuses_cleared(store: AlertStore) -> None:
    alert, _ = _raise(store)
    assert retained_payload(alert)["state"] == "raised"
    cleared = store.clear(RULE, ZONE, T0 + 2000 * S)
    assert cleared is not None
    with pytest.raises(ValueError, match="empty retained"):
        retained_payload(cleared)


def test_alert_line(store: AlertStore) -> None:
    alert, _ = _raise(store, subject="cold 1")
    text = alert_line(alert, T0 + 900 * S)
    assert text == (
        "alert,hub=hub-a,rule=excursion.single,severity=warning,subject=cold\\ 1"
        f' state="raised",started_at={T0}i,alert_id="{alert.id}",value=9.5,limit=8.0'
        f" {T0 + 900 * S}"
    )
    cleared = store.clear(RULE, "cold 1", T0 + 2000 * S)
    assert cleared is not None
    assert alert_line(cleared, T0 + 2000 * S).endswith(f" {T0 + 2000 * S}")
    assert 'state="cleared"' in alert_line(cleared, T0 + 2000 * S)
