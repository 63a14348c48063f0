"""Several alert transitions in one transaction: all of them or none, one commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.alerts.store import AlertStore, Severity
from gateway.journal.store import Journal


def _store(tmp_path: Path) -> tuple[AlertStore, sqlite3.Connection]:
    journal = Journal(tmp_path / "j.db")
    return AlertStore(journal.connection, "hub-a"), journal.connection


def _raise(store: AlertStore, subject: str) -> None:
    store.raise_alert("sensor_spike", subject, Severity.WARNING, 1, 1, 9.0, 2.0, "spike")


def test_a_group_commits_once_with_every_transition(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    before = db.total_changes
    with store.transaction():
        _raise(store, "s1")
        _raise(store, "s2")
        assert db.in_transaction, "the store's own transactions became savepoints"
    assert not db.in_transaction
    assert sorted(a.subject for a in store.active()) == ["s1", "s2"]
    assert db.total_changes > before


def test_a_failing_group_leaves_nothing(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    with pytest.raises(RuntimeError), store.transaction():
        _raise(store, "s1")
        raise RuntimeError("disk went away")
    assert not db.in_transaction
    assert store.active() == []
    _raise(store, "s3")  # the store still works on its own
    assert [a.subject for a in store.active()] == ["s3"]
