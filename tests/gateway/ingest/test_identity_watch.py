"""The identity alerts: raised at a driver's first forged or conflicting reading, one per burst."""

from __future__ import annotations

from gateway.core.clock import ManualClock
from gateway.core.model import Reject
from gateway.ingest.identity import IdentityAlert, IdentityWatch


def _reject(reason: str, source: str = "mqtt:nodes") -> Reject:
    return Reject(reason, source, b"{}", "sensors/evil/telemetry", "sensor 'cr1-a' ...", True)


def test_one_alert_per_reason_and_driver_cleared_after_an_hour_of_quiet() -> None:
    clock = ManualClock()
    seen: list[IdentityAlert] = []
    watch = IdentityWatch(clock, seen.extend)
    watch.observe([_reject("identity_mismatch")] * 3 + [_reject("not_json")])
    watch.observe([_reject("conflicting_duplicate"), _reject("identity_mismatch", "serial:a")])
    assert [(a.kind, a.rule, a.source) for a in seen] == [
        ("raised", "identity_mismatch", "mqtt:nodes"),
        ("raised", "conflicting_duplicate", "mqtt:nodes"),
        ("raised", "identity_mismatch", "serial:a"),
    ]
    assert "sensors/evil/telemetry" in str(seen[0].details)
    clock.advance(3599)
    watch.sweep()
    assert len(seen) == 3
    watch.observe([_reject("identity_mismatch")])  # still going: no second raise
    clock.advance(1)
    watch.sweep()
    cleared = [(a.rule, a.source) for a in seen if a.kind == "cleared"]
    assert cleared == [("conflicting_duplicate", "mqtt:nodes"), ("identity_mismatch", "serial:a")]
    clock.advance(3600)
    watch.sweep()
    assert seen[-1].kind == "cleared" and seen[-1].count == 4  # three, then one more


def test_alerts_active_before_a_restart_clear_after_quiet() -> None:
    clock = ManualClock()
    seen: list[IdentityAlert] = []
    watch = IdentityWatch(clock, seen.extend)
    watch.restore([("identity_mismatch", "mqtt:nodes")])
    watch.observe([_reject("identity_mismatch")])
    assert seen == []  # already raised before the restart
    clock.advance(3600)
    watch.sweep()
    assert [(a.kind, a.rule) for a in seen] == [("cleared", "identity_mismatch")]
