"""Planner-feed payloads from the builders validate against docs/schemas/*.schema.json."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.alerts.store import AlertStore, Severity
from gateway.journal.store import Journal
from gateway.sinks.planner.payloads import HubState, event_payload, retained_payload, status_payload

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert cls is jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    j = Journal(tmp_path / "journal.db")
    s = AlertStore(j._db, "hub-a")
    yield s
    j.close()


def _lifecycle_events(store: AlertStore) -> list[dict[str, Any]]:
    """A raise, escalation, ack and clear, plus a bare alert with no value or limit."""
    alert, _ = store.raise_alert(
        "excursion.single",
        "cold-1",
        Severity.WARNING,
        T0,
        T0 + 900 * S,
        value=9.5,
        limit=8.0,
        message="above 8.0 °C",
        details={"profile": "chilled", "sensors": ["s1"]},
    )
    store.raise_alert("excursion.single", "cold-1", Severity.CRITICAL, T0, T0 + 1200 * S, 12.5)
    store.acknowledge(alert.id, "dana", T0 + 1300 * S, note="compressor tech called")
    store.clear("excursion.single", "cold-1", T0 + 4000 * S, value=6.9)
    store.raise_alert("sensor.stale", "s7", Severity.INFO, T0, T0 + 5 * S)
    return [event_payload(e.alert, e.kind, e.at_ns, e.note) for _, e in store.events_after(0, 100)]


def test_schemas_are_valid_draft_2020_12() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert {"alert-event.schema.json", "alert-retained.schema.json", "status.schema.json"} <= set(
        names
    )
    for name in names:
        _validator(name.removesuffix(".schema.json"))


def test_every_lifecycle_event_validates(store: AlertStore) -> None:
    v = _validator("alert-event")
    payloads = _lifecycle_events(store)
    assert [p["type"] for p in payloads] == [
        "alert.raised",
        "alert.escalated",
        "alert.acknowledged",
        "alert.cleared",
        "alert.raised",
    ]
    for p in payloads:
        v.validate(p)
        json.dumps(p, allow_nan=False)  # real JSON, no NaN


def test_retained_payloads_of_active_alerts_validate(store: AlertStore) -> None:
    v = _validator("alert-retained")
    alert, _ = store.raise_alert("dwell.staged", "SHP-1", Severity.WARNING, T0, T0 + 60 * S)
    v.validate(retained_payload(alert))
    v.validate(retained_payload(store.acknowledge(alert.id, "dana", T0 + 120 * S)))
    assert store.active()
    for a in store.active():
        v.validate(retained_payload(a))


@pytest.mark.parametrize("state", list(HubState))
def test_status_payload_validates(state: HubState) -> None:
    v = _validator("status")
    reasons = [] if state is HubState.ONLINE else ["influxdb unreachable"]
    v.validate(status_payload("hub-a", state, T0, reasons))


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("missing hub", lambda p: p.pop("hub")),
        ("empty hub", lambda p: p.update(hub="")),
        ("unknown type", lambda p: p.update(type="alert.snoozed")),
        ("bad severity", lambda p: p.update(severity="fatal")),
        ("bad state", lambda p: p.update(state="open")),
        ("time without Z", lambda p: p.update(at="2026-01-01T00:00:00+01:00")),
        ("value is a string", lambda p: p.update(value="9.5")),
        ("wrong schema version", lambda p: p.update(schema="2")),
        ("extra property", lambda p: p.update(extra=1)),
        ("bad alert id", lambda p: p.update(alert_id="not-an-id")),
        ("cleared event in raised state", lambda p: p.update(type="alert.cleared")),
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_event_payloads_fail(store: AlertStore, what: str, mutate: Any) -> None:
    v = _validator("alert-event")
    good = _lifecycle_events(store)[0]
    v.validate(good)
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(jsonschema.ValidationError):
        v.validate(bad)


def test_acknowledged_event_needs_who(store: AlertStore) -> None:
    v = _validator("alert-event")
    ack = _lifecycle_events(store)[2]
    ack["acknowledged_by"] = None
    with pytest.raises(jsonschema.ValidationError):
        v.validate(ack)


def test_invalid_retained_payloads_fail(store: AlertStore) -> None:
    v = _validator("alert-retained")
    alert, _ = store.raise_alert("dwell.staged", "SHP-1", Severity.WARNING, T0, T0)
    good = retained_payload(alert)
    for mutate in (
        lambda p: p.pop("hub"),
        lambda p: p.update(state="cleared"),
        lambda p: p.update(type="alert.raised"),
        lambda p: p.pop("started_at"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            v.validate(bad)


def test_invalid_status_payloads_fail() -> None:
    v = _validator("status")
    good = status_payload("hub-a", HubState.DEGRADED, T0, ["journal backlog"])
    for mutate in (
        lambda p: p.pop("hub"),
        lambda p: p.update(state="maintenance"),
        lambda p: p.update(reasons="journal backlog"),
        lambda p: p.pop("reasons"),
        lambda p: p.update(uptime_s=3),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            v.validate(bad)
    with pytest.raises(ValueError, match="maintenance"):
        status_payload("hub-a", "maintenance", T0)
