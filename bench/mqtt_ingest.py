"""MQTT ingest: a QoS 1 burst through Mosquitto into the gateway and on into InfluxDB.

Publisher processes (multiprocessing, paho 2.x, QoS 1) send ``--readings`` JSON payloads
shaped like firmware_sim.node.SensorNodeSim's, from ``--devices`` simulated nodes, through
a private Mosquitto (settings in bench/common.py BROKER_SETTINGS) to:

- the gateway, run as its own process (``coldchain run --config``, generated config):
  MQTT driver with manual acks, journal (synchronous=normal and =full), SOP rules,
  InfluxDB v1 sink to a private influxd. Rate = readings / (first publish -> last
  reading confirmed by InfluxDB); loss = sent - count in InfluxDB; peak RSS = VmHWM.
- the baseline: a bare paho subscriber (QoS 1, auto-ack on receipt, counts and drops),
  in its own process, on the same workload in the same run.

Modes:
- ``live``: the receiver is connected; publishers push as fast as the broker takes it.
- ``flood``: the burst is queued in the broker for the receiver's persistent session
  while it is away (an outage ends); the clock starts when the receiver is ready.

``--format`` runs the gateway once per payload format (firmware_sim.dialects speaks
them; ``json`` is the generic node payload above), in the same run, so the rates sit
side by side; the bare subscriber is the baseline of each. ``--decode-only`` measures the
decoders alone (no broker): ``PayloadMapper.map`` (the JSON mapper called directly) next
to every format through ``TopicRouter.decode_into`` (what the driver calls per message).

    .venv/bin/python bench/mqtt_ingest.py --readings 100000 --publishers 2 --repeat 3
    .venv/bin/python bench/mqtt_ingest.py --format json tasmota sparkplug_b --mode flood
    .venv/bin/python bench/mqtt_ingest.py --decode-only --format json zigbee2mqtt
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    BROKER_SETTINGS,
    GatewayProcess,
    NotifySocket,
    broker_extra_config,
    influxdb,
    median,
    reading_count,
    sensors_doc,
    status_json,
    workdir,
    write_config,
)

TOPIC = "sensors/{}/telemetry"


def _payloads(
    devices: list[str], rounds: int, start_ms: int, seed: int, fmt: str = "json"
) -> list[tuple[str, bytes]]:
    """SensorNodeSim-shaped payloads: a slow, smooth cold-room curve (no spike alerts)."""
    rng = random.Random(seed)
    out = []
    phase = {d: rng.uniform(0, 6.28) for d in devices}
    if fmt != "json":
        return _format_payloads(fmt, devices, rounds, start_ms, seed, rng, phase)
    for r in range(rounds):
        ts = start_ms + r * 1000
        for d in devices:
            body = {
                "id": d,
                "ts": ts,
                "temp_c": round(4.0 + 0.5 * math.sin(r / 120 + phase[d]), 2),
                "rh": round(rng.uniform(75.0, 90.0), 1),
                "battery_v": round(rng.uniform(3.4, 3.7), 2),
                "seq": r + 1,
            }
            out.append((TOPIC.format(d), json.dumps(body).encode()))
    return out


def _format_payloads(
    fmt: str,
    devices: list[str],
    rounds: int,
    start_ms: int,
    seed: int,
    rng: random.Random,
    phase: dict[str, float],
) -> list[tuple[str, bytes]]:
    """The same curve in an ecosystem's format (firmware_sim.dialects)."""
    from firmware_sim.dialects import DialectState, Values, round_messages

    state = DialectState(edge=f"bench-edge-{seed}")
    out: list[tuple[str, bytes]] = []
    for r in range(rounds):
        values = {
            d: Values(
                temp_c=round(4.0 + 0.5 * math.sin(r / 120 + phase[d]), 2),
                rh=round(rng.uniform(75.0, 90.0), 1),
                battery_v=round(rng.uniform(3.4, 3.7), 2),
                seq=r + 1,
            )
            for d in devices
        }
        out += round_messages(fmt, values, start_ms + r * 1000, state)
    return out


def _subscription(fmt: str, devices: list[str], publishers: int) -> dict[str, Any]:
    """The gateway's subscription for a format, with sensor_ids back to node-N."""
    from firmware_sim.dialects import device_id, subscription

    sub = subscription(fmt)
    if fmt == "json":
        return {"subscriptions": [sub]}
    ids = {}
    for i in range(publishers):
        for d in devices[i::publishers]:
            ids[device_id(fmt, d, edge=f"bench-edge-{i}")] = d
    return {"subscriptions": [sub], "sensor_ids": ids}


