"""Dwell timers on a hand-driven clock, and cumulative budgets over custody intervals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.custody.events import CustodyEvent, CustodyKind
from gateway.custody.ledger import CustodyLedger
from gateway.journal.store import Journal
from gateway.sop.dwell import DwellEvent, DwellTimers, ShipmentBudgets
from gateway.sop.profiles import DEFAULT_PROFILES
from gateway.sop.settings import DEFAULT_DWELL_RULES, DwellRule

K = CustodyKind
T0 = 1_767_225_600_000_000_000
S = 1_000_000_000
MIN = 60 * S
STAGED = "dwell.staged.handed_to_carrier"


def _kinds(events: list[DwellEvent]) -> list[tuple[str, str]]:
    return [(e.kind, e.rule) for e in events]


def test_default_rules_follow_the_design() -> None:
    limits = {r.rule: r.limit_s for r in DEFAULT_DWELL_RULES}
    assert limits == {
        "dwell.received.put_away": 30 * 60,
        STAGED: 20 * 60,
        "dwell.packed.handed_to_carrier": 60 * 60,
    }


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="from_kind"):
        DwellRule(from_kind=K.STAGED, to_kinds=(K.STAGED,), limit_s=60)
    with pytest.raises(ValueError, match="duplicate"):
        DwellTimers([DEFAULT_DWELL_RULES[1], DEFAULT_DWELL_RULES[1]])


def test_staged_and_never_handed_over_warns_then_violates_exactly_on_time() -> None:
    timers = DwellTimers()
    assert timers.on_custody("SH-1", K.STAGED, T0, "dock-1") == []
    warn_at = T0 + 16 * MIN  # 0.8 * 20 min
    assert timers.next_deadline_ns() == warn_at
    assert timers.check(warn_at - 1) == []
    [warn] = timers.check(warn_at)
    assert (warn.kind, warn.rule, warn.at_ns, warn.severity) == ("warn", STAGED, warn_at, "warning")
    assert (warn.started_ns, warn.deadline_ns, warn.elapsed_s, warn.zone) == (
        T0,
        T0 + 20 * MIN,
        16 * 60,
        "dock-1",
    )
    assert timers.next_deadline_ns() == T0 + 20 * MIN
    assert timers.check(T0 + 20 * MIN - 1) == []
    [violated] = timers.check(T0 + 20 * MIN)
    assert (violated.kind, violated.at_ns, violated.severity) == (
        "violated",
        T0 + 20 * MIN,
        "critical",
    )
    assert violated.elapsed_s == violated.limit_s == 20 * 60
    assert timers.next_deadline_ns() is None
    for minutes in (21, 60, 24 * 60):
        assert timers.check(T0 + minutes * MIN) == []
    assert [t.rule for t in timers.running("SH-1")] == [STAGED]


def test_late_check_fires_both_thresholds_at_their_own_times() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    events = timers.check(T0 + 3 * 60 * MIN)
    assert [(e.kind, e.at_ns) for e in events] == [
        ("warn", T0 + 16 * MIN),
        ("violated", T0 + 20 * MIN),
    ]


def test_handed_over_in_time_resolves_without_violation() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    assert timers.check(T0 + 10 * MIN) == []
    [resolved] = timers.on_custody("SH-1", K.HANDED_TO_CARRIER, T0 + 12 * MIN, "dock-1")
    assert (resolved.kind, resolved.elapsed_s, resolved.stopped_by) == (
        "resolved",
        12 * 60,
        K.HANDED_TO_CARRIER,
    )
    assert resolved.severity is None
    assert timers.check(T0 + 60 * MIN) == []
    assert timers.next_deadline_ns() is None


def test_late_handover_after_violation_resolves() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    assert [e.kind for e in timers.check(T0 + 25 * MIN)] == ["warn", "violated"]
    events = timers.on_custody("SH-1", K.HANDED_TO_CARRIER, T0 + 30 * MIN, "dock-1")
    assert [(e.kind, e.at_ns) for e in events] == [("resolved", T0 + 30 * MIN)]


def test_late_handover_before_any_check_reports_what_it_missed() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    events = timers.on_custody("SH-1", K.HANDED_TO_CARRIER, T0 + 30 * MIN, "dock-1")
    assert [(e.kind, e.at_ns) for e in events] == [
        ("warn", T0 + 16 * MIN),
        ("violated", T0 + 20 * MIN),
        ("resolved", T0 + 30 * MIN),
    ]


def test_packed_timer_runs_through_staging_and_stops_at_handover() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.PACKED, T0, "pack-1")
    timers.on_custody("SH-1", K.STAGED, T0 + 45 * MIN, "dock-1")
    assert {t.rule for t in timers.running()} == {"dwell.packed.handed_to_carrier", STAGED}
    events = timers.check(T0 + 50 * MIN)
    assert _kinds(events) == [("warn", "dwell.packed.handed_to_carrier")]
    events = timers.on_custody("SH-1", K.HANDED_TO_CARRIER, T0 + 55 * MIN, "dock-1")
    assert sorted(_kinds(events)) == [
        ("resolved", "dwell.packed.handed_to_carrier"),
        ("resolved", STAGED),
    ]
    assert timers.running() == []


def test_restow_stops_the_staging_timer() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.RECEIVED, T0, "recv-1")
    timers.on_custody("SH-1", K.STAGED, T0 + MIN, "dock-1")  # cross-dock ends receiving
    [resolved] = timers.on_custody("SH-1", K.PUT_AWAY, T0 + 5 * MIN, "cold-1")
    assert resolved.rule == STAGED
    assert timers.running() == []


def test_zone_kind_filter() -> None:
    rule = DwellRule(
        from_kind=K.STAGED,
        to_kinds=(K.HANDED_TO_CARRIER,),
        limit_s=20 * 60,
        zone_kinds=("dock",),
        name="dwell.dock",
    )
    timers = DwellTimers([rule], zone_kinds={"dock-1": "dock", "stage-cold": "staging"})
    timers.on_custody("SH-1", K.STAGED, T0, "stage-cold")
    timers.on_custody("SH-2", K.STAGED, T0, "dock-1")
    timers.on_custody("SH-3", K.STAGED, T0, "unknown-zone")
    assert [t.shipment for t in timers.running()] == ["SH-2"]


def test_repeated_start_does_not_reset_the_clock() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    timers.on_custody("SH-1", K.STAGED, T0 + 10 * MIN, "dock-1")
    assert timers.next_deadline_ns() == T0 + 16 * MIN


def test_restore_keeps_fired_flags() -> None:
    timers = DwellTimers()
    timers.on_custody("SH-1", K.STAGED, T0, "dock-1")
    timers.check(T0 + 17 * MIN)
    saved = timers.running()
    again = DwellTimers()
    again.restore(saved)
    assert [e.kind for e in again.check(T0 + 21 * MIN)] == ["violated"]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def _ev(kind: K, t_ns: int, zone: str, shipment: str = "SH-1", **kw: str) -> CustodyEvent:
    return CustodyEvent(shipment=shipment, kind=kind, zone=zone, actor="dana", ts_ns=t_ns, **kw)


def test_rebuild_after_restart_re_emits_due_thresholds_once(journal: Journal) -> None:
    zones = {"recv-1", "dock-1", "cold-1"}
    ledger = CustodyLedger(journal.connection, "hub-a", zones, set(DEFAULT_PROFILES))
    ledger.apply(_ev(K.RECEIVED, T0, "recv-1"))
    ledger.apply(_ev(K.STAGED, T0 + MIN, "dock-1"))
    ledger.apply(_ev(K.RECEIVED, T0, "recv-1", "SH-2"))
    ledger.apply(_ev(K.PUT_AWAY, T0 + MIN, "cold-1", "SH-2"))
    timers = DwellTimers.rebuild(ledger)
    assert [(t.shipment, t.rule, t.started_ns) for t in timers.running()] == [
        ("SH-1", STAGED, T0 + MIN)
    ]
    now = T0 + 30 * MIN
    assert [e.kind for e in timers.check(now)] == ["warn", "violated"]
    assert timers.check(now + MIN) == []


# -- property: each threshold fires once, in order, at its own time --------------------------

_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["SH-1", "SH-2", "SH-3"]),
        st.sampled_from([*list(K), "check"]),
        st.integers(min_value=0, max_value=90 * 60),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_STEPS)
def test_dwell_events_fire_exactly_once_each(steps: list[tuple[str, str, int]]) -> None:
    timers = DwellTimers()
    rules = timers.rules
    now = T0
    events: list[DwellEvent] = []
    for shipment, action, dt_s in steps:
        now += dt_s * S
        if action == "check":
            events += timers.check(now)
        else:
            events += timers.on_custody(shipment, K(action), now, "z")
    end = now + 10 * 60 * MIN
    events += timers.check(end)
    assert timers.check(end + MIN) == []

    by_timer: dict[tuple[str, str, int], list[DwellEvent]] = {}
    for e in events:
        by_timer.setdefault((e.shipment, e.rule, e.started_ns), []).append(e)
    for (_shipment, rule_name, started), evs in by_timer.items():
        rule = rules[rule_name]
        kinds = [e.kind for e in evs]
        assert len(kinds) == len(set(kinds)), kinds
        order = {"warn": 0, "violated": 1, "resolved": 2}
        assert kinds == sorted(kinds, key=order.__getitem__)
        for e in evs:
            if e.kind == "warn":
                assert e.at_ns == started + rule.warn_ns
            if e.kind == "violated":
                assert e.at_ns == started + rule.limit_ns
        resolved = [e for e in evs if e.kind == "resolved"]
        stop = resolved[0].at_ns if resolved else end
        assert ("warn" in kinds) == (stop >= started + rule.warn_ns)
        assert ("violated" in kinds) == (stop >= started + rule.limit_ns)
    assert timers.next_deadline_ns() is None


# -- budgets ------------------------------------------------------------------------------


def test_budget_counts_only_in_custody_in_tracked_zones() -> None:
    chilled = DEFAULT_PROFILES["chilled"]  # 2..8 °C, 60 min budget, warn at 80 %
    budgets = ShipmentBudgets(DEFAULT_PROFILES, tracked_zones={"cold-1", "dock-1"})
    warm = 12.0

    # Warm cold room before the shipment arrives: does not count.
    budgets.observe_zone("cold-1", T0, warm)
    received = _ev(K.RECEIVED, T0 + 10 * MIN, "recv-1", profile="chilled")
    budgets.on_custody(None, received)
    assert budgets.remaining("SH-1") == chilled.budget_s
    # recv-1 is not tracked: its warm readings do not count either.
    budgets.observe_zone("recv-1", T0 + 11 * MIN, warm, ["SH-1"])
    budgets.observe_zone("recv-1", T0 + 19 * MIN, warm, ["SH-1"])
    assert budgets.remaining("SH-1") == chilled.budget_s

    # Put away at +20 min into the (still warm) cold room: counts from there.
    before = None
    budgets.on_custody(before, _ev(K.PUT_AWAY, T0 + 20 * MIN, "cold-1"))
    budgets.observe_zone("cold-1", T0 + 30 * MIN, warm, ["SH-1"])
    assert budgets.remaining("SH-1") == pytest.approx(50 * 60)
    budgets.observe_zone("cold-1", T0 + 40 * MIN, 5.0, ["SH-1"])  # back in range
    assert budgets.remaining("SH-1") == pytest.approx(40 * 60)
    budgets.observe_zone("cold-1", T0 + 50 * MIN, warm)
    # Another shipment's zone list does not feed SH-1.
    budgets.observe_zone("dock-1", T0 + 52 * MIN, warm, ["SH-1"])

    # Staged on a warm dock at +55: the cold room's warm sample counts up to the move.
    budgets.on_custody(None, _ev(K.STAGED, T0 + 55 * MIN, "dock-1"))
    assert budgets.remaining("SH-1") == pytest.approx(35 * 60)
    budgets.observe_zone("dock-1", T0 + 60 * MIN, warm)
    # Resumed with the dock's last value (warm at +52): 5 min counted by +60.
    assert budgets.remaining("SH-1") == pytest.approx(30 * 60)

    # Handed over at +62: stops counting for good.
    budgets.on_custody(None, _ev(K.HANDED_TO_CARRIER, T0 + 62 * MIN, "dock-1"))
    assert budgets.remaining("SH-1") == pytest.approx(28 * 60)
    budgets.observe_zone("dock-1", T0 + 200 * MIN, warm, ["SH-1"])
    assert budgets.remaining("SH-1") == pytest.approx(28 * 60)
    assert budgets.check(T0 + 300 * MIN) == []
    assert budgets.next_deadline_ns() is None


def test_budget_warns_and_violates_and_timer_catches_a_silent_zone() -> None:
    budgets = ShipmentBudgets(DEFAULT_PROFILES)
    budgets.on_custody(None, _ev(K.RECEIVED, T0, "dock-1", profile="chilled"))
    events = budgets.observe_zone("dock-1", T0, 12.0)
    assert events == []
    assert budgets.next_deadline_ns() == T0 + 60 * MIN
    [warn] = budgets.check(T0 + 50 * MIN)
    assert (warn.kind, warn.at_ns, warn.subject) == ("warn", T0 + 48 * MIN, "SH-1")
    [violated] = budgets.check(T0 + 61 * MIN)
    assert (violated.kind, violated.at_ns) == ("violated", T0 + 60 * MIN)
    assert budgets.observe_zone("dock-1", T0 + 70 * MIN, 12.0) == []
    assert budgets.remaining("SH-1") == 0


def test_shipment_without_profile_has_no_budget_unless_a_default_is_set() -> None:
    budgets = ShipmentBudgets(DEFAULT_PROFILES)
    budgets.on_custody(None, _ev(K.RECEIVED, T0, "dock-1"))
    assert budgets.remaining("SH-1") is None
    assert budgets.observe_zone("dock-1", T0 + MIN, 30.0) == []
    defaulted = ShipmentBudgets(DEFAULT_PROFILES, default_profile="frozen")
    defaulted.on_custody(None, _ev(K.RECEIVED, T0, "dock-1"))
    assert defaulted.remaining("SH-1") == DEFAULT_PROFILES["frozen"].budget_s
    with pytest.raises(ValueError, match="default_profile"):
        ShipmentBudgets(DEFAULT_PROFILES, default_profile="bananas")


def test_budget_replay_after_restart(journal: Journal) -> None:
    zones = {"recv-1", "cold-1"}
    ledger = CustodyLedger(journal.connection, "hub-a", zones, set(DEFAULT_PROFILES))
    ledger.apply(_ev(K.RECEIVED, T0, "recv-1", profile="chilled"))
    ledger.apply(_ev(K.PUT_AWAY, T0 + 10 * MIN, "cold-1"))
    samples = {
        "recv-1": [(T0 + i * MIN, 12.0) for i in range(0, 10)],
        "cold-1": [(T0 + i * MIN, 12.0 if i < 15 else 5.0) for i in range(10, 30)],
    }

    def zone_samples(zone: str, start: int, end: int | None) -> list[tuple[int, float]]:
        return [(t, v) for t, v in samples[zone] if t >= start and (end is None or t < end)]

    budgets = ShipmentBudgets(DEFAULT_PROFILES)
    assert budgets.replay(ledger, zone_samples) == []
    # recv-1: 10 min warm, cold-1: 5 min warm (10..15), then in range.
    assert budgets.remaining("SH-1") == pytest.approx(45 * 60)
