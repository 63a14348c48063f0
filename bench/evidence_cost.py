"""What the evidence chain costs per reading: commit rate, CPU, journal bytes, disk writes.

The chain adds work only in the journal's commit (``Journal.sealer``): per reading, one
SELECT of the new row, its canonical JSON and SHA-256 (an 8-byte tag stored), plus one
``evidence_chain`` row per seal. This bench commits the same readings through
``Journal.commit_batch`` three ways in one run, each into a fresh journal file:

- ``off``: no sealer (the baseline, ``[evidence] enabled = false``);
- ``on``: the default, a seal when the last one is ``seal_interval_s`` = 10 s old;
- ``every``: a seal in every commit (``seal_interval_s = 0``).

Two load shapes: a busy hub (``--rate`` readings/s, default 2,000, committed every 2 s as
the daemon's ``commit_interval_ms`` does: 4,000-row batches) and a quiet one (20 sensors
every 10 s: 2 readings/s, 4-row batches), the clock advanced 2 s per commit. Reported per
variant: readings/s through commit_batch (wall, synchronous=FULL), CPU µs per reading,
journal bytes per reading (pages in use / readings) and bytes written to the block layer
per reading (``/proc/self/io`` write_bytes, includes the WAL and checkpoints).

    .venv/bin/python bench/evidence_cost.py [--rate 2000] [--seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core.model import Reading
from gateway.evidence.chain import Sealer
from gateway.journal.store import Journal

T0 = 1_767_225_600_000_000_000
COMMIT_S = 2.0


def _write_bytes() -> int:
    for row in Path("/proc/self/io").read_text().splitlines():
        if row.startswith("write_bytes:"):
            return int(row.split()[1])
    return 0


def _batches(rate: float, seconds: float, sensors: int) -> list[list[Reading]]:
    per_commit = max(1, round(rate * COMMIT_S))
    out: list[list[Reading]] = []
    n = 0
    for c in range(int(seconds / COMMIT_S)):
        batch = []
        for _ in range(per_commit):
            ts = T0 + int((c * COMMIT_S + (n % per_commit) / max(rate, 1)) * 1e9)
            batch.append(
                Reading(
                    sensor=f"s{n % sensors:03d}",
                    ts_ns=ts,
                    received_ns=ts + 1_000_000,
                    temp_c=4.0 + (n % 17) / 10,
                    source="mqtt",
                    zone=f"z{n % sensors % 8}",
                    rh=55.5,
                    battery_v=3.01,
                    quality=0,
                    seq=n,
                )
            )
            n += 1
        out.append(batch)
    return out


def run(variant: str, batches: list[list[Reading]], work: Path) -> dict[str, float]:
    """Commit every batch into a fresh journal; figures per reading."""
    path = work / f"{variant}.db"
    journal = Journal(path, "full")
    now = [T0]
    if variant != "off":
        interval = 0 if variant == "every" else 10_000_000_000
        journal.sealer = Sealer(journal.connection, lambda: now[0], interval_ns=interval)
    readings = sum(len(b) for b in batches)
    wb0 = _write_bytes()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for batch in batches:
        journal.commit_batch(batch, [], now[0])
        now[0] += int(COMMIT_S * 1e9)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    journal.checkpoint()
    written = _write_bytes() - wb0
    used = journal.used_bytes()
    entries = (
        journal.connection.execute("SELECT COUNT(*) FROM evidence_chain").fetchone()[0]
        if variant != "off"
        else 0
    )
    journal.close()
    return {
        "rate": readings / wall,
        "cpu_us": cpu / readings * 1e6,
        "bytes": used / readings,
        "written": written / readings,
        "entries": float(entries),
        "readings": float(readings),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated time per shape")
    args = parser.parse_args()
    shapes = {
        f"busy ({args.rate:g}/s, 200 sensors)": _batches(args.rate, args.seconds, 200),
        "quiet (2/s, 20 sensors)": _batches(2.0, args.seconds * 30, 20),
    }
    with tempfile.TemporaryDirectory(prefix="evidence-bench-") as tmp:
        work = Path(tmp)
        for shape, batches in shapes.items():
            print(f"\n{shape}: {sum(len(b) for b in batches):,} readings, {len(batches)} commits")
            print(
                f"{'variant':<8} {'readings/s':>11} {'CPU µs/rdg':>11} {'journal B/rdg':>14}"
                f" {'written B/rdg':>14} {'entries':>8}"
            )
            base: dict[str, float] | None = None
            for variant in ("off", "on", "every", "off"):  # baseline again: drift check
                r = run(variant, batches, work)
                for f in work.glob(f"{variant}.db*"):
                    f.unlink()
                base = base or r
                print(
                    f"{variant:<8} {r['rate']:>11,.0f} {r['cpu_us']:>11.1f} {r['bytes']:>14.1f}"
                    f" {r['written']:>14.1f} {int(r['entries']):>8}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
