"""The journal's disk budget: delivered readings go first, then downsampling; custody stays."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from gateway.alerts import AlertStore, Severity
from gateway.config import parse_config
from gateway.custody import CustodyEvent, CustodyKind, CustodyLedger
from gateway.daemon import Gateway
from gateway.journal import BUDGET_TARGET, Journal
from gateway.model import Reading

S = 1_000_000_000
T0 = 1_700_000_000 * S
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
    result = j.enforce_budget(j.used_bytes() + 1, ["influx"], 60 * S, T0 + 10**6 * S)
    assert (result.removed_delivered, result.downsampled, result.over) == (0, 0, False)
    assert j.count("readings") == last
    j.close()


def test_delivered_readings_go_first_and_undelivered_stay_whole(tmp_path: Path) -> None:
    j, last = _journal_with_evidence(tmp_path)
    evidence = _evidence(j)
    j.set_cursor("influx", "readings", last // 2, 0)  # half delivered
    budget = int(j.used_bytes() * 0.8)  # freeing most of the delivered half is enough
    result = j.enforce_budget(budget, ["influx"], 60 * S, T0 + 10**6 * S)
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
    result = j.enforce_budget(budget, ["influx"], 60 * S, protect_after)
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
        status = json.loads(json.dumps(gateway.status()))
        assert status["counters"]["dropped"]["journal:downsampled"] == thinned
    finally:
        stop.set()
        await task
