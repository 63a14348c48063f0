"""Backfill: a journal holding an outage's backlog drains into InfluxDB while live data flows.

The journal is filled directly with Journal.commit_batch (batches of 50,000 rows): 200
sensors at 1 Hz for ``--hours`` hours (24 h = 17.28 M readings; ``--hours 1`` = 720,000
and the time to empty is extrapolated linearly to 24 h, the forwarder's cost per point
does not depend on the backlog's size: it reads by primary key after a cursor).

The gateway then runs in-process with the InfluxDB v1 sink to a private influxd and a
synthetic live driver: the same 200 sensors at 1 Hz, now. ``--alert-after`` seconds in,
zone z0 goes out of range (alarm delay 0), which raises an alert. The forwarder drains
streams in order alerts, custody, gateway_health, readings, so the alert must land in
InfluxDB while most of the readings backlog is still waiting.

Baseline in the same run: a bare writer POSTing the same line protocol, batch for batch
(read from the journal beforehand, no gateway), to the same influxd.

    .venv/bin/python bench/backfill.py --hours 1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3

from bench.common import influxdb, reading_count, sensors_doc, workdir
from gateway.config import parse_config
from gateway.core.model import Delivery, RawSample, Reading
from gateway.journal.store import Journal
from gateway.outbox.lineprotocol import reading_line
from gateway.outbox.streams import STREAM_READINGS
from gateway.runtime.daemon import Gateway

SENSORS = [f"s{i:03d}" for i in range(200)]
ZONES = 20
NS = 1_000_000_000


def fill(path: Path, hours: float, end_ns: int) -> int:
    """200 sensors at 1 Hz for ``hours`` before end_ns, committed in big batches."""
    journal = Journal(path, "normal")
    seconds = int(hours * 3600)
    start = end_ns - seconds * NS
    zone_of = {s: f"z{i % ZONES}" for i, s in enumerate(SENSORS)}
    batch: list[Reading] = []
    total = 0
    for t in range(seconds):
        ts = start + t * NS
        for s in SENSORS:
            batch.append(Reading(s, ts, ts, 4.0 + (t % 600) / 1000, "mqtt:nodes", zone_of[s]))
        if len(batch) >= 50_000:
            journal.commit_batch(batch, [], ts)
            total += len(batch)
            batch = []
    if batch:
        journal.commit_batch(batch, [], end_ns)
        total += len(batch)
    journal.close()
    return total


class LiveDriver:
    """200 sensors at 1 Hz, live; zone z0 goes to 12 °C after ``hot_after`` seconds."""

    def __init__(self, hot_after: float) -> None:
        self.name = "live"
        self.hot_after = hot_after
        self.hot_at: float | None = None

    async def deliveries(self) -> AsyncIterator[Delivery]:
        yield Delivery()
        start = time.monotonic()
        seq = 0
        while True:
            seq += 1
            now = time.time_ns()
            hot = time.monotonic() - start >= self.hot_after
            if hot and self.hot_at is None:
                self.hot_at = time.time()
            yield Delivery(
                samples=[
                    RawSample(s, 12.0 if hot and i % ZONES == 0 else 4.0, now, now, "live", seq=seq)
                    for i, s in enumerate(SENSORS)
                ]
            )
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        return None


def bare_rate(journal_path: Path, influx: Any, batch: int, limit: int) -> float:
    """Baseline: POST the same line protocol, batch for batch, with one pooled connection."""
    journal = Journal(journal_path, "normal")
    bodies = []
    after = 0
    while after < limit:
        rows = journal.readings_after(after, batch)
        if not rows:
            break
        bodies.append("\n".join(reading_line("bench", r) for _, r in rows).encode())
        after = rows[-1][0]
    journal.close()
    influx.drop_database("bare")
    influx.create_database("bare")
    pool = urllib3.HTTPConnectionPool("127.0.0.1", influx.port, maxsize=1)
    t0 = time.time()
    for body in bodies:
        r = pool.request("POST", "/write?db=bare&precision=ns", body=body)
        assert r.status == 204, r.data
    return after / (time.time() - t0)


async def drain(args: argparse.Namespace, journal_path: Path, influx: Any) -> dict[str, Any]:
    """Run the gateway on the filled journal until the readings backlog is gone."""
    doc = {
        "hub": {"id": "bench"},
        "journal": {"path": str(journal_path), "synchronous": "normal"},
        "status_interval_s": 1.0,
        "profiles": {"chilled": {"min_c": 2.0, "max_c": 8.0, "alarm_delay_s": 0}},
        "zones": sensors_doc(SENSORS, ZONES)["zones"],
        "sensors": sensors_doc(SENSORS, ZONES)["sensors"],
        "sinks": {
            "influx": {
                "api": "v1",
                "url": influx.url,
                "database": "coldchain",
                "batch_size": args.batch_size,
            }
        },
    }
    gateway = Gateway(parse_config(doc))
    driver = LiveDriver(args.alert_after)
    gateway.drivers = [driver]
    stop = asyncio.Event()
    t0 = time.time()
    task = asyncio.create_task(gateway.run(stop))
    await gateway.ready.wait()
    forwarder = gateway.forwarders[0]
    backlog = await gateway.runner.call(gateway.journal.last_id)
    alert_landed: float | None = None
    backlog_at_alert = 0
    samples = []
    while True:
        await asyncio.sleep(0.05)
        cursors = forwarder.cursors
        last = gateway.ingest.last_id
        if alert_landed is None and cursors.get("alerts", 0) > 0:
            alert_landed = time.time()
            backlog_at_alert = last - cursors.get(STREAM_READINGS, 0)
        samples.append((time.time(), cursors.get(STREAM_READINGS, 0)))
        if cursors.get(STREAM_READINGS, 0) >= backlog and alert_landed is not None:
            break
        if time.time() - t0 > args.timeout:
            break
    emptied = time.time()
    stop.set()
    await task
    return {
        "backlog": backlog,
        "seconds": emptied - t0,
        "rate": backlog / (emptied - t0),
        "alert_raised_s": (driver.hot_at or float("nan")) - t0,
        "alert_landed_s": (alert_landed or float("nan")) - t0,
        "backlog_at_alert": backlog_at_alert,
        "written": gateway.counters.written.get("influx", 0),
    }


def main() -> None:
    """Fill, measure the bare baseline, drain with the gateway, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=24.0, help="outage length (200 sensors, 1 Hz)")
    p.add_argument("--batch-size", type=int, default=5000, help="InfluxDB sink batch_size")
    p.add_argument("--alert-after", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = workdir("backfill")
    journal_path = base / "journal.db"
    t = time.time()
    n = fill(journal_path, args.hours, time.time_ns() - 10 * NS)
    fill_s = time.time() - t
    print(f"journal filled: {n} readings in {fill_s:.1f} s ({n / fill_s:.0f} rows/s)", flush=True)
    with influxdb(base) as influx:
        bare = bare_rate(journal_path, influx, args.batch_size, min(n, 500_000))
        print(f"bare writer: {bare:.0f} points/s", flush=True)
        r = asyncio.run(drain(args, journal_path, influx))
        stored = reading_count(influx)
    scale = 24 / args.hours
    print()
    print(
        f"backlog: {r['backlog']} readings (200 sensors x 1 Hz x {args.hours:g} h),"
        f" batch_size {args.batch_size}, live 200 readings/s during the drain"
    )
    print(f"{'writer':<44}{'points/s':>10}{'ratio':>7}")
    print(f"{'baseline: bare POST of the same batches':<44}{bare:>10.0f}{1.0:>7.2f}")
    print(
        f"{'gateway forwarder (journal -> InfluxDB)':<44}{r['rate']:>10.0f}{r['rate'] / bare:>7.2f}"
    )
    print(
        f"time to empty: {r['seconds']:.1f} s"
        + (f" (x{scale:g} -> {r['seconds'] * scale / 60:.1f} min for 24 h)" if scale != 1 else "")
    )
    print(
        f"alert: zone z0 out of range at +{r['alert_raised_s']:.1f} s, in InfluxDB at"
        f" +{r['alert_landed_s']:.1f} s with {r['backlog_at_alert']} readings still queued"
    )
    print(f"readings in InfluxDB: {stored} (backlog + live; backlog alone {r['backlog']})")
    print("target: >= 50,000 points/s; alerts delivered before the readings backlog")


if __name__ == "__main__":
    main()
