"""Footprint: startup, idle CPU, RSS and disk writes at 200 sensors x 1 Hz; CPU at 2,000/s.

Startup: ``coldchain run --config`` is started ``--starts`` times with NOTIFY_SOCKET set
to a unix datagram socket of ours (as systemd does with Type=notify); the time is from
process start (Popen) to the READY=1 datagram. Baseline in the same run: the bare
interpreter (``python -c pass``) and ``python -c "import gateway.runtime.daemon"``.

Idle: the gateway runs the full path (MQTT driver, journal synchronous=full, SOP rules,
InfluxDB v1 sink) while firmware_sim.node.SensorNodeSim publishes 200 devices at 1 Hz
(QoS 1) through a private Mosquitto. CPU = (utime + stime) delta of /proc/<pid>/stat over
``--seconds``, as % of one core; RSS = VmRSS at the end, VmHWM = peak.

Writes (same idle run, same window): ``/proc/<pid>/io`` write_bytes / syscw of the gateway,
and strace of the same process for fsyncs and a breakdown by cause (bench/writes.py):
bytes written per reading, fsyncs per second, the floor (the journal's stored bytes per
reading x 2: once into the WAL, once checkpointed) and the projection per day and for a
card of ``--tbw`` TB endurance.

CPU per reading (``--cpu-seconds`` > 0): a second gateway with ``--cpu-sensors`` sensors at
``--cpu-rate`` readings/s in total (QoS 1, every rule, the InfluxDB sink) and, subscribed
to the same stream in the same run, a bare paho subscriber (QoS 1, acks on receipt): process
CPU (utime + stime) per reading of each over the same window.

    .venv/bin/python bench/footprint.py --seconds 60 --cpu-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import writes
from bench.common import (
    CLK_TCK,
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


def config_doc(
    journal: Path,
    port: int,
    influx_url: str,
    devices: list[str] = DEVICES,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway config: MQTT sensors in 20 zones, InfluxDB v1 sink, journal overrides."""
    return {
        "hub": {"id": "bench"},
        "journal": {"path": str(journal), "synchronous": "full", **(overrides or {})},
        "logging": {"level": "WARNING"},
        **sensors_doc(devices, zones=20),
        "drivers": {
            "mqtt": [
                {
                    "name": "nodes",
                    "host": "127.0.0.1",
                    "port": port,
                    "sensors": list(DEVICES),
                    "subscriptions": [
                        {
                            "topic": "sensors/+/telemetry",
                            "sensor_path": "id",
                            "device_topic_segment": 1,
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


def _override(text: str) -> tuple[str, Any]:
    """``key=value`` of --journal: the value as TOML would read it (number, bool, string)."""
    key, _, raw = text.partition("=")
    value: Any = raw
    if raw in {"true", "false"}:
        value = raw == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return key, value


def paced_publisher(
    port: int, devices: list[str], rate: float, per_tick: int, stop: Any, counts: Any
) -> None:
    """A publisher process: ``per_tick`` messages every ``per_tick / rate`` s, devices in turn.

    With ``per_tick`` 1 at 200/s the 200 sensors report spread over each second, as
    unsynchronised probes do (``--publish spread``); each sensor's timestamps increase.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fp-paced")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    period = per_tick / rate
    sent = 0
    next_at = time.monotonic()
    while not stop.is_set():
        ts_ms = int(time.time() * 1000)
        for _ in range(per_tick):
            i = sent % len(devices)
            body = {
                "id": devices[i],
                "ts": ts_ms,
                # a slow curve plus +-0.03 of probe noise (a constant value is "frozen")
                "temp_c": round(
                    4.0 + 0.5 * math.sin(ts_ms / 120_000 + i) + (sent * 7919 % 7 - 3) / 100, 2
                ),
                "rh": 80.0,
                "battery_v": 3.6,
                "seq": sent // len(devices) + 1,
            }
            client.publish(f"sensors/{devices[i]}/telemetry", json.dumps(body), qos=1)
            sent += 1
        counts.value = acked  # PUBACKed by the broker: what the receivers can get
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    deadline = time.monotonic() + 30
    while acked < sent and time.monotonic() < deadline:  # the broker has all of them
        time.sleep(0.05)
    counts.value = acked
    client.disconnect()
    client.loop_stop()


def bare_counter(port: int, ready: Any, count: Any) -> None:
    """The baseline: a bare paho subscriber (QoS 1, acks on receipt, counts and drops)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fp-bare")
    n = 0

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe("sensors/+/telemetry", qos=1)

    def on_message(*_: Any) -> None:
        nonlocal n
        n += 1
        if n % 100 == 0:
            count.value = n

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_per_reading(
    base: Path, port: int, influx: Any, args: argparse.Namespace, overrides: dict[str, Any]
) -> dict[str, float]:
    """Gateway and bare paho CPU per reading at a sustained rate, same stream, same window."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    devices = [f"node-{i}" for i in range(1, args.cpu_sensors + 1)]
    work = base / "cpu"
    work.mkdir()
    journal = work / "journal.db"
    config = write_config(
        work / "gateway.toml", config_doc(journal, port, influx.url, devices, overrides)
    )
    notify = NotifySocket(work)
    gw = GatewayProcess(config, notify)
    notify.wait_for("READY=1", 30)
    deadline = time.monotonic() + 30
    while not _subscribed(work / "status.json") and time.monotonic() < deadline:
        time.sleep(0.1)
    ready, bare_n = ctx.Event(), ctx.Value("q", 0)
    bare = ctx.Process(target=bare_counter, args=(port, ready, bare_n), daemon=True)
    bare.start()
    ready.wait(10)
    stop, sent = ctx.Event(), ctx.Value("q", 0)
    pub = ctx.Process(
        target=paced_publisher, args=(port, devices, args.cpu_rate, 10, stop, sent), daemon=True
    )
    pub.start()
    time.sleep(5)  # warm up
    spy = None
    if args.profile:  # py-spy of the gateway over the window (raw collapsed stacks)
        out = Path(args.profile) / "footprint-cpu.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(VENV_BIN / "py-spy"), "record", "--pid", str(gw.pid), "--format", "raw"]
        argv += ["--rate", "100", "--duration", str(int(args.cpu_seconds)), "-o", str(out)]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert bare.pid is not None
    g0, b0, s0, t0 = gw.cpu_s(), proc_cpu_s(bare.pid), sent.value, time.time()
    time.sleep(args.cpu_seconds)
    g1, b1, s1, t1 = gw.cpu_s(), proc_cpu_s(bare.pid), sent.value, time.time()
    if spy is not None:
        spy.wait(60)
    stop.set()
    pub.join(60)
    published_total = sent.value  # every publish PUBACKed by the broker
    time.sleep(1.5)
    bare_total = bare_n.value
    bare.terminate()
    bare.join(10)
    gw.stop()
    notify.close()
    committed = writes.readings_between(journal, t0, t1)
    published = s1 - s0
    return {
        "rate": published / (t1 - t0),
        "committed_rate": committed / (t1 - t0),
        "gateway_ms": (g1 - g0) / max(1, committed) * 1000,
        "bare_ms": (b1 - b0) / max(1, published) * 1000,
        "sent_total": float(published_total),
        "bare_total": float(bare_total),
        "stored": float(writes.readings_between(journal, 0, time.time() + 1)),
    }


def print_writes(
    tally: writes.WriteTally | None,
    io0: dict[str, int],
    io1: dict[str, int],
    seconds: float,
    readings: int,
    floor: float,
    tbw_tb: float,
) -> None:
    """The write table: /proc io, fsync rate, floor, breakdown by cause, projection."""
    wb = io1["write_bytes"] - io0["write_bytes"]
    wchar = io1["wchar"] - io0["wchar"]
    syscw = io1["syscw"] - io0["syscw"]
    per = max(1, readings)
    print()
    print(f"writes over {seconds:.0f} s, {readings} readings ({readings / seconds:.0f}/s)")
    print(
        f"/proc io write_bytes: {wb / seconds / 1024:.1f} KiB/s, {wb / per:.0f} bytes/reading"
        f"  (wchar {wchar / per:.0f} B/reading, syscw {syscw / seconds * 60:.0f}/min)"
    )
    print(f"floor: journal stored bytes per reading x 2 = {floor:.0f} bytes/reading")
    if tally is not None:
        print(
            f"fsync+fdatasync: {tally.syncs / seconds:.2f}/s ("
            + ", ".join(f"{k} {v / seconds:.2f}/s" for k, v in tally.syncs_by_file.items())
            + f"); WAL commits {tally.commits / seconds:.2f}/s,"
            f" {readings / max(1, tally.commits):.1f} readings per commit"
        )
        print(f"{'cause (strace, bytes to write calls)':<46}{'B/reading':>10}{'calls/s':>9}")
        for cause, n in tally.bytes_by_cause.most_common():
            calls = tally.calls_by_cause[cause] / seconds
            print(f"{cause:<46}{n / per:>10.1f}{calls:>9.2f}")
        print(f"{'total':<46}{tally.total_bytes / per:>10.1f}")
    day = wb / seconds * 86_400
    years = tbw_tb * 1e12 / day / 365 if day else float("inf")
    print(
        f"projection: {day / 1e9:.2f} GB/day, {day * 365 / 1e12:.2f} TB/year;"
        f" a card rated {tbw_tb:g} TBW lasts {years:.1f} years at this load"
    )
    print(f"target: <= 200 bytes written per reading (floor {floor:.0f})")


def main() -> None:
    """Startup repeats, the idle run with its writes, the CPU run; print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--tbw", type=float, default=10.0, help="card endurance, TB written")
    p.add_argument("--no-strace", action="store_true", help="only /proc/<pid>/io, no strace")
    p.add_argument(
        "--journal",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a [journal] setting (e.g. commit_interval_ms=20); repeatable",
    )
    p.add_argument(
        "--publish",
        choices=["spread", "rounds"],
        default="spread",
        help="spread: each sensor at its own phase of the second (unsynchronised probes);"
        " rounds: SensorNodeSim publishes all 200 at once every second",
    )
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the window")
    p.add_argument("--cpu-seconds", type=float, default=30.0, help="0: skip the CPU run")
    p.add_argument("--cpu-rate", type=float, default=2000.0)
    p.add_argument("--profile", help="directory: py-spy record the CPU run's gateway")
    p.add_argument("--cpu-sensors", type=int, default=50)
    args = p.parse_args()
    from gateway.apps.localservices import Mosquitto

    overrides = dict(_override(o) for o in args.journal)
    base = workdir("footprint")
    py = str(VENV_BIN / "python")
    bare_py = bare_start([py, "-c", "pass"], args.starts)
    bare_import = bare_start([py, "-c", "import gateway.runtime.daemon"], args.starts)
    with (
        Mosquitto(base / "mosquitto", extra_config=broker_extra_config()) as broker,
        influxdb(base) as influx,
    ):
        journal = base / "journal.db"
        config = write_config(
            base / "gateway.toml",
            config_doc(journal, broker.port, influx.url, overrides=overrides),
        )
        starts = startup(config, args.starts) if args.starts else []
        if starts:
            print("startup to READY=1 (s): " + ", ".join(f"{s:.2f}" for s in starts), flush=True)
        for leftover in (journal, journal.with_name(journal.name + "-wal")):
            leftover.unlink(missing_ok=True)  # the write run starts from an empty journal
        notify = NotifySocket(base)
        (base / "status.json").unlink(missing_ok=True)  # left by the startup runs
        trace_log = base / "strace" / "trace"
        trace_log.parent.mkdir()
        prefix = None if args.no_strace else writes.strace_prefix(trace_log)
        gw = GatewayProcess(config, notify, prefix=prefix or ())
        notify.wait_for("READY=1", 30)
        # READY=1 means running, not subscribed: wait for the driver before publishing, or
        # the first messages go to a topic nobody subscribes to yet (dropped by the broker).
        deadline = time.monotonic() + 30
        while not _subscribed(base / "status.json") and time.monotonic() < deadline:
            time.sleep(0.1)
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        pub_stop, pub_sent = ctx.Event(), ctx.Value("q", 0)
        pub = ctx.Process(
            target=paced_publisher,
            args=(broker.port, DEVICES, 200.0, 1, pub_stop, pub_sent),
            daemon=True,
        )
        sim = SensorNodeSim("127.0.0.1", broker.port, DEVICES, interval_s=1.0, client_id="fp-sim")
        stop = threading.Event()

        def publish() -> None:
            async def loop() -> None:
                while not stop.is_set():
                    sim.publish_round()
                    await asyncio.sleep(1.0)

            asyncio.run(loop())

        thread = threading.Thread(target=publish, daemon=True)
        if args.publish == "rounds":
            sim.connect()
            thread.start()
        else:
            pub.start()
        # Warm up: connections, first batches, caches, and the first WAL checkpoint,
        # which writes out the startup's alerts (every sensor is stale until it reports).
        time.sleep(args.warmup)
        cpu0, t0, wall0, io0 = gw.cpu_s(), time.monotonic(), time.time(), writes.read_io(gw.pid)
        rss_samples = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            rss_samples.append(gw.status_kb("VmRSS") / 1024)
        io1, wall1 = writes.read_io(gw.pid), time.time()
        cpu = (gw.cpu_s() - cpu0) / (time.monotonic() - t0) * 100
        rss, hwm = gw.status_kb("VmRSS") / 1024, gw.status_kb("VmHWM") / 1024
        if args.publish == "rounds":
            stop.set()
            thread.join()
            deadline = time.monotonic() + 10
            while sim.pending and time.monotonic() < deadline:  # every publish PUBACKed
                time.sleep(0.05)
            sim.close()
        else:
            pub_stop.set()
            pub.join(30)
        time.sleep(1.5)
        gw.stop()
        notify.close()
        stored = reading_count(influx)
        window_readings = writes.readings_between(journal, wall0, wall1)
        floor = writes.stored_bytes_per_reading(journal)[0] * 2
        tally = writes.tally(trace_log, journal, wall0, wall1) if prefix else None
        cpu_run = None
        if args.cpu_seconds > 0:
            influx.drop_database("coldchain")
            influx.create_database("coldchain")
            cpu_run = cpu_per_reading(base, broker.port, influx, args, overrides)
            cpu_run["influx"] = float(reading_count(influx))
    sent = sum(sim.sent.values()) if args.publish == "rounds" else pub_sent.value
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
    print()
    if starts:
        label = f"startup (median of {args.starts})"
        print(f"{label:<44}{'seconds':>10}")
        print(f"{'baseline: python -c pass':<44}{bare_py:>10.2f}")
        print(f"{'baseline: python -c import gateway.runtime.daemon':<44}{bare_import:>10.2f}")
        print(f"{'coldchain run: process start -> READY=1':<44}{median(starts):>10.2f}")
        print()
    print(
        f"idle: 200 sensors at 1 Hz ({args.publish}) over MQTT (QoS 1),"
        f" journal synchronous=full ({settings}),"
        f" SOP rules, InfluxDB sink, {args.seconds:.0f} s" + ("" if prefix else ", no strace")
    )
    print(f"CPU: {cpu:.1f} % of one core")
    print(
        f"RSS: {rss:.1f} MB now, {max(rss_samples):.1f} MB max sampled, {hwm:.1f} MB peak (VmHWM)"
    )
    print(f"readings: {sent} published, {stored} in InfluxDB")
    print("targets: startup <= 1.5 s, RSS <= 80 MB, idle CPU < 5 % of a core")
    print_writes(tally, io0, io1, wall1 - wall0, window_readings, floor, args.tbw)
    if cpu_run is not None:
        print()
        print(
            f"CPU per reading: {args.cpu_sensors} sensors, {cpu_run['rate']:.0f} readings/s"
            f" published and PUBACKed (QoS 1), {cpu_run['committed_rate']:.0f}/s committed,"
            f" every rule, InfluxDB sink, {args.cpu_seconds:.0f} s"
        )
        print(f"{'receiver (same stream, same window)':<44}{'ms CPU/reading':>15}")
        print(f"{'baseline: bare paho subscriber QoS 1':<44}{cpu_run['bare_ms']:>15.3f}")
        print(f"{'gateway (utime+stime)':<44}{cpu_run['gateway_ms']:>15.3f}")
        print(
            f"ratio {cpu_run['gateway_ms'] / cpu_run['bare_ms']:.2f};"
            f" readings: {cpu_run['sent_total']:.0f} published, {cpu_run['stored']:.0f}"
            f" journaled, {cpu_run['influx']:.0f} in InfluxDB, bare saw"
            f" >= {cpu_run['bare_total']:.0f}"
        )
        print("target: <= 0.15 ms process CPU per reading")


if __name__ == "__main__":
    main()
