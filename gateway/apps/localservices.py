"""Private Mosquitto, InfluxDB 1.x and VictoriaMetrics instances for tests and the demo.

Each service runs from Debian's binary on free loopback ports with all its state in a
working directory the caller owns (a pytest ``tmp_path`` or the demo's temp dir). A
service is a context manager; every started process is also stopped at interpreter exit
(``atexit``), so a failing test or an interrupted demo leaves no process behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gateway.core.errors import ServiceError
from gateway.influxql.client import InfluxQLClient, InfluxQueryError, flatten

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.02
_HTTP_TIMEOUT_S = 10.0

_LIVE: set[_Service] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def http_request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = _HTTP_TIMEOUT_S,
) -> tuple[int, bytes]:
    """One HTTP request (urllib, no pooling); (status, body) for any status, nothing left open."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


@atexit.register
def _stop_all() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service.stop()


class _Service:
    """One child process with a log file, a readiness check and a clean stop."""

    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self.stdout_log = self.workdir / f"{self.name}.stdout.log"

    # -- subclass hooks -------------------------------------------------------------
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files and create directories before a start."""

    def _ready(self) -> bool:
        raise NotImplementedError

    def _log_for_errors(self) -> Path:
        return self.stdout_log

    # -- lifecycle -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the process and wait until it serves; ServiceError with its log if not."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
        with self.stdout_log.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self._argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,  # a Ctrl-C in the demo reaches us, not it
                )
            except OSError as exc:
                msg = f"cannot start {self.name}: {exc}"
                raise ServiceError(msg) from exc
        _LIVE.add(self)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                self._reap()
                msg = (
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"log tail:\n{_log_tail(self._log_for_errors())}"
                )
                raise ServiceError(msg)
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                msg = (
                    f"{self.name} did not become ready within {START_TIMEOUT_S:.0f}s; "
                    f"log tail:\n{_log_tail(self._log_for_errors())}"
                )
                raise ServiceError(msg)
            time.sleep(_POLL_S)

    def _reap(self) -> None:
        _LIVE.discard(self)
        self._proc = None

    def stop(self) -> None:
        """SIGTERM, wait for a clean exit (it saves its state), SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._reap()

    def kill(self) -> None:
        """SIGKILL without a clean shutdown (a crash or power cut)."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._reap()

    def restart(self) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Mosquitto(_Service):
    """A private Mosquitto broker with persistence, so a restart keeps QoS 1 sessions.

    Inflight and queue limits are raised well above the defaults: with the default
    inflight window a QoS 1 burst stalls at a few hundred messages per second.
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        super().__init__(workdir)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.extra_config = extra_config
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.persistence_dir = self.workdir / "persistence"

    @staticmethod
    def binary() -> str | None:
        """Path of the mosquitto binary, if installed."""
        return shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )

    @staticmethod
    def binary_available() -> bool:
        """True when the mosquitto binary is installed."""
        return Mosquitto.binary() is not None

    @property
    def url(self) -> str:
        """``mqtt://host:port``."""
        return f"mqtt://{self.host}:{self.port}"

    def _prepare(self) -> None:
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            # mosquitto concatenates location and file name: the trailing slash matters
            f"persistence_location {self.persistence_dir}/",
            "persistence_file mosquitto.db",
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # as root mosquitto drops to user "mosquitto", which cannot write our workdir
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        text = "\n".join(lines) + "\n"
        if self.extra_config:
            text += self.extra_config.rstrip("\n") + "\n"
        self.config_path.write_text(text, encoding="utf-8")

    def _argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            msg = "mosquitto is not installed (apt-get install mosquitto)"
            raise ServiceError(msg)
        return [binary, "-c", str(self.config_path)]

    def _log_for_errors(self) -> Path:
        return self.log_path if self.log_path.exists() else self.stdout_log

    def _ready(self) -> bool:
        # "running" is logged after the listener is open: a port answering without it
        # could belong to someone else who took the port first
        try:
            log = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return " running" in log.rsplit("starting", 1)[-1] and port_open(self.host, self.port)

    def start(self) -> None:
        """Start the broker; a picked port lost to a race is replaced by a fresh one."""
        for attempt in range(3):
            try:
                super().start()
                return
            except ServiceError:
                if self._fixed_port or attempt == 2 or not port_open(self.host, self.port):
                    raise
                self.port = free_port()