def publisher(
    idx: int,
    port: int,
    devices: list[str],
    rounds: int,
    start_ms: int,
    go: Any,
    ready: Any,
    results: Any,
    fmt: str = "json",
) -> None:
    """One publisher process: connect, wait for go, publish everything, wait for PUBACKs."""
    work = _payloads(devices, rounds, start_ms, seed=idx, fmt=fmt)
    acked = 0
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{idx}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.release()
    go.wait()
    t0 = time.time()
    for topic, body in work:
        client.publish(topic, body, qos=1)
    while acked < len(work):
        time.sleep(0.002)
    t1 = time.time()
    client.disconnect()
    client.loop_stop()
    results.put((idx, len(work), t0, t1))


def bare_subscriber(port: int, client_id: str, expected: int, connected: Any, results: Any) -> None:
    """The baseline: paho, QoS 1, persistent session, acks on receipt, counts messages."""
    count = 0
    first = last = 0.0
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe("sensors/+/telemetry", qos=1)

    def on_subscribe(*_: Any) -> None:
        connected.set()

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal count, first, last
        if count == 0:
            first = time.time()
        count += 1
        last = time.time()
        if count >= expected:
            c.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    t_connect = time.time()
    client.connect("127.0.0.1", port)
    client.loop_forever()
    results.put((count, t_connect, first, last))


