"""Reading-to-e-mail latency: the reading that raises an alert until an SMTP server accepted
the notification, through the real ingest, journal, SOP engine, notifier and Apprise.

A synthetic driver (no I/O) feeds ``--rate`` readings/s over ``--zones`` zones; every
``--flip-every`` seconds one zone jumps out of range (alarm delay 0: the first
out-of-range reading raises a critical excursion) or back. A policy sends level 1 at once
to one contact by ``mailto://`` to aiosmtpd running in this process (its own thread, on
loopback). Latency = wall time when aiosmtpd accepted the DATA minus the time of the
reading that raised the alert. Baseline in the same run: reading -> alert journaled.

Run it twice to see the storm window's share: with ``--group-wait 0`` (send at once) and
with the default ``group_wait_s`` of 2 s (a message waits that long for a storm).

    .venv/bin/python bench/notify_latency.py --alerts 50 --group-wait 0
    .venv/bin/python bench/notify_latency.py --alerts 50 --group-wait 2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.alerts.store import AlertStore
from gateway.apps.localservices import free_port
from gateway.config import parse_config
from gateway.core.model import Delivery, RawSample
from gateway.runtime.daemon import Gateway

ALERT_ID = re.compile(r"alert id (excursion-[0-9a-f]{16})")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Inbox:
    """aiosmtpd handler: when each alert's first e-mail was accepted (wall ns)."""

    def __init__(self) -> None:
        self.accepted_ns: dict[str, int] = {}
        self.messages = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the time, then accept."""
        now = time.time_ns()
        content = envelope.content
        text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
        with self._lock:
            self.messages += 1
            if "ALERT [CRITICAL]" in text:
                for alert_id in ALERT_ID.findall(text):
                    self.accepted_ns.setdefault(alert_id, now)
        return "250 accepted"


class FlippingDriver:
    """Readings at a fixed rate; one zone at a time leaves its band, then comes back."""

    def __init__(self, zones: list[list[str]], rate: float, flips: int, flip_every: float):
        self.name = "synthetic"
        self.zones = zones
        self.rate = rate
        self.flips = flips
        self.flip_every = flip_every
        self.done = asyncio.Event()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Connected, then batches every 10 ms until every flip was made."""
        yield Delivery()
        sensors = [s for zone in self.zones for s in zone]
        zone_of = {s: i for i, zone in enumerate(self.zones) for s in zone}
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        start = time.monotonic()
        i = 0
        while (elapsed := time.monotonic() - start) < self.flips * 2 * self.flip_every:
            phase = int(elapsed // self.flip_every)
            hot = phase % 2 == 1
            zone = (phase // 2) % len(self.zones)
            samples = []
            for _ in range(per_tick):
                sensor = sensors[i % len(sensors)]
                i += 1
                now = time.time_ns()
                value = 12.0 if hot and zone_of[sensor] == zone else 4.0
                samples.append(RawSample(sensor, value, now, now, "synthetic", seq=i))
            yield Delivery(samples=samples)
            await asyncio.sleep(max(0.0, start + (i / per_tick) * tick - time.monotonic()))
        self.done.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Nothing to release."""

    def stats(self) -> dict[str, int]:
        """No counters of its own."""
        return {}

    def keep_open_for_reload(self) -> None:
        """Nothing to keep open."""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    zones = [[f"z{z}-s{s}" for s in range(args.sensors_per_zone)] for z in range(args.zones)]
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-notify-"))
    url = (
        f"mailto://127.0.0.1:{controller.port}?from=hub@bench.example&to=oncall@bench.example"
        "&mode=insecure"
    )
    config = parse_config(
        {
            "hub": {"id": "bench"},
            "journal": {"path": str(tmp / "journal.db")},
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
            "notify": {
                "group_wait_s": args.group_wait,
                "contacts": [{"name": "oncall", "channels": [{"url": url}]}],
                "policies": [
                    {
                        "name": "critical",
                        "severities": ["critical"],
                        "rules": ["excursion"],
                        "levels": [{"delay_s": 0, "contacts": ["oncall"]}],
                    }
                ],
            },
        }
    )
    gateway = Gateway(config)
    driver = FlippingDriver(zones, args.rate, args.alerts, args.flip_every)
    gateway.drivers = [driver]
    journaled: dict[str, float] = {}
    original = AlertStore.raise_alert

    def timed_raise(self: AlertStore, *a: Any, **kw: Any) -> Any:
        result = original(self, *a, **kw)
        alert, new = result
        if new and alert.rule == "excursion":
            journaled[alert.id] = (time.time_ns() - alert.raised_ns) / 1e6
        return result

    AlertStore.raise_alert = timed_raise  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await driver.done.wait()
    await asyncio.sleep(max(5.0, 2 * args.group_wait))  # the last e-mails leave
    alerts = {a.id: a for a in gateway.alerts.recent_cleared(10_000) + gateway.alerts.active()}
    stop.set()
    await task
    AlertStore.raise_alert = original  # type: ignore[method-assign]
    messages = inbox.messages
    direct = await apprise_alone(url, 20)
    controller.stop()
    email = [
        (at - alerts[aid].raised_ns) / 1e6 for aid, at in inbox.accepted_ns.items() if aid in alerts
    ]
    return {
        "alerts": len(journaled),
        "mailed": len(email),
        "messages": messages,
        "journal_p50": percentile(list(journaled.values()), 50),
        "journal_p99": percentile(list(journaled.values()), 99),
        "email_p50": percentile(email, 50) if email else float("nan"),
        "email_p99": percentile(email, 99) if email else float("nan"),
        "direct_p50": percentile(direct, 50),
        "direct_p99": percentile(direct, 99),
    }


async def apprise_alone(url: str, n: int) -> list[float]:
    """Baseline: Apprise's own async_notify of one e-mail to the same server, n times (ms)."""
    import apprise

    out = []
    for _ in range(n):
        start = time.monotonic()
        client = apprise.Apprise()
        client.add(url)
        assert await client.async_notify(body="baseline", title="baseline")
        out.append((time.monotonic() - start) * 1000)
    return out


def main() -> None:
    """Parse arguments, run, print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=50, help="excursions to raise (one per flip)")
    p.add_argument("--flip-every", type=float, default=3.0, help="seconds between flips")
    p.add_argument("--rate", type=float, default=200.0, help="readings per second")
    p.add_argument("--zones", type=int, default=5)
    p.add_argument("--sensors-per-zone", type=int, default=4)
    p.add_argument("--group-wait", type=float, default=2.0, help="notify.group_wait_s")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    r = asyncio.run(run(args))
    print(
        f"load: {args.rate:.0f} readings/s, {r['alerts']} excursions raised, {r['mailed']}"
        f" e-mailed ({r['messages']} messages: alerts, all-clears),"
        f" group_wait_s={args.group_wait}"
    )
    print(f"{'latency (ms)':<40}{'p50':>9}{'p99':>9}")
    print(f"{'baseline: Apprise e-mail alone':<40}{r['direct_p50']:>9.1f}{r['direct_p99']:>9.1f}")
    base = "baseline: reading -> alert journaled"
    print(f"{base:<40}{r['journal_p50']:>9.1f}{r['journal_p99']:>9.1f}")
    print(f"{'reading -> e-mail accepted by SMTP':<40}{r['email_p50']:>9.1f}{r['email_p99']:>9.1f}")


if __name__ == "__main__":
    main()
