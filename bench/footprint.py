"""Footprint: startup time to READY=1, idle CPU and RSS with 200 sensors at 1 Hz.

Startup: ``coldchain run --config`` is started ``--starts`` times with NOTIFY_SOCKET set
to a unix datagram socket of ours (as systemd does with Type=notify); the time is from
process start (Popen) to the READY=1 datagram. Baseline in the same run: the bare
interpreter (``python -c pass``) and ``python -c "import gateway.runtime.daemon"``.

Idle: the gateway runs the full path (MQTT driver, journal synchronous=full, SOP rules,
InfluxDB v1 sink) while firmware_sim.node.SensorNodeSim publishes 200 devices at 1 Hz
(QoS 1) through a private Mosquitto. CPU = (utime + stime) delta of /proc/<pid>/stat over
``--seconds``, as % of one core; RSS = VmRSS at the end, VmHWM = peak.

    .venv/bin/python bench/footprint.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    VENV_BIN,
    GatewayProcess,
    NotifySocket,
    broker_extra_config,
    influxdb,
    median,
    reading_count,
    sensors_doc,
    workdir,
    write_config,
)
from firmware_sim.node import SensorNodeSim

DEVICES = [f"node-{i}" for i in range(1, 201)]


def config_doc(journal: Path, port: int, influx_url: str) -> dict[str, Any]:
    """The gateway config: 200 MQTT sensors in 20 zones, InfluxDB v1 sink."""
    return {
        "hub": {"id": "bench"},
        "journal": {"path": str(journal), "synchronous": "full"},
        "logging": {"level": "WARNING"},
        **sensors_doc(DEVICES, zones=20),
        "drivers": {
            "mqtt": [
                {
                    "name": "nodes",
                    "host": "127.0.0.1",
                    "port": port,
                    "subscriptions": [
                        {
                            "topic": "sensors/+/telemetry",
                            "sensor_path": "id",
                            "ts_path": "ts",
                            "rh_path": "rh",
                            "battery_path": "battery_v",
                            "seq_path": "seq",
                        }
                    ],
                }
            ]
        },
        "sinks": {"influx": {"api": "v1", "url": influx_url, "database": "coldchain"}},
    }


def _subscribed(status_file: Path) -> bool:
    """The gateway's status file says the MQTT driver is connected (and so subscribed)."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return False
    return bool(status.get("counters", {}).get("connected", {}).get("nodes"))


def bare_start(argv: list[str], n: int) -> float:
    """Median seconds of a short interpreter run."""
    times = []
    for _ in range(n):
        t = time.monotonic()
        subprocess.run(argv, check=True)
        times.append(time.monotonic() - t)
    return median(times)


def startup(config: Path, n: int) -> list[float]:
    """Seconds from Popen to READY=1, n times (each gateway stopped with SIGTERM)."""
    out = []
    for _ in range(n):
        notify = NotifySocket(config.parent)
        gw = GatewayProcess(config, notify)
        ready = notify.wait_for("READY=1", 30)
        out.append(ready - gw.started)
        gw.stop()
        notify.close()
    return out


def main() -> None:
    """Startup repeats, then the idle run; print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--starts", type=int, default=5)
    args = p.parse_args()
    from gateway.apps.localservices import Mosquitto

    base = workdir("footprint")
    py = str(VENV_BIN / "python")
    bare_py = bare_start([py, "-c", "pass"], args.starts)
    bare_import = bare_start([py, "-c", "import gateway.runtime.daemon"], args.starts)
    with (
        Mosquitto(base / "mosquitto", extra_config=broker_extra_config()) as broker,
        influxdb(base) as influx,
    ):
        journal = base / "journal.db"
        config = write_config(base / "gateway.toml", config_doc(journal, broker.port, influx.url))
        starts = startup(config, args.starts)
        print("startup to READY=1 (s): " + ", ".join(f"{s:.2f}" for s in starts), flush=True)
        notify = NotifySocket(base)
        (base / "status.json").unlink(missing_ok=True)  # left by the startup runs
        gw = GatewayProcess(config, notify)
        notify.wait_for("READY=1", 30)
        # READY=1 means running, not subscribed: wait for the driver before publishing, or
        # the first messages go to a topic nobody subscribes to yet (dropped by the broker).
        deadline = time.monotonic() + 30
        while not _subscribed(base / "status.json") and time.monotonic() < deadline:
            time.sleep(0.1)
        sim = SensorNodeSim("127.0.0.1", broker.port, DEVICES, interval_s=1.0, client_id="fp-sim")
        sim.connect()
        stop = threading.Event()

        def publish() -> None:
            async def loop() -> None:
                while not stop.is_set():
                    sim.publish_round()
                    await asyncio.sleep(1.0)

            asyncio.run(loop())

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        time.sleep(5)  # warm up: connections, first batches, caches
        cpu0, t0 = gw.cpu_s(), time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            rss_samples.append(gw.status_kb("VmRSS") / 1024)
        cpu = (gw.cpu_s() - cpu0) / (time.monotonic() - t0) * 100
        rss, hwm = gw.status_kb("VmRSS") / 1024, gw.status_kb("VmHWM") / 1024
        stop.set()
        thread.join()
        deadline = time.monotonic() + 10
        while sim.pending and time.monotonic() < deadline:  # every publish PUBACKed
            time.sleep(0.05)
        sim.close()
        time.sleep(1.5)
        gw.stop()
        notify.close()
        stored = reading_count(influx)
    sent = sum(sim.sent.values())
    print()
    label = f"startup (median of {args.starts})"
    print(f"{label:<44}{'seconds':>10}")
    print(f"{'baseline: python -c pass':<44}{bare_py:>10.2f}")
    print(f"{'baseline: python -c import gateway.runtime.daemon':<44}{bare_import:>10.2f}")
    print(f"{'coldchain run: process start -> READY=1':<44}{median(starts):>10.2f}")
    print()
    print(
        f"idle: 200 sensors at 1 Hz over MQTT (QoS 1), journal synchronous=full, SOP rules,"
        f" InfluxDB sink, {args.seconds:.0f} s"
    )
    print(f"CPU: {cpu:.1f} % of one core")
    print(
        f"RSS: {rss:.1f} MB now, {max(rss_samples):.1f} MB max sampled, {hwm:.1f} MB peak (VmHWM)"
    )
    print(f"readings: {sent} published, {stored} in InfluxDB")
    print("targets: startup <= 1.5 s, RSS <= 80 MB, idle CPU < 5 % of a core")


if __name__ == "__main__":
    main()
