"""RSS of the gateway during a QoS 0 flood of 16 KB junk (issue 10), beside a QoS 1 trickle.

A private Mosquitto (bench/common.py settings), the gateway as its own process
(``coldchain run``) with one MQTT driver and the planner feed on that broker; a publisher
process floods ``sensors/<id>/telemetry`` with 16 KB of random bytes at QoS 0 for
``--seconds`` while another publishes good readings at QoS 1. Printed: the gateway's RSS
before, peak (VmHWM) and at the end, how many status.json rewrites happened during the
flood (the event loop kept up), how many good readings were committed, dead letters and
drops, and the journal's size.

    .venv/bin/python bench/junk_flood.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import GatewayProcess, broker_extra_config, workdir, write_config
from gateway.apps.localservices import Mosquitto


def _flood(port: int, seconds: float, size: int) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="junk")
    client.connect("127.0.0.1", port)
    client.loop_start()
    junk = os.urandom(size)
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        info = client.publish(f"sensors/junk-{sent % 50}/telemetry", junk, qos=0)
        sent += 1
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            time.sleep(0.001)
    client.disconnect()
    client.loop_stop()
    print(f"junk publisher: {sent} messages of {size} B at QoS 0", flush=True)


def _good(port: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="good")
    client.connect("127.0.0.1", port)
    client.loop_start()
    end = time.monotonic() + seconds
    sent = 0
    infos = []
    while time.monotonic() < end:
        ts = int(time.time() * 1000)
        body = json.dumps({"id": "node-1", "ts": ts, "temp_c": 4.0, "seq": sent})
        infos.append(client.publish("sensors/node-1/telemetry", body, qos=1))
        sent += 1
        time.sleep(0.1)
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()
    out.put(sent)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", type=int, default=16 * 1024)
    args = p.parse_args()
    work = workdir("junk-flood")
    with Mosquitto(work / "broker", extra_config=broker_extra_config()) as broker:
        journal = work / "journal.db"
        config = write_config(
            work / "gateway.toml",
            {
                "hub": {"id": "hub-flood"},
                "journal": {"path": str(journal), "max_size_mb": 200},
                "status_interval_s": 1,
                "zones": [{"id": "cr1", "kind": "cold_storage"}],
                "sensors": [{"id": "node-1", "zone": "cr1"}],
                "drivers": {
                    "mqtt": [
                        {
                            "name": "nodes",
                            "host": "127.0.0.1",
                            "port": broker.port,
                            "client_id": "gw-flood",
                            "subscriptions": [
                                {
                                    "topic": "sensors/+/telemetry",
                                    "sensor_path": "id",
                                    "temp_path": "temp_c",
                                    "ts_path": "ts",
                                    "seq_path": "seq",
                                }
                            ],
                        }
                    ]
                },
                "sinks": {
                    "planner": {"host": "127.0.0.1", "port": broker.port, "client_id": "gw-pl"}
                },
            },
        )
        gw = GatewayProcess(config)
        status = journal.with_name("status.json")
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        before = gw.status_kb("VmRSS")
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        flood = mp.Process(target=_flood, args=(broker.port, args.seconds, args.size))
        good = mp.Process(target=_good, args=(broker.port, args.seconds, out))
        writes = 0
        last_mtime = status.stat().st_mtime
        rss_max = before
        flood.start()
        good.start()
        while flood.is_alive():
            time.sleep(0.25)
            rss_max = max(rss_max, gw.status_kb("VmRSS"))
            mtime = status.stat().st_mtime
            if mtime != last_mtime:
                writes += 1
                last_mtime = mtime
        flood.join()
        good.join()
        sent_good = out.get()
        time.sleep(5)
        final = json.loads(status.read_text())
        end_rss = gw.status_kb("VmRSS")
        hwm = gw.status_kb("VmHWM")
        code = gw.stop()
        counters = final["counters"]
        print(f"flood {args.seconds:g} s of {args.size} B junk at QoS 0 (+ good QoS 1 at 10/s)")
        print(
            f"RSS MB: before {before / 1024:.1f}, max sampled {rss_max / 1024:.1f},"
            f" VmHWM {hwm / 1024:.1f}, after {end_rss / 1024:.1f}"
        )
        print(f"status.json rewrites during the flood: {writes} (interval 1 s)")
        print(f"good readings: sent {sent_good}, committed {counters['committed']}")
        print(f"dead letters {counters['dead_lettered']}, dropped {counters['dropped']}")
        print(f"connected: {counters['connected']}")
        size = sum(f.stat().st_size for f in work.glob("journal.db*"))
        print(f"journal files: {size / 1e6:.1f} MB (budget 200 MB); exit {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