class InfluxDB1(_Service):
    """A private InfluxDB 1.x (Debian's influxd 1.6): v1 HTTP API only.

    Auth is off unless ``admin=(user, password)`` is given: then auth is on, that admin
    user is created at start, and the helpers here send its credentials.

    The config is written from scratch: every key left out keeps influxd's built-in
    default, and ``-config`` keeps /etc/influxdb/influxdb.conf out of the picture.
    """

    name = "influxd"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        admin: tuple[str, str] | None = None,
        max_row_limit: int = 0,
    ) -> None:
        super().__init__(workdir)
        self.port = port if port is not None else free_port()
        self.rpc_port = free_port()
        self.max_row_limit = max_row_limit  # [http] max-row-limit; 0 = unlimited
        self.config_path = self.workdir / "influxdb.conf"
        self.admin = admin
        self._headers: dict[str, str] = {}
        if admin is not None:
            pair = f"{admin[0]}:{admin[1]}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"

    @staticmethod
    def binary() -> str | None:
        """Path of the influxd binary, if installed."""
        return shutil.which("influxd") or (
            "/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None
        )

    @staticmethod
    def binary_available() -> bool:
        """True when the influxd binary is installed."""
        return InfluxDB1.binary() is not None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> None:
        for sub in ("meta", "data", "wal"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        w = self.workdir
        self.config_path.write_text(
            f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{w / "meta"}"
  logging-enabled = false

[data]
  dir = "{w / "data"}"
  wal-dir = "{w / "wal"}"
  index-version = "inmem"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {"true" if self.admin else "false"}
  log-enabled = false
  pprof-enabled = false
  max-row-limit = {self.max_row_limit}

[logging]
  level = "warn"
  suppress-logo = true
""",
            encoding="utf-8",
        )

    def _argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            msg = "influxd is not installed (apt-get install influxdb)"
            raise ServiceError(msg)
        return [binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            status, _ = http_request("GET", f"{self.url}/ping", timeout=1.0)
        except OSError:
            return False
        return status == 204

    def start(self) -> None:
        """Start influxd; with ``admin`` set, auth is on and that admin user exists."""
        super().start()
        if self.admin is not None:
            # allowed without credentials while no admin exists; idempotent afterwards
            user, password = self.admin
            escaped = password.replace("\\", "\\\\").replace("'", "\\'")
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{escaped}' WITH ALL PRIVILEGES")

    def client(self, db: str = "") -> InfluxQLClient:
        """The shared InfluxQL client for this server (admin credentials when auth is on)."""
        user, password = self.admin if self.admin is not None else (None, None)
        return InfluxQLClient(self.url, db, username=user, password=password, timeout_s=10.0)

    def query(self, q: str, db: str = "", *, method: str = "POST") -> dict[str, Any]:
        """Run InfluxQL (timestamps as integer ns); ServiceError if any statement failed."""
        client = self.client(db)
        try:
            return client.query(q, write=method == "POST")
        except InfluxQueryError as exc:
            msg = f"InfluxQL {q!r} failed: {exc}"
            raise ServiceError(msg) from exc
        finally:
            client.close()

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Run one SELECT and flatten every series into dicts (columns plus series tags)."""
        return list(
            flatten(self.query(q, db, method="GET").get("results", [{}])[0].get("series", []))
        )

    def count(self, db: str, measurement: str, where: str = "") -> int:
        """Points stored in a measurement (the largest per-field count), optional WHERE."""
        clause = f" WHERE {where}" if where else ""
        rows = self.rows(f'SELECT count(*) FROM "{measurement}"{clause}', db)
        if not rows:
            return 0
        # A field never written in the selection has a null count (not 0): skip it.
        counts = [int(v) for k, v in rows[0].items() if k.startswith("count_") and v is not None]
        return max(counts, default=0)

    def create_database(self, name: str) -> None:
        """CREATE DATABASE (a no-op if it exists)."""
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        """DROP DATABASE (a no-op if it does not exist)."""
        self.query(f'DROP DATABASE "{name}"')

    def write(self, db: str, body: str | bytes, precision: str = "ns") -> None:
        """Write line protocol directly (test setup); ServiceError unless 204."""
        data = body.encode() if isinstance(body, str) else body
        query = urllib.parse.urlencode({"db": db, "precision": precision})
        status, answer = http_request(
            "POST", f"{self.url}/write?{query}", data=data, headers=self._headers
        )
        if status != 204:
            msg = f"influxd write answered {status}: {answer[:300]!r}"
            raise ServiceError(msg)


class VictoriaMetrics(_Service):
    """A private single-node VictoriaMetrics: a real HTTP peer for the v2 write path.

    It accepts line protocol on ``/write`` (v1) and ``/api/v2/write`` and stores each
    field as a metric ``{measurement}_{field}`` with the tags as labels and millisecond
    timestamps. Fresh writes are not searchable until the in-memory buffers are flushed:
    ``flush()`` calls ``/internal/force_flush``; the helpers here flush first.
    Retention is set to 100 years so test points with old timestamps are kept.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port if port is not None else free_port()
        self.data_dir = self.workdir / "vmdata"

    @staticmethod
    def binary() -> str | None:
        """Path of the victoria-metrics binary, if installed."""
        return shutil.which("victoria-metrics") or (
            "/usr/bin/victoria-metrics" if Path("/usr/bin/victoria-metrics").exists() else None
        )

    @staticmethod
    def binary_available() -> bool:
        """True when the victoria-metrics binary is installed."""
        return VictoriaMetrics.binary() is not None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            msg = "victoria-metrics is not installed (apt-get install victoria-metrics)"
            raise ServiceError(msg)
        return [
            binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            # a replayed point overwrites itself in InfluxDB; make VictoriaMetrics agree
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
        ]

    def _ready(self) -> bool:
        try:
            status, body = http_request("GET", f"{self.url}/health", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == b"OK"

    def flush(self) -> None:
        """Make everything written so far searchable (``/internal/force_flush``)."""
        status, body = http_request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            msg = f"force_flush answered {status}: {body[:200]!r}"
            raise ServiceError(msg)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching a selector, as ``{"metric", "values", "timestamps"}``."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        status, body = http_request("GET", f"{self.url}/api/v1/export?{query}")
        if status != 200:
            msg = f"export answered {status}: {body[:300]!r}"
            raise ServiceError(msg)
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def count(self, match: str) -> int:
        """Number of samples stored in all series matching a selector."""
        return sum(len(series["values"]) for series in self.export(match))

    def wait_for_count(self, match: str, expected: int, timeout: float = 10.0) -> int:
        """Poll ``count`` until it reaches ``expected`` or the timeout; returns the last."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.count(match)
            if seen >= expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)
