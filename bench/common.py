"""Shared helpers of the benchmarks: private services, generated configs, process probes.

Everything runs on loopback (127.0.0.1) in a temporary directory; services started here
are stopped at exit (``gateway.apps.localservices`` registers them with ``atexit``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Mosquitto settings of the benchmarks (on top of gateway.apps.localservices.Mosquitto's defaults,
# which already set these; repeated here so the bench documents what it depends on):
# - max_inflight_messages 1000: QoS 1 messages in flight per client before the broker
#   waits for PUBACKs. The gateway acks a whole commit batch at once (after the journal
#   commit), so the window must hold at least one batch or the broker idles while the
#   journal commits. Mosquitto's default (20) stalls a burst at a few hundred msg/s.
# - max_queued_messages 1000000, max_queued_bytes 0: messages queued per client beyond
#   the inflight window (and for an offline persistent session). The default (1000)
#   would drop most of a 100k burst: with QoS 1 that is silent loss at the broker.
# - persistence true (as in production): the in-memory store is snapshotted on
#   autosave/shutdown only, not per message, so it costs no per-message I/O on loopback.
BROKER_SETTINGS = {
    "max_inflight_messages": 1000,
    "max_queued_messages": 1_000_000,
    "max_queued_bytes": 0,
    "persistence": "true",
}


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (e.g. from `timeout`) would skip atexit, leaving the private mosquitto and
    # influxd (own sessions, so they survive us) running: exit normally instead.
    sys.exit(128 + signum)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def broker_extra_config() -> str:
    """The mosquitto.conf lines of BROKER_SETTINGS."""
    return "".join(f"{k} {v}\n" for k, v in BROKER_SETTINGS.items())


def workdir(prefix: str) -> Path:
    """A fresh temporary directory for one benchmark run."""
    return Path(tempfile.mkdtemp(prefix=f"cc-bench-{prefix}-"))


def median(values: Sequence[float]) -> float:
    """The median, NaN for nothing."""
    return statistics.median(values) if values else float("nan")


# -- TOML ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    msg = f"cannot write {type(value).__name__} as TOML"
    raise TypeError(msg)


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """A small TOML writer for generated gateway configs (tables, arrays of tables)."""
    out: list[str] = []

    def table(prefix: str, data: Mapping[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in data.items()
            if not isinstance(v, Mapping | list)
            or (isinstance(v, list) and not any(isinstance(x, Mapping) for x in v))
        }
        nested = {k: v for k, v in data.items() if k not in scalars}
        if prefix and (scalars or not nested):
            out.append(f"[{prefix}]")
        for k, v in scalars.items():
            out.append(f"{k} = {_toml_value(v)}")
        for k, v in nested.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, list):
                for item in v:
                    out.append(f"[[{name}]]")
                    for ik, iv in item.items():
                        out.append(f"{ik} = {_toml_value(iv)}")
            else:
                table(name, v)

    table("", doc)
    return "\n".join(out) + "\n"


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write a config document as TOML and check that the gateway accepts it."""
    from gateway.config import load_config

    path.write_text(toml_dumps(doc), encoding="utf-8")
    load_config(path)
    return path


def sensors_doc(sensor_ids: Sequence[str], zones: int, interval_s: float = 1.0) -> dict[str, Any]:
    """profiles/zones/sensors sections: sensors spread round-robin over ``zones`` zones."""
    return {
        "profiles": {"chilled": {"min_c": 2.0, "max_c": 8.0, "alarm_delay_s": 60}},
        "zones": [
            {"id": f"z{z}", "kind": "cold_storage", "profile": "chilled"} for z in range(zones)
        ],
        "sensors": [
            {"id": s, "zone": f"z{i % zones}", "interval_s": interval_s}
            for i, s in enumerate(sensor_ids)
        ],
    }


# -- processes ----------------------------------------------------------------------


class NotifySocket:
    """A NOTIFY_SOCKET (unix datagram) that records when each message arrived.

    A thread reads it all the time, like systemd does: the gateway's sendto() blocks
    when the socket's queue is full (STATUS= every status interval), which would stall
    its event loop and the benchmark with it.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))
                self._cond.notify_all()

    def wait_for(self, key: str, timeout: float) -> float:
        """time.monotonic() when a message holding ``key`` (e.g. READY=1) arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, text in self.messages:
                    if key in text.split("\n"):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f"no {key} within {timeout} s"
                    raise TimeoutError(msg)
                self._cond.wait(left)

    def close(self) -> None:
        """Stop reading, close and unlink."""
        self._closed = True
        self._thread.join()
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class GatewayProcess:
    """``coldchain run --config`` in its own process, with /proc probes."""

    def __init__(
        self,
        config: Path,
        notify: NotifySocket | None = None,
        prefix: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(os.environ)
        env.update(extra_env or {})
        env.pop("WATCHDOG_USEC", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        self.log_path = config.with_suffix(".log")
        self._log = self.log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*prefix, str(VENV_BIN / "coldchain"), "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        self.pid = self.proc.pid
        if prefix:  # a wrapper (strace) started the gateway: probe its child
            self.pid = self._child(self.proc.pid)

    @staticmethod
    def _child(pid: int, timeout: float = 10.0) -> int:
        """The first child process of pid (the gateway under a wrapper such as strace)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                    argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                    # Not a short-lived helper of the wrapper (strace forks one to test
                    # seccomp, with its own argv): the gateway's interpreter itself.
                    if argv[0].endswith((b"python", b"python3")) and b"run" in argv:
                        return int(child)
            time.sleep(0.01)
        msg = f"process {pid} started no child within {timeout} s"
        raise TimeoutError(msg)

    def status_kb(self, key: str) -> int:
        """A /proc/<pid>/status value in kB (VmHWM = peak RSS, VmRSS = now)."""
        for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if row.startswith(key + ":"):
                return int(row.split()[1])
        return 0

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far (/proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (the gateway drains and exits 0)."""
        if self.proc.poll() is None:
            if self.pid != self.proc.pid:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGTERM)  # the gateway; its wrapper follows
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The end of the gateway's log, for errors."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def status_json(journal_path: Path) -> dict[str, Any]:
    """The gateway's status.json next to its journal ({} while not written yet)."""
    try:
        doc: dict[str, Any] = json.loads((journal_path.with_name("status.json")).read_text())
    except (OSError, ValueError):
        return {}
    return doc


@contextlib.contextmanager
def influxdb(work: Path, database: str = "coldchain") -> Iterator[Any]:
    """A private influxd with ``database`` created."""
    from gateway.apps.localservices import InfluxDB1

    with InfluxDB1(work / "influxd") as influx:
        influx.create_database(database)
        yield influx


def reading_count(influx: Any, database: str = "coldchain") -> int:
    """Readings stored in InfluxDB (points of measurement ``reading``)."""
    rows = influx.rows('SELECT count("temp_c") FROM "reading"', database)
    return int(rows[0]["count"]) if rows else 0
