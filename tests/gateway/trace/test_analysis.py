"""The trace analysis as a specification: verdicts, gaps, MKT, alarms, chain (no services)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import pytest

from gateway.config import GatewayConfig
from gateway.core.clock import iso_utc
from gateway.core.model import Quality
from gateway.trace.analysis import TraceResult, analyze, custody_spans
from gateway.trace.query import AlarmRecord, CustodyStep, TraceInputError, TracePoint

S = 1_000_000_000
MIN = 60 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z

CONFIG = GatewayConfig.model_validate(
    {
        "hub": {"id": "hub-a", "timezone": "Europe/Lisbon"},
        "zones": [
            {"id": "recv", "kind": "receiving", "profile": "chilled"},
            {"id": "cold", "kind": "cold_storage", "profile": "chilled"},
            {"id": "dock", "kind": "dock", "profile": "chilled"},
        ],
        "sensors": [
            {"id": "s-recv", "zone": "recv", "interval_s": 60, "calibration_id": "CAL-1"},
            {"id": "s-cold-1", "zone": "cold", "interval_s": 60, "calibration_id": "CAL-2"},
            {"id": "s-cold-2", "zone": "cold", "interval_s": 60, "calibration_id": "CAL-3"},
            {"id": "s-dock", "zone": "dock", "interval_s": 60},
        ],
    }
)
CHILLED = CONFIG.all_profiles()["chilled"]
CHAIN_OK = SimpleNamespace(ok=True, first_bad_seq=None, reason="")

# received in recv, 20 min later into cold store, 5 h later staged on the dock, 15 min later
# handed to the carrier
STEPS = [
    CustodyStep(T0, "received", "recv", "ana", temp_c=None, seq=1),
    CustodyStep(T0 + 20 * MIN, "put_away", "cold", "ben", seq=2),
    CustodyStep(T0 + 320 * MIN, "staged", "dock", "ana", seq=3),
    CustodyStep(T0 + 335 * MIN, "handed_to_carrier", "dock", "ana", carrier="DHL", seq=4),
]
SENSORS = {"recv": ["s-recv"], "cold": ["s-cold-1", "s-cold-2"], "dock": ["s-dock"]}


def readings(
    start: int,
    end: int,
    temp: Callable[[str, str, int], float | None] = lambda zone, sensor, t: 5.0,
    quality: Callable[[str, int], int] = lambda sensor, t: 0,
) -> list[TracePoint]:
    """1-minute readings of every sensor in [start, end); temp None = no reading."""
    out = []
    for zone, sensors in SENSORS.items():
        for i, sensor in enumerate(sensors):
            t = start + i * S  # sensors of a zone are a second apart
            while t < end:
                value = temp(zone, sensor, t)
                if value is not None:
                    out.append(TracePoint(t, zone, sensor, value, quality(sensor, t)))
                t += MIN
    return out


def trace(
    points: Sequence[TracePoint],
    steps: Sequence[CustodyStep] = STEPS,
    alerts: Sequence[AlarmRecord] = (),
    chain: object = CHAIN_OK,
    as_of: int = T0 + 24 * 60 * MIN,
) -> TraceResult:
    return analyze(
        "SH-1",
        "hub-a",
        steps,
        points,
        alerts,
        CHILLED,
        CONFIG.sensors,
        CONFIG.zones,
        as_of_ns=as_of,
        chain=chain,
        timezone="Europe/Lisbon",
    )


def codes(result: TraceResult) -> list[str]:
    return [r.code for r in result.reasons]


def test_a_clean_shipment_is_accepted_with_its_numbers_stated() -> None:
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN))
    assert result.verdict == "accept", result.reasons
    assert result.reasons == []
    assert [(s.zone, s.start_ns, s.end_ns) for s in result.spans] == [
        ("recv", T0, T0 + 20 * MIN),
        ("cold", T0 + 20 * MIN, T0 + 320 * MIN),
        ("dock", T0 + 320 * MIN, T0 + 335 * MIN),
    ]
    assert result.stats.mkt_c == pytest.approx(5.0)
    assert result.stats.average_c == pytest.approx(5.0)
    assert result.stats.dh_kj_per_mol == pytest.approx(83.144)
    assert result.stats.dh_over_r_k == pytest.approx(10_000.0)
    assert (result.stats.window_start_ns, result.stats.window_end_ns) == (T0, T0 + 335 * MIN)
    assert result.budget.spent_s == 0
    assert result.gaps == []
    assert result.excursions == []
    assert [h.temp_c for h in result.timeline] == [5.0, 5.0, 5.0, 5.0]
    assert {h.temp_source for h in result.timeline} == {"readings"}
    assert {(u.sensor, u.calibration_id) for u in result.sensors} == {
        ("s-recv", "CAL-1"),
        ("s-cold-1", "CAL-2"),
        ("s-cold-2", "CAL-3"),
        ("s-dock", None),
    }
    assert result.chain.status == "verified"
    # every reading of the custody zones while the shipment was there is flagged in custody
    inside = [p for p, flag in zip(result.points, result.in_custody, strict=True) if flag]
    assert all(p.zone == "cold" for p in inside if T0 + 21 * MIN <= p.ts_ns < T0 + 319 * MIN)
    assert not any(
        flag for p, flag in zip(result.points, result.in_custody, strict=True) if p.ts_ns < T0
    )


def test_mkt_matches_the_design_reference_over_the_custody_span() -> None:
    # 2 h at 20 °C, 4 h at 2 °C, 1 h at 25 °C in one zone: MKT 15.68 °C (DESIGN.md)
    steps = [
        CustodyStep(T0, "received", "recv", "ana"),
        CustodyStep(T0 + 420 * MIN, "handed_to_carrier", "recv", "ana"),
    ]

    def temp(zone: str, sensor: str, t: int) -> float:
        minute = (t - T0) // MIN
        return 20.0 if minute < 120 else 2.0 if minute < 360 else 25.0

    points = [p for p in readings(T0, T0 + 420 * MIN, temp) if p.zone == "recv"]
    result = trace(points, steps)
    assert result.stats.mkt_c == pytest.approx(15.68, abs=0.01)
    assert result.stats.covered_s == pytest.approx(420 * 60)


def test_an_unverified_chain_means_review() -> None:
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN), chain=None)
    assert result.verdict == "review"
    assert codes(result) == ["chain_not_verified"]
    assert result.chain.status == "not_verified"


def test_a_broken_chain_means_reject_naming_the_record() -> None:
    broken = SimpleNamespace(ok=False, first_bad_seq=3, reason="hash mismatch")
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN), chain=broken)
    assert result.verdict == "reject"
    assert "custody hash chain broken at record seq 3: hash mismatch" in result.reasons[0].text


def test_a_chain_broken_after_the_shipments_records_means_review() -> None:
    broken = SimpleNamespace(ok=False, first_bad_seq=7, reason="hash mismatch")
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN), chain=broken)
    assert result.verdict == "review"
    (reason,) = result.reasons
    assert reason.code == "chain_broken"
    assert "after this shipment's records, which end at seq 4" in reason.text


def test_a_warm_dock_past_the_budget_is_rejected_with_that_reason() -> None:
    steps = [
        *STEPS[:3],
        CustodyStep(T0 + 400 * MIN, "handed_to_carrier", "dock", "ana"),  # 80 min on the dock
    ]

    def temp(zone: str, sensor: str, t: int) -> float:
        return 12.0 if zone == "dock" else 5.0

    result = trace(readings(T0 - 15 * MIN, T0 + 420 * MIN, temp), steps)
    assert result.verdict == "reject"
    assert result.budget.state == "violated"
    assert result.budget.spent_s == pytest.approx(80 * 60)
    assert result.budget.violated_at_ns == T0 + 380 * MIN  # 60 min after staging
    budget = next(r for r in result.reasons if r.code == "budget_spent")
    assert "80.0 min reached the chilled budget of 60.0 min" in budget.text
    assert "excursion" in codes(result)
    assert "dwell" in codes(result)  # staged -> handed_to_carrier limit 20 min
    (x,) = result.excursions
    assert (x.start_ns, x.end_ns, x.peak_c, x.zones) == (
        T0 + 320 * MIN,
        T0 + 400 * MIN,
        12.0,
        ("dock",),
    )
    assert x.alarmed


def test_a_stale_zone_is_a_data_gap_with_its_times_and_review() -> None:
    # both cold-store sensors silent from 02:00 to 02:40 (last reading 01:59:01, next 02:40);
    # the last value stands for the max gap (3 x 60 s), the rest is unknown
    def temp(zone: str, sensor: str, t: int) -> float | None:
        if zone == "cold" and T0 + 120 * MIN <= t < T0 + 160 * MIN:
            return None
        return 5.0

    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN, temp))
    assert result.verdict == "review"
    (gap,) = result.gaps
    assert (gap.zone, gap.start_ns, gap.end_ns) == ("cold", T0 + 122 * MIN + S, T0 + 160 * MIN)
    assert gap.limit_s == 180
    reason = next(r for r in result.reasons if r.code == "data_gap")
    assert iso_utc(gap.start_ns) in reason.text and iso_utc(gap.end_ns) in reason.text
    assert "unknown" in reason.text
    # the unknown time is not credited to the average or MKT
    assert result.stats.covered_s == pytest.approx(335 * 60 - gap.duration_s, abs=2)
    assert {f.sensor for f in result.faults if f.kind == "stale"} == {"s-cold-1", "s-cold-2"}


def test_one_of_two_sensors_stale_is_a_sensor_fault_not_a_gap() -> None:
    def temp(zone: str, sensor: str, t: int) -> float | None:
        return None if sensor == "s-cold-2" and t > T0 + 100 * MIN else 5.0

    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN, temp))
    assert result.gaps == []
    assert result.verdict == "accept"
    (fault,) = result.faults
    assert (fault.sensor, fault.kind) == ("s-cold-2", "stale")


def test_short_excursions_under_the_delay_reach_the_warn_fraction_review() -> None:
    # five 10-minute door openings at 9 °C in the cold store: 50 of 60 min budget spent
    def temp(zone: str, sensor: str, t: int) -> float:
        minute = (t - T0) // MIN
        return (
            9.0
            if zone == "cold" and minute >= 30 and (minute - 30) % 50 < 10 and minute < 280
            else 5.0
        )

    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN, temp))
    assert result.budget.state == "warn"
    assert result.budget.spent_s == pytest.approx(50 * 60, abs=5)  # sensors 1 s apart
    assert len(result.excursions) == 5
    assert not any(x.alarmed for x in result.excursions)
    assert result.verdict == "review"
    assert codes(result) == ["budget_warn"]


def test_flagged_readings_are_ignored_and_listed() -> None:
    def temp(zone: str, sensor: str, t: int) -> float:
        return 85.0 if sensor == "s-cold-1" and (t - T0) // MIN in range(60, 90) else 5.0

    def quality(sensor: str, t: int) -> int:
        return (
            int(Quality.SENTINEL)
            if sensor == "s-cold-1" and (t - T0) // MIN in range(60, 90)
            else 0
        )

    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN, temp, quality))
    assert result.verdict == "accept"
    assert result.stats.max is not None and result.stats.max.temp_c == 5.0
    assert any(f.kind == "flagged" and f.sensor == "s-cold-1" for f in result.faults)
    assert next(u for u in result.sensors if u.sensor == "s-cold-1").flagged == 30


def _alert(severity: str, acknowledged: bool, subject: str = "cold") -> AlarmRecord:
    return AlarmRecord(
        alert_id=f"excursion.single-{severity[:4]}{int(acknowledged)}000000000000",
        rule="excursion.single",
        severity=severity,
        subject=subject,
        state="acknowledged" if acknowledged else "raised",
        started_ns=T0 + 60 * MIN,
        raised_ns=T0 + 75 * MIN,
        acknowledged_ns=T0 + 80 * MIN if acknowledged else None,
        acknowledged_by="carla" if acknowledged else None,
    )


def test_unacknowledged_critical_alerts_mean_review_acknowledged_ones_do_not() -> None:
    points = readings(T0 - 15 * MIN, T0 + 350 * MIN)
    acked = trace(points, alerts=[_alert("critical", True)])
    assert acked.verdict == "accept"
    assert acked.alarms[0].acknowledged_by == "carla"
    open_alert = trace(points, alerts=[_alert("critical", False), _alert("warning", False)])
    assert open_alert.verdict == "review"
    assert codes(open_alert) == ["unacknowledged_alert"]


def test_alerts_on_zones_outside_the_shipments_time_there_are_left_out() -> None:
    later = _alert("critical", False, subject="recv")  # recv alert while the shipment was in cold
    result = trace(readings(T0 - 15 * MIN, T0 + 350 * MIN), alerts=[later])
    assert result.alarms == []
    assert result.verdict == "accept"


def test_recorded_handoff_temperature_wins_and_open_custody_ends_at_as_of() -> None:
    steps = [CustodyStep(T0, "received", "recv", "ana", temp_c=4.2), STEPS[1]]
    result = trace(readings(T0 - 15 * MIN, T0 + 120 * MIN), steps, as_of=T0 + 120 * MIN)
    assert (result.timeline[0].temp_c, result.timeline[0].temp_source) == (4.2, "recorded")
    assert result.custody_open
    assert result.spans[-1].end_ns == T0 + 120 * MIN and result.spans[-1].open
    assert "custody_open" in codes(result)
    assert result.verdict == "accept"  # info only


def test_no_custody_events_is_an_unknown_shipment() -> None:
    with pytest.raises(TraceInputError, match="unknown shipment SH-1: no custody events"):
        trace([], steps=[])


def test_custody_spans_merge_same_zone_and_end_at_handover() -> None:
    steps = [
        CustodyStep(T0, "received", "recv", "a"),
        CustodyStep(T0 + MIN, "put_away", "cold", "a"),
        CustodyStep(T0 + 2 * MIN, "put_away", "cold", "a"),  # same zone: merged
        CustodyStep(T0 + 3 * MIN, "handed_to_carrier", "dock", "a"),
        CustodyStep(T0 + 9 * MIN, "returned", "recv", "a"),
    ]
    assert custody_spans(steps, T0 + 10 * MIN) == [
        ("recv", T0, T0 + MIN, False),
        ("cold", T0 + MIN, T0 + 3 * MIN, False),
        ("recv", T0 + 9 * MIN, T0 + 10 * MIN, True),
    ]
