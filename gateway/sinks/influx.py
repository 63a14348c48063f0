"""InfluxDB writer: one batch of line protocol per call, errors sorted into retry or reject.

Two write paths, chosen by ``api`` in the config:

- ``v1``: ``POST {url}/write?db=..&rp=..&precision=ns`` with basic auth or
  ``Authorization: Token ...`` (InfluxDB 1.x, and the 1.x-compatible endpoint of 2.x/3.x).
  Bodies above ``gzip_min_bytes`` are sent with ``Content-Encoding: gzip``.
- ``v2``: influxdb-client's write API in synchronous mode (org, bucket, token).

Both run the blocking HTTP call in a worker thread and reuse their connection pool.
The writer does not retry: the forwarder owns retries, backoff and the cursor. What it
guarantees is the classification:

- connection failure, timeout, TLS failure, 5xx, 429 -> ``InfluxUnavailable``
  (a ``SinkUnavailable``; ``retry_after_s`` carries the server's Retry-After);
- any other 4xx (bad line, 401, 403, 404 database not found, 413) -> ``InfluxRejected``
  (a ``SinkRejected``; ``status`` and the server's message). 401/403/404 usually mean a
  config problem rather than a bad batch: callers can check ``status`` before they
  quarantine.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import json
import logging
import os
import time
import urllib.parse
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InsecureRequestWarning

from gateway.config import InfluxSinkConfig
from gateway.core.errors import SinkRejected, SinkUnavailable
from gateway.influxql.client import http_pool

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 4096
_MAX_MESSAGE = 500


class InfluxUnavailable(SinkUnavailable):
    """InfluxDB cannot take the batch now; retry later (after ``retry_after_s`` if set)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class InfluxRejected(SinkRejected):
    """InfluxDB refused the batch with a 4xx; ``status`` and ``message`` say why."""

    def __init__(self, message: str, *, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def server_message(body: bytes, headers: Any = None) -> str:
    """The error text of an InfluxDB (1.x ``error``, 2.x ``message``) or other response."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])[:_MAX_MESSAGE]
    if not text and headers is not None:
        for key in ("X-Influxdb-Error", "X-Influx-Error", "X-Platform-Error-Code"):
            found = headers.get(key)
            if found:
                return str(found)[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


def classify(status: int, message: str, retry_after: str | None, where: str) -> None:
    """Raise the gateway error for a non-2xx status; return for 2xx."""
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        retry_s = parse_retry_after(retry_after)
        hint = f" (Retry-After {retry_s:.0f}s)" if retry_s is not None else ""
        msg = f"{where}: HTTP {status}{hint}: {message}"
        raise InfluxUnavailable(msg, status=status, retry_after_s=retry_s)
    msg = f"{where}: HTTP {status}: {message}"
    raise InfluxRejected(msg, status=status, server_message=message)


class InfluxWriter:
    """Writes line protocol batches to InfluxDB (v1 ``/write`` or the v2 client)."""

    def __init__(self, config: InfluxSinkConfig, *, gzip_min_bytes: int = GZIP_MIN_BYTES) -> None:
        self.config = config
        self.gzip_min_bytes = gzip_min_bytes
        self.base_url = config.url.rstrip("/")
        self._closed = False
        self._token = config.token.resolve() if config.token is not None else None
        self._password = config.password.resolve() if config.password is not None else None
        https = self.base_url.startswith("https://")
        if https and not config.verify_tls:
            log.warning(
                "TLS certificate verification is OFF for InfluxDB at %s "
                "(verify_tls = false): anyone on the path can read and alter the data",
                self.base_url,
            )
            # said once above; urllib3 (also under the v2 client) would repeat it per request
            urllib3.disable_warnings(InsecureRequestWarning)
        self._pool: urllib3.PoolManager | None = None
        self._client: Any = None
        self._write_api: Any = None
        if config.api == "v1":
            self._pool = self._make_pool()
            self._write_url = f"{self.base_url}/write?{urllib.parse.urlencode(self._params())}"
            self._headers = self._auth_headers()
        else:
            self._open_v2_client()

    # -- construction -----------------------------------------------------------------
    def _make_pool(self) -> urllib3.PoolManager:
        cfg = self.config
        return http_pool(
            cfg.url, verify_tls=cfg.verify_tls, ca_file=cfg.ca_file, timeout_s=cfg.timeout_s
        )

    def _params(self) -> dict[str, str]:
        params = {"db": self.config.database, "precision": "ns"}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        return params

    def _auth_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.username:
            pair = f"{self.config.username}:{self._password or ''}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        elif self._token:
            headers["Authorization"] = f"Token {self._token}"
        return headers

    def _open_v2_client(self) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        cfg = self.config
        # InfluxDB 1.8's v2 compatibility takes "user:password" as a basic-auth token
        basic = bool(cfg.username)
        token = f"{cfg.username}:{self._password or ''}" if basic else (self._token or "")
        self._client = InfluxDBClient(
            url=self.base_url,
            token=token,
            org=cfg.org or "",
            auth_basic=basic,
            timeout=int(cfg.timeout_s * 1000),
            enable_gzip=True,
            verify_ssl=cfg.verify_tls,
            ssl_ca_cert=os.path.expandvars(cfg.ca_file) if cfg.ca_file else None,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    # -- the sink contract ---------------------------------------------------------------
    async def write(self, body: bytes, points: int) -> None:
        """Deliver one batch; returns once the server confirmed (2xx), raises otherwise."""
        if self._closed:
            msg = "InfluxDB writer is closed"
            raise InfluxUnavailable(msg)
        if not body:
            return
        started = time.monotonic()
        if self._pool is not None:
            await asyncio.to_thread(self._write_v1, body)
        else:
            await asyncio.to_thread(self._write_v2, body)
        log.debug(
            "influx: wrote %d points (%d bytes) in %.1f ms",
            points,
            len(body),
            (time.monotonic() - started) * 1000,
        )

    async def ping(self) -> bool:
        """True when the server answers its health endpoint (``/ping``)."""
        if self._closed:
            return False
        if self._pool is not None:
            return await asyncio.to_thread(self._ping_v1)
        return bool(await asyncio.to_thread(self._client.ping))

    async def close(self) -> None:
        """Release connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.clear()
        if self._write_api is not None:
            self._write_api.close()
            self._write_api = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- v1 ----------------------------------------------------------------------------
    def _write_v1(self, body: bytes) -> None:
        assert self._pool is not None
        headers = self._headers
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=1)
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            resp = self._pool.request(
                "POST", self._write_url, body=body, headers=headers, redirect=False
            )
        except (Urllib3Error, OSError) as exc:
            msg = f"InfluxDB {self.base_url} unreachable: {exc}"
            raise InfluxUnavailable(msg) from exc
        if 200 <= resp.status < 300:
            return
        classify(
            resp.status,
            server_message(resp.data, resp.headers),
            resp.headers.get("Retry-After"),
            f"InfluxDB write to {self.base_url} db={self.config.database}",
        )

    def _ping_v1(self) -> bool:
        assert self._pool is not None
        try:
            resp = self._pool.request("GET", f"{self.base_url}/ping", headers=self._headers)
        except (Urllib3Error, OSError):
            return False
        return 200 <= resp.status < 300

    # -- v2 ----------------------------------------------------------------------------
    def _write_v2(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        cfg = self.config
        where = f"InfluxDB v2 write to {self.base_url} bucket={cfg.bucket}"
        try:
            self._write_api.write(
                bucket=cfg.bucket, org=cfg.org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            body_bytes = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
            message = server_message(body_bytes, exc.headers) or str(exc.reason or "")
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if status == 0:
                msg = f"{where}: {exc.reason}"
                raise InfluxUnavailable(msg) from exc
            try:
                classify(status, message, retry_after, where)
            except (InfluxUnavailable, InfluxRejected) as err:
                raise err from exc
        except (Urllib3Error, OSError) as exc:
            msg = f"{where}: unreachable: {exc}"
            raise InfluxUnavailable(msg) from exc