def pre_subscribe(port: int, client_id: str, topic: str = "sensors/+/telemetry") -> None:
    """Create a persistent session with the sensor subscription, then go away."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    info = client.subscribe(topic, qos=1)
    time.sleep(0.3)
    assert info[0] == 0
    client.disconnect()
    client.loop_stop()


def publish_burst(
    port: int, args: argparse.Namespace, devices: list[str], fmt: str = "json"
) -> tuple[int, float]:
    """Run the publisher processes; (messages acked by the broker, first publish time)."""
    ctx = mp.get_context("fork")
    go, ready, results = ctx.Event(), ctx.Semaphore(0), ctx.Queue()
    rounds = args.readings // len(devices)
    start_ms = int(time.time() * 1000) - rounds * 1000
    procs = []
    for i in range(args.publishers):
        mine = devices[i :: args.publishers]
        p = ctx.Process(
            target=publisher, args=(i, port, mine, rounds, start_ms, go, ready, results, fmt)
        )
        p.start()
        procs.append(p)
    for _ in procs:
        ready.acquire()
    go.set()
    done = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return sum(d[1] for d in done), min(d[2] for d in done)


def run_bare(port: int, args: argparse.Namespace, devices: list[str], tag: str) -> dict[str, Any]:
    """Baseline: the bare paho subscriber on the same workload."""
    ctx = mp.get_context("fork")
    expected = (args.readings // len(devices)) * len(devices)
    client_id = f"bare-{tag}"
    connected, results = ctx.Event(), ctx.Queue()
    if args.mode == "flood":
        pre_subscribe(port, client_id)
        sent, _ = publish_burst(port, args, devices)
        proc = ctx.Process(
            target=bare_subscriber, args=(port, client_id, expected, connected, results)
        )
        proc.start()
        count, t_connect, _first, last = results.get(timeout=600)
        start = t_connect
    else:
        proc = ctx.Process(
            target=bare_subscriber, args=(port, client_id, expected, connected, results)
        )
        proc.start()
        connected.wait(10)
        sent, start = publish_burst(port, args, devices)
        count, _t_connect, _first, last = results.get(timeout=600)
    proc.join()
    return {
        "sent": sent,
        "received": count,
        "seconds": last - start,
        "rate": count / (last - start),
    }


def _py_spy(pid: int, args: argparse.Namespace, tag: str) -> subprocess.Popen[bytes] | None:
    """py-spy record (collapsed stacks) of the gateway process, when --profile is given."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"mqtt-{tag}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_gateway(
    port: int,
    influx: Any,
    args: argparse.Namespace,
    devices: list[str],
    synchronous: str,
    tag: str,
    fmt: str = "json",
) -> dict[str, Any]:
    """The gateway as its own process, end to end into InfluxDB."""
    influx.drop_database("coldchain")
    influx.create_database("coldchain")
    work = workdir(f"mqtt-{tag}")
    journal = work / "journal.db"
    name = f"nodes{tag.replace('-', '')}"
    doc = {
        "hub": {"id": "bench"},
        "journal": {
            "path": str(journal),
            "synchronous": synchronous,
            "commit_interval_ms": args.commit_interval_ms,
        },
        "status_interval_s": 0.2,
        "logging": {"level": "WARNING"},
        **sensors_doc(devices, zones=20),
        "drivers": {
            "mqtt": [
                {
                    "name": name,
                    "host": "127.0.0.1",
                    "port": port,
                    "sensors": list(devices),
                    **_subscription(fmt, devices, args.publishers),
                }
            ]
        },
        "sinks": {"influx": {"api": "v1", "url": influx.url, "database": "coldchain"}},
    }
    config = write_config(work / "gateway.toml", doc)
    notify = NotifySocket(work)
    expected = (args.readings // len(devices)) * len(devices)
    if args.mode == "flood":
        pre_subscribe(
            port, f"coldchain-{name}", _subscription(fmt, devices, 1)["subscriptions"][0]["topic"]
        )
        sent, _ = publish_burst(port, args, devices, fmt)
        gw = GatewayProcess(config, notify)
        spy = _py_spy(gw.pid, args, tag)
        start = notify.wait_for("READY=1", 30)
        start = time.time() - (time.monotonic() - start)
    else:
        gw = GatewayProcess(config, notify)
        notify.wait_for("READY=1", 30)
        spy = _py_spy(gw.pid, args, tag)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if status_json(journal).get("counters", {}).get("connected", {}).get(name):
                break
            time.sleep(0.05)
        sent, start = publish_burst(port, args, devices, fmt)
    end = None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        st = status_json(journal)
        if st.get("sinks", {}).get("influx", {}).get("cursor", 0) >= expected:
            end = time.time()
            break
        if gw.proc.poll() is not None:
            break
        time.sleep(0.02)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    hwm_kb = gw.status_kb("VmHWM")
    cpu = gw.cpu_s()
    rc = gw.stop()
    notify.close()
    stored = reading_count(influx)
    if end is None:
        print(gw.log_tail(), file=sys.stderr)
    seconds = (end - start) if end else float("nan")
    return {
        "sent": sent,
        "messages": sent,
        "stored": stored,
        "lost": expected - stored,
        "seconds": seconds,
        "rate": stored / seconds if end else 0.0,
        "peak_rss_mb": hwm_kb / 1024,
        "cpu_s": cpu,
        "rc": rc,
    }


def decode_only(args: argparse.Namespace, devices: list[str]) -> None:
    """Decoders alone, in one process: messages/s and readings/s per format.

    The candidates run interleaved, once each per repeat, and the best run counts: on a
    shared machine other load only ever slows a run down.
    """
    from drivers.mqtt.config import TopicMapping
    from drivers.mqtt.payload import PayloadMapper, TopicRouter

    rounds = max(1, args.readings // len(devices))
    start_ms = int(time.time() * 1000)
    candidates: list[tuple[str, list[tuple[str, bytes]], Any]] = []
    for fmt in args.format:
        work = _payloads(devices, rounds, start_ms, seed=0, fmt=fmt)
        sub = _subscription(fmt, devices, 1)
        mappings = [TopicMapping.model_validate(m) for m in sub["subscriptions"]]
        ids = sub.get("sensor_ids", {})
        if fmt == "json":
            mapper = PayloadMapper(mappings[0], {}, 16_384)
            candidates.append(("json, PayloadMapper.map (no router)", work, lambda m=mapper: m.map))
        # A fresh router per run: Sparkplug's alias tables start empty (births come first).
        candidates.append(
            (
                f"{fmt}, TopicRouter.decode_into",
                work,
                lambda ms=mappings, i=ids: TopicRouter(ms, i, 16_384).decode_into,
            )
        )
    best: dict[str, float] = {}
    readings: dict[str, int] = {}
    for _ in range(args.repeat):
        for label, work, make in candidates:
            decode = make()
            samples: list[Any] = []
            rejects: list[Any] = []
            t0 = time.perf_counter()
            if label.endswith("decode_into"):  # the driver's per-message step
                for topic, body in work:
                    decode(topic, body, 0, "bench", samples, rejects)
            else:
                samples = [decode(topic, body, 0, "bench") for topic, body in work]
            rate = len(work) / (time.perf_counter() - t0)
            best[label] = max(best.get(label, 0.0), rate)
            readings[label] = len(samples)
    print(
        f"decode only: {rounds * len(devices)} readings per format, best of {args.repeat}"
        " interleaved runs"
    )
    print(f"{'decoder':<44}{'messages/s':>12}{'readings/s':>12}")
    for label, work, _ in candidates:
        msgs = best[label]
        print(f"{label:<44}{msgs:>12.0f}{msgs * readings[label] / len(work):>12.0f}")


def main() -> None:
    """Parse arguments, run the repeats, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=100_000)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--publishers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mode", choices=["live", "flood"], default="live")
    p.add_argument(
        "--synchronous", nargs="+", choices=["normal", "full"], default=["normal", "full"]
    )
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--commit-interval-ms", type=int, default=20)
    p.add_argument("--inflight", type=int, default=1000, help="broker max_inflight_messages")
    p.add_argument("--profile", help="directory: py-spy record the gateway (collapsed stacks)")
    p.add_argument(
        "--format",
        nargs="+",
        default=["json"],
        help="payload formats to run the gateway with, in this run (firmware_sim.dialects)",
    )
    p.add_argument("--decode-only", action="store_true", help="time the decoders alone")
    args = p.parse_args()
    from gateway.apps.localservices import Mosquitto

    devices = [f"node-{i}" for i in range(1, args.devices + 1)]
    if args.decode_only:
        decode_only(args, devices)
        return
    base = workdir("mqtt")
    results: dict[str, list[dict[str, Any]]] = {"bare": []}
    runs = [(f, s) for f in args.format for s in args.synchronous]
    keys = [s if f == "json" and len(args.format) == 1 else f"{f}/{s}" for f, s in runs]
    for key in keys:
        results[key] = []
    BROKER_SETTINGS["max_inflight_messages"] = args.inflight
    with (
        Mosquitto(base / "mosquitto", extra_config=broker_extra_config()) as broker,
        influxdb(base) as influx,
    ):
        for rep in range(args.repeat):
            results["bare"].append(run_bare(broker.port, args, devices, f"{rep}"))
            for (f, s), key in zip(runs, keys, strict=True):
                tag = f"{f.replace('_', '')}-{s}-{rep}"
                results[key].append(run_gateway(broker.port, influx, args, devices, s, tag, f))
            print(
                f"repeat {rep + 1}: bare {results['bare'][-1]['rate']:.0f}/s, "
                + ", ".join(
                    f"{k} {results[k][-1]['rate']:.0f}/s lost {results[k][-1]['lost']}"
                    f" cpu {results[k][-1]['cpu_s']:.1f}s in {results[k][-1]['seconds']:.1f}s"
                    for k in keys
                ),
                flush=True,
            )
    bare = median([r["rate"] for r in results["bare"]])
    print()
    print(
        f"workload: {args.readings} readings, {args.devices} devices, {args.publishers} publisher"
        f" processes, QoS 1, mode={args.mode}, {args.repeat} repeats (median)"
    )
    print("broker: " + ", ".join(f"{k} {v}" for k, v in BROKER_SETTINGS.items()))
    print(f"{'receiver':<38}{'readings/s':>11}{'ratio':>7}{'lost':>6}{'peak RSS MB':>12}")
    print(f"{'baseline: bare paho subscriber QoS 1':<38}{bare:>11.0f}{1.0:>7.2f}{0:>6}{'-':>12}")
    for (f, s), key in zip(runs, keys, strict=True):
        rate = median([r["rate"] for r in results[key]])
        lost = max(r["lost"] for r in results[key])
        rss = max(r["peak_rss_mb"] for r in results[key])
        label = f"gateway -> InfluxDB, sync={s}" + (f", {f}" if key != s else "")
        print(f"{label:<38}{rate:>11.0f}{rate / bare:>7.2f}{lost:>6}{rss:>12.1f}")
    print(
        "runs (readings/s): "
        + "; ".join(f"{k}: " + ", ".join(f"{r['rate']:.0f}" for r in v) for k, v in results.items())
    )
    print("targets: >= 20,000 readings/s end to end, ratio >= 0.6, lost 0, RSS <= 80 MB")


if __name__ == "__main__":
    main()
