"""The journal's disk budget: delivered readings go first, then downsampling; custody stays."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from gateway.alerts.store import AlertStore, Severity
from gateway.config import parse_config
from gateway.core.model import Reading
from gateway.custody.events import CustodyEvent, CustodyKind
from gateway.custody.ledger import CustodyLedger
from gateway.journal.store import BUDGET_TARGET, BudgetResult, Journal
from gateway.runtime.daemon import Gateway

S = 1_000_000_000
T0 = 1_700_000_000 * S
FAR = T0 + 10**6 * S  # "protect readings received after this": none are
SENSORS = [f"s{i}" for i in range(20)]
MINUTES = 120  # 2 h at 1 Hz x 20 sensors = 144,000 readings


def _fill(j: Journal) -> int:
    batch: list[Reading] = []
    for t in range(MINUTES * 60):
        for k, sensor in enumerate(SENSORS):
            ts = T0 + t * S
            batch.append(Reading(sensor, ts, ts + 5, 4.0 + k / 10, "mqtt:n", f"z{k % 4}", seq=t))
        if len(batch) >= 20_000:
            j.commit_batch(batch, [], 0)
            batch = []
    return j.commit_batch(batch, [], 0)


def _all_steps(j: Journal, budget: int, sinks: list[str], protect_after: int) -> BudgetResult:
    """enforce_budget until done, as the daemon runs it; the summed result."""
    removed = diagnostics = thinned = steps = 0
    resume = 0
    while True:
        step = j.enforce_budget(budget, sinks, 60 * S, protect_after, 0, resume_id=resume)
        steps += 1
        removed += step.removed_delivered
        diagnostics += step.removed_diagnostics
        thinned += step.downsampled
        if not step.more:
            return BudgetResult(step.used_bytes, removed, diagnostics, thinned, step.over)
        resume = step.resume_id
        assert steps < 1000


def _evidence(j: Journal) -> tuple[list[object], list[object]]:
    """Custody and alert rows: what the budget must never touch."""
    db = j.connection
    return (
        db.execute("SELECT * FROM custody_events ORDER BY id").fetchall(),
        db.execute("SELECT * FROM alerts ORDER BY id").fetchall(),
    )


def _journal_with_evidence(tmp_path: Path) -> tuple[Journal, int]:
    j = Journal(tmp_path / "j.db")
    ledger = CustodyLedger(j.connection, "h", {"z0"}, set())
    ledger.apply(
        CustodyEvent.model_validate(
            {
                "shipment": "SH-1",
                "kind": CustodyKind.RECEIVED,
                "zone": "z0",
                "actor": "a",
                "ts_ns": T0,
            }
        ),
        temp_c=4.0,
    )
    AlertStore(j.connection, "h").raise_alert(
        "excursion", "z0", Severity.CRITICAL, T0, T0, 9.0, 8.0, "warm", {}
    )
    return j, _fill(j)


def test_under_budget_nothing_happens(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    result = j.enforce_budget(j.used_bytes() + 1, ["influx"], 60 * S, FAR, 0)
    assert (result.removed_delivered, result.downsampled, result.over) == (0, 0, False)
    assert j.count("readings") == last
    j.close()


def test_delivered_readings_go_first_and_undelivered_stay_whole(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    evidence = _evidence(j)
    j.set_cursor("influx", "readings", last // 2, 0)  # half delivered
    budget = int(j.used_bytes() * 0.8)  # freeing most of the delivered half is enough
    result = _all_steps(j, budget, ["influx"], FAR)
    assert result.downsampled == 0
    assert 0 < result.removed_delivered <= last // 2
    assert j.used_bytes() <= budget * BUDGET_TARGET
    ids = [rid for rid, _ in j.readings_after(last // 2, last)]
    assert len(ids) == last - last // 2, "every undelivered reading is still there"
    oldest_left = j.readings_after(0, 1)[0][0]
    assert oldest_left == result.removed_delivered + 1, "oldest delivered went first"
    assert _evidence(j) == evidence
    j.close()


def test_undelivered_readings_are_downsampled_oldest_first(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    evidence = _evidence(j)
    protect_after = T0 + (MINUTES - 10) * 60 * S  # the newest 10 minutes stay whole
    budget = int(j.used_bytes() * 0.3)  # nothing delivered: only downsampling helps
    result = _all_steps(j, budget, ["influx"], protect_after)
    assert result.removed_delivered == 0
    assert result.downsampled > 0
    assert not result.over
    assert j.used_bytes() <= budget * BUDGET_TARGET
    rows = [r for _, r in j.readings_after(0, last)]
    assert len(rows) == last - result.downsampled
    per_bucket = Counter((r.sensor, (r.ts_ns - T0) // (60 * S)) for r in rows)
    # Every sensor keeps at least one reading in every minute: thinned, never a hole.
    assert set(per_bucket) == {(s, m) for s in SENSORS for m in range(MINUTES)}
    recent = [r for r in rows if r.received_ns >= protect_after]
    assert len(recent) == 10 * 60 * len(SENSORS), "the protected newest readings are whole"
    thinned = [n for (_, m), n in per_bucket.items() if m == 0]
    assert max(thinned) <= 2, "the oldest minutes were thinned first"
    assert _evidence(j) == evidence
    j.close()


async def test_gateway_raises_its_own_alert_and_counts_the_thinned_readings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    j = Journal(path)
    last = _fill(j)
    size_mb = j.used_bytes() / 1e6
    j.close()
    config = parse_config(
        {
            "hub": {"id": "h"},
            "journal": {"path": str(path), "max_size_mb": size_mb * 0.5, "downsample_s": 60},
            # an InfluxDB that is down: nothing gets delivered
            "sinks": {"influx": {"url": "http://127.0.0.1:9", "database": "x"}},
        }
    )
    gateway = Gateway(config)
    gateway.shutdown_flush_s = 0.1  # InfluxDB is down: do not wait for a drain at the end
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(20):
            while not any(a.rule == "journal_budget" for a in gateway.alerts.active()):
                await asyncio.sleep(0.05)
        (alert,) = [a for a in gateway.alerts.active() if a.rule == "journal_budget"]
        assert (alert.subject, str(alert.severity)) == ("h", "critical")
        thinned = gateway.counters.dropped["journal:downsampled"]
        assert thinned > 0
        assert gateway.journal.count("readings") == last - thinned
        status = json.loads(json.dumps(gateway.status.snapshot()))
        assert status["counters"]["dropped"]["journal:downsampled"] == thinned
    finally:
        stop.set()
        await task


def test_journal_only_never_deletes_readings_only_thins_old_ones(tmp_path: Path) -> None:
    """With no sink the journal is the only copy: nothing counts as delivered."""
    j, last = _journal_with_evidence(tmp_path)
    protect_after = T0 + (MINUTES - 30) * 60 * S
    result = _all_steps(j, int(j.used_bytes() * 0.5), [], protect_after)
    assert result.removed_delivered == 0
    assert result.downsampled > 0
    rows = [r for _, r in j.readings_after(0, last)]
    per_bucket = Counter((r.sensor, (r.ts_ns - T0) // (60 * S)) for r in rows)
    assert set(per_bucket) == {(s, m) for s in SENSORS for m in range(MINUTES)}
    assert sum(1 for r in rows if r.received_ns >= protect_after) == 30 * 60 * len(SENSORS)
    j.close()


def test_quarantined_readings_survive_budget_and_prune(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    j.set_cursor("influx", "readings", last, 0)  # all delivered, reading 7 refused for good
    j.quarantine("influx", "readings", 7, "400 bad field", 0)
    _all_steps(j, int(j.used_bytes() * 0.2), ["influx"], FAR)
    j.prune(FAR, ["influx"])
    assert [rid for rid, _ in j.readings_after(0, 10)][:1] == [7]
    j.close()


def test_backlog_counts_rows_left_after_thinning(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    assert j.backlog("influx").records == last
    result = _all_steps(j, int(j.used_bytes() * 0.3), ["influx"], FAR)
    assert result.downsampled > 0
    backlog = j.backlog("influx").records
    left = j.count("readings")
    # exact but for one thinning chunk straddling the cursor (none here: cursor at 0)
    assert backlog == left == last - result.downsampled
    j.close()


def test_a_pass_is_bounded_and_resumes(tmp_path: Path) -> None:
    j, _ = _journal_with_evidence(tmp_path)
    budget = int(j.used_bytes() * 0.3)
    first = j.enforce_budget(budget, ["influx"], 60 * S, FAR, 0, max_statements=2)
    assert first.more and first.resume_id > 0 and not first.over
    assert first.downsampled > 0
    rest = _all_steps(j, budget, ["influx"], FAR)
    assert not rest.over
    assert j.used_bytes() <= budget * BUDGET_TARGET
    j.close()


async def test_open_shipments_keep_their_readings_for_the_budget_replay(tmp_path: Path) -> None:
    """A restart replays an open shipment's budget from its zone's readings: keep them."""
    path = tmp_path / "j.db"
    j = Journal(path)
    last = _fill(j)
    size_mb = j.used_bytes() / 1e6
    j.close()
    config = parse_config(
        {
            "hub": {"id": "h"},
            "journal": {
                "path": str(path),
                "max_size_mb": size_mb * 0.5,
                "retention_days": 100_000,  # the 2023 shipment counts as recent
            },
            "zones": [{"id": "z0", "kind": "cold_storage"}],
            "sinks": {"influx": {"url": "http://127.0.0.1:9", "database": "x"}},
        }
    )
    received = T0 + 90 * 60 * S  # the shipment came in 90 minutes into the data
    gateway = Gateway(config)
    gateway.shutdown_flush_s = 0.1
    body = {"shipment": "SH-9", "event": "received", "zone": "z0", "actor": "a", "ts_ns": received}
    await gateway.engine.apply_custody(json.dumps(body).encode(), "test")
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(20):
            while not gateway.counters.dropped.get("journal:downsampled"):
                await asyncio.sleep(0.05)
        rows = [r for _, r in gateway.journal.readings_after(0, last)]
        kept = [r for r in rows if r.received_ns >= received]
        assert len(kept) == (MINUTES - 90) * 60 * len(SENSORS)
        assert len(rows) < last
    finally:
        stop.set()
        await task
