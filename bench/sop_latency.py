"""Reading-to-alert latency at a steady load, through the real ingest, journal and SOP engine.

A synthetic driver (no I/O) feeds ``--rate`` readings/s spread over ``--zones`` zones of
``--sensors-per-zone`` sensors. Every ``--flip-every`` seconds one zone's sensors jump
out of range (alarm delay 0, so the first out-of-range reading raises) and come back
the next flip. Latency = wall time when the alert's transaction committed minus the
wall time the triggering reading left the driver. Baseline measured in the same run:
reading-to-commit latency of every reading (what the journal alone costs).

    .venv/bin/python bench/sop_latency.py --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from gateway.alerts.store import AlertStore
from gateway.config import parse_config
from gateway.core.model import Delivery, RawSample, Reading
from gateway.runtime.daemon import Gateway


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class SyntheticDriver:
    """Yields readings at a fixed rate; flips zones out of range on a schedule."""

    def __init__(self, zones: list[list[str]], rate: float, seconds: float, flip_every: float):
        self.name = "synthetic"
        self.zones = zones
        self.rate = rate
        self.seconds = seconds
        self.flip_every = flip_every
        self.sent_ns: dict[tuple[str, int], int] = {}
        self.done = asyncio.Event()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        yield Delivery()
        sensors = [s for zone in self.zones for s in zone]
        zone_of = {s: i for i, zone in enumerate(self.zones) for s in zone}
        tick = 0.01  # 10 ms ticks, rate/100 readings each
        per_tick = max(1, round(self.rate * tick))
        start = time.monotonic()
        i = 0
        while (elapsed := time.monotonic() - start) < self.seconds:
            hot_zone = int(elapsed // self.flip_every) % (2 * len(self.zones))
            samples = []
            for _ in range(per_tick):
                sensor = sensors[i % len(sensors)]
                i += 1
                now = time.time_ns()
                hot = hot_zone % 2 == 1 and zone_of[sensor] == hot_zone // 2
                samples.append(
                    RawSample(sensor, 12.0 if hot else 4.0, now, now, "synthetic", seq=i)
                )
                self.sent_ns[(sensor, now)] = now
            yield Delivery(samples=samples)
            next_at = start + (i / per_tick) * tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        self.done.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    zones = [[f"z{z}-s{s}" for s in range(args.sensors_per_zone)] for z in range(args.zones)]
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    config = parse_config(
        {
            "hub": {"id": "bench"},
            "journal": {
                "path": str(tmp / "journal.db"),
                "synchronous": args.synchronous,
                **(
                    {"commit_interval_ms": args.commit_interval_ms}
                    if args.commit_interval_ms is not None
                    else {}
                ),
            },
            "profiles": {"bench": {"min_c": 2, "max_c": 8, "alarm_delay_s": 0}},
            "zones": [
                {"id": f"z{z}", "kind": "cold_storage", "profile": "bench"}
                for z in range(args.zones)
            ],
            "sensors": [
                {"id": s, "zone": f"z{z}", "interval_s": 1.0}
                for z, zone in enumerate(zones)
                for s in zone
            ],
        }
    )
    args.commit_interval_ms = config.journal.commit_interval_ms  # for the report
    gateway = Gateway(config)
    driver = SyntheticDriver(zones, args.rate, args.seconds, args.flip_every)
    gateway.drivers = [driver]
    commit_latency: list[float] = []
    alert_latency: list[float] = []

    def on_commit(readings: Sequence[Reading]) -> None:
        now = time.time_ns()
        commit_latency.extend((now - r.received_ns) / 1e6 for r in readings)

    gateway.ingest.on_commit(on_commit)
    original = AlertStore.raise_alert

    def timed_raise(self: AlertStore, *a: Any, **kw: Any) -> Any:
        result = original(self, *a, **kw)
        alert, new = result
        if new:
            # The triggering reading's timestamp is the alert's raised_ns (delay 0).
            alert_latency.append((time.time_ns() - alert.raised_ns) / 1e6)
        return result

    AlertStore.raise_alert = timed_raise  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await driver.done.wait()
    await asyncio.sleep(0.5)
    stop.set()
    await task
    AlertStore.raise_alert = original  # type: ignore[method-assign]
    return {
        "readings": gateway.counters.committed,
        "rate_achieved": gateway.counters.committed / args.seconds,
        "alerts": len(alert_latency),
        "commit_p50": percentile(commit_latency, 50),
        "commit_p99": percentile(commit_latency, 99),
        "alert_p50": percentile(alert_latency, 50) if alert_latency else float("nan"),
        "alert_p99": percentile(alert_latency, 99) if alert_latency else float("nan"),
        "alert_mean": statistics.fmean(alert_latency) if alert_latency else float("nan"),
    }


def main() -> None:
    """Parse arguments, run, print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--zones", type=int, default=10)
    p.add_argument("--sensors-per-zone", type=int, default=10)
    p.add_argument("--flip-every", type=float, default=0.5, help="seconds between zone flips")
    p.add_argument("--synchronous", choices=["full", "normal"], default="full")
    p.add_argument(
        "--commit-interval-ms", type=int, default=None, help="default: the config's default"
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    r = asyncio.run(run(args))
    print(
        f"load: {args.rate:.0f} readings/s target, {r['rate_achieved']:.0f}/s achieved,"
        f" {r['readings']} readings, {r['alerts']} alerts, synchronous={args.synchronous},"
        f" commit interval {args.commit_interval_ms} ms"
    )
    print(f"{'latency (ms)':<34}{'p50':>8}{'p99':>8}")
    print(f"{'baseline: reading -> committed':<34}{r['commit_p50']:>8.1f}{r['commit_p99']:>8.1f}")
    print(f"{'reading -> alert journaled':<34}{r['alert_p50']:>8.1f}{r['alert_p99']:>8.1f}")
    if r["commit_p99"] > 0:
        print(f"ratio alert p99 / commit p99: {r['alert_p99'] / r['commit_p99']:.2f}")
    print("target: alert p99 < 1 s at 1,000 readings/s (issue 19; was < 50 ms in issue 3)")


if __name__ == "__main__":
    main()
