"""Benchmark: ``coldchain trace`` of a 14-day shipment from InfluxDB, end to end.

Writes into a private InfluxDB (Debian's influxd, temp dir): 6 zones with 2 sensors each
reading every minute for 14 days (241,920 points) and one shipment with 6 custody
intervals (receiving -> cold store A -> cold store B -> picking -> packout -> dock ->
carrier). Then times, in the same run:

- baseline: the raw InfluxQL needed for the same data (one SELECT per custody interval's
  zone window, no chunking), HTTP + JSON decode only;
- ``coldchain trace`` end to end in process (config load, hash-chain verification,
  chunked queries, analysis, PDF, CSV, JSON), best of ``--repeat`` runs, and a breakdown
  per stage (without the chain verification);
- the same as a fresh process (``python -m gateway.trace.cli``: interpreter and imports).

Target: under 2 s end to end. Run: ``.venv/bin/python bench/trace_14d.py``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.apps.localservices import InfluxDB1, http_request
from gateway.config import load_config
from gateway.core.model import Reading
from gateway.custody.chain import GENESIS_HASH, HandoffRecord, record_hash
from gateway.influxql.client import InfluxQLClient
from gateway.outbox.lineprotocol import reading_line
from gateway.outbox.streams import custody_line
from gateway.trace import build_trace
from gateway.trace.analysis import custody_spans
from gateway.trace.cli import main as trace_main
from gateway.trace.cli import write_outputs
from gateway.trace.query import CustodyStep, InfluxSource, readings_query

S = 1_000_000_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
SHIPMENT = "SH-BENCH-14D"
ZONES = [
    ("recv", "receiving"),
    ("cold-a", "cold_storage"),
    ("cold-b", "cold_storage"),
    ("pick", "cold_storage"),
    ("pack", "packout"),
    ("dock", "dock"),
]
# (event, zone, offset from T0): 6 custody intervals over 14 days
STEPS = [
    ("received", "recv", 0),
    ("put_away", "cold-a", 25 * MIN),
    ("put_away", "cold-b", 6 * DAY),
    ("picked", "pick", 13 * DAY + 20 * HOUR),
    ("packed", "pack", 14 * DAY - 50 * MIN),
    ("staged", "dock", 14 * DAY - 15 * MIN),
    ("handed_to_carrier", "dock", 14 * DAY),
]


def config_text(url: str, db: str, journal: Path) -> str:
    """A gateway config for the bench hub."""
    parts = [f'[hub]\nid = "hub-bench"\n\n[journal]\npath = "{journal}"\n']
    for zone, kind in ZONES:
        parts.append(f'[[zones]]\nid = "{zone}"\nkind = "{kind}"\nprofile = "chilled"\n')
        for i in (1, 2):
            parts.append(
                f'[[sensors]]\nid = "{zone}-s{i}"\nzone = "{zone}"\ninterval_s = 60\n'
                f'calibration_id = "CAL-{zone}-{i}"\n'
            )
    parts.append(f'[sinks.influx]\nurl = "{url}"\ndatabase = "{db}"\n')
    return "\n".join(parts)


def temp_at(zone: str, sensor_index: int, minute: int) -> float:
    """A plausible chilled store: 4-6 °C with a daily swing and defrost bumps."""
    base = 5.0 + 0.6 * ((minute % 1440) / 1440 - 0.5) + 0.1 * sensor_index
    if minute % 360 < 8:  # defrost every 6 h
        base += 1.5
    if zone == "dock":
        base += 1.0
    return round(base, 2)


def populate(server: InfluxDB1, db: str) -> int:
    """Write the readings and custody points; returns the number of readings."""
    lines: list[str] = []
    count = 0
    minutes = 14 * 24 * 60 + 60
    for zone, _ in ZONES:
        for i in (1, 2):
            sensor = f"{zone}-s{i}"
            for m in range(-30, minutes):
                ts = T0 + m * MIN + i * S
                r = Reading(sensor, ts, ts, temp_at(zone, i, m), "bench", zone=zone, seq=m)
                lines.append(reading_line("hub-bench", r))
                count += 1
                if len(lines) >= 50_000:
                    server.write(db, "\n".join(lines))
                    lines = []
    prev = GENESIS_HASH
    for seq, (event, zone, offset) in enumerate(STEPS, start=1):
        fields: dict[str, Any] = {
            "hub": "hub-bench",
            "seq": seq,
            "shipment": SHIPMENT,
            "event": event,
            "zone": zone,
            "actor": "bench",
            "carrier": None,
            "profile": "chilled",
            "note": None,
            "ts_ns": T0 + offset,
            "temp_c": None,
            "prev_hash": prev,
        }
        prev = record_hash(fields)
        lines.append(custody_line(HandoffRecord(**fields, hash=prev)))
    server.write(db, "\n".join(lines))
    return count


def baseline(server: InfluxDB1, db: str) -> tuple[float, int]:
    """Raw InfluxQL for the same zone windows: (seconds, points)."""
    spans = custody_spans(_steps(), T0 + 15 * DAY)
    started = time.perf_counter()
    points = 0
    for zone, start, end, _ in spans:
        q = readings_query("hub-bench", zone, start - 15 * MIN, end + 15 * MIN)
        body = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"})
        status, raw = http_request(
            "POST",
            f"{server.url}/query",
            data=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 200, raw[:200]
        for result in json.loads(raw)["results"]:
            for series in result.get("series", []):
                points += len(series["values"])
    return time.perf_counter() - started, points


def _steps() -> list[CustodyStep]:
    return [CustodyStep(T0 + off, ev, zone, "bench") for ev, zone, off in STEPS]


def main() -> int:
    """Run the benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trace-bench-") as tmp:
        work = Path(tmp)
        with InfluxDB1(work / "influx") as server:
            server.create_database("bench")
            t = time.perf_counter()
            written = populate(server, "bench")
            print(
                f"wrote {written} readings (6 zones x 2 sensors x 14 days at 1 min)"
                f" + {len(STEPS)} custody points in {time.perf_counter() - t:.1f} s"
            )
            cfg_path = work / "gateway.toml"
            cfg_path.write_text(config_text(server.url, "bench", work / "j.db"), encoding="utf-8")
            config = load_config(cfg_path)
            baseline(server, "bench")  # warm influxd's caches for both measurements

            base_times, cli_times = [], []
            stage: dict[str, list[float]] = {"query+analysis": [], "outputs": []}
            result = None
            for _ in range(args.repeat):
                bt, base_points = baseline(server, "bench")
                base_times.append(bt)
                t = time.perf_counter()
                code = trace_main(
                    [
                        SHIPMENT,
                        "--config",
                        str(cfg_path),
                        "--out",
                        str(work / "out"),
                        "--quiet",
                        "--as-of",
                        "2026-01-20T00:00:00Z",
                    ]
                )
                cli_times.append(time.perf_counter() - t)
                assert code == 0
                t = time.perf_counter()
                result = build_trace(
                    InfluxSource(InfluxQLClient(server.url, "bench"), "hub-bench"),
                    config,
                    SHIPMENT,
                    as_of_ns=T0 + 19 * DAY,
                )
                stage["query+analysis"].append(time.perf_counter() - t)
                t = time.perf_counter()
                write_outputs(result, work / "out2")
                stage["outputs"].append(time.perf_counter() - t)
            assert result is not None

            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gateway.trace.cli",
                    SHIPMENT,
                    "--config",
                    str(cfg_path),
                    "--out",
                    str(work / "out3"),
                    "--quiet",
                    "--as-of",
                    "2026-01-20T00:00:00Z",
                ],
                cwd=Path(__file__).resolve().parents[1],
                capture_output=True,
                text=True,
                check=False,
            )
            fresh = time.perf_counter() - t
            assert proc.returncode == 0, proc.stderr

            best_cli, best_base = min(cli_times), min(base_times)
            print(
                f"trace window: {len(result.points)} readings fetched"
                f" ({sum(result.in_custody)} in custody), {len(result.spans)} custody intervals"
            )
            cli_summary = json.loads(
                (work / "out" / f"trace-{SHIPMENT}.json").read_text(encoding="utf-8")
            )
            print(
                f"coldchain trace verdict: {cli_summary['verdict']}"
                f" (chain {cli_summary['chain']['status']})"
            )
            for reason in cli_summary["reasons"]:
                print(f"  {reason['level']}: {reason['text']}")
            print(
                f"baseline raw InfluxQL (same windows, HTTP + JSON): best {best_base:.3f} s,"
                f" median {statistics.median(base_times):.3f} s ({base_points} points)"
            )
            print(
                f"coldchain trace end to end (in process): best {best_cli:.3f} s,"
                f" median {statistics.median(cli_times):.3f} s"
            )
            for name, values in stage.items():
                print(f"  {name}: best {min(values):.3f} s")
            print(f"coldchain trace as a fresh process (imports included): {fresh:.3f} s")
            print(f"ratio trace / baseline: {best_cli / best_base:.1f}x")
            print(f"target < 2 s: {'met' if best_cli < 2.0 and fresh < 2.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
