"""The one InfluxQL client: trace, verify, the demo and the test services all query here.

InfluxQL over ``/query`` runs on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x (DESIGN.md).
Values go into query text only through :func:`quote_literal` / :func:`quote_ident`.
Connections honour ``[sinks.influx]`` ``verify_tls`` and ``ca_file`` (the same pool the
writer uses, :func:`http_pool`), never retry on their own and never follow a redirect:
a redirect to another listener must not receive the hub's credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, InsecureRequestWarning

from gateway.config import InfluxSinkConfig
from gateway.core.errors import GatewayError

log = logging.getLogger(__name__)

DEFAULT_PAGE = 10_000
"""Rows per page: below InfluxDB 1.x's default ``max-row-limit`` (10,000 is its value)."""


class InfluxQueryError(GatewayError):
    """A query could not be answered: InfluxDB unreachable, refused, or an InfluxQL error."""


def quote_literal(value: str) -> str:
    """An InfluxQL string literal: single quotes, backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    """An InfluxQL identifier: double quotes, backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def http_pool(
    url: str,
    *,
    verify_tls: bool = True,
    ca_file: str | None = None,
    timeout_s: float = 10.0,
    maxsize: int = 2,
) -> urllib3.PoolManager:
    """An HTTP pool for an InfluxDB URL: TLS as configured, no retries, no redirects."""
    tls: dict[str, Any] = {}
    if url.startswith("https://"):
        if verify_tls:
            tls["cert_reqs"] = "CERT_REQUIRED"
            if ca_file:
                tls["ca_certs"] = os.path.expandvars(ca_file)
        else:
            tls["cert_reqs"] = "CERT_NONE"
            tls["assert_hostname"] = False
            # whoever turned verification off logs it once; urllib3 would repeat it per request
            urllib3.disable_warnings(InsecureRequestWarning)
    return urllib3.PoolManager(
        num_pools=2,
        maxsize=maxsize,
        retries=False,  # no retry and no redirect: a 3xx comes back as it is
        timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
        **tls,
    )


def flatten(series: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each value row of each series as one dict: the series tags plus the columns."""
    for s in series:
        tags = s.get("tags") or {}
        columns = s["columns"]
        for values in s.get("values", []):
            row = dict(tags)
            row.update(zip(columns, values, strict=True))
            yield row


@dataclass(frozen=True)
class InfluxQLClient:
    """Where and how to query: URL, database (and retention policy), credentials, TLS."""

    url: str
    database: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    retention_policy: str | None = None
    timeout_s: float = 10.0
    verify_tls: bool = True
    ca_file: str | None = None
    pool_size: int = 4
    _pool: urllib3.PoolManager = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            msg = f"InfluxDB url must start with http:// or https://, got {self.url!r}"
            raise InfluxQueryError(msg)
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.url.startswith("https://") and not self.verify_tls:
            log.warning(
                "InfluxDB %s: TLS certificate verification is OFF (verify_tls = false)", self.url
            )
        pool = http_pool(
            self.url,
            verify_tls=self.verify_tls,
            ca_file=self.ca_file,
            timeout_s=self.timeout_s,
            maxsize=self.pool_size,
        )
        object.__setattr__(self, "_pool", pool)

    @classmethod
    def from_config(
        cls, config: InfluxSinkConfig, *, database: str | None = None
    ) -> InfluxQLClient:
        """From ``[sinks.influx]``; with api v2 the bucket is the database (DBRP mapping)."""
        default = config.database if config.api == "v1" else (config.bucket or config.database)
        return cls(
            url=config.url,
            database=database or default,
            username=config.username,
            password=config.password.resolve() if config.password is not None else None,
            token=config.token.resolve() if config.token is not None else None,
            retention_policy=config.retention_policy,
            timeout_s=config.timeout_s,
            verify_tls=config.verify_tls,
            ca_file=config.ca_file,
        )

    def with_database(self, database: str) -> InfluxQLClient:
        """The same server and credentials, another database."""
        return replace(self, database=database)

    def headers(self) -> dict[str, str]:
        """``Token`` for a token, Basic auth for a username, else none."""
        if self.token:
            return {"Authorization": f"Token {self.token}"}
        if self.username:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        return {}

    def target(self, measurement: str) -> str:
        """The FROM clause for a measurement (``"db"."rp"."m"`` with a retention policy)."""
        if not self.retention_policy:
            return quote_ident(measurement)
        return ".".join(quote_ident(p) for p in (self.database, self.retention_policy, measurement))

    def query(self, q: str, *, write: bool = False) -> dict[str, Any]:
        """Run InfluxQL (epoch ns); the whole answer. ``write`` for statements that change
        state (CREATE, DROP), which InfluxDB only accepts by POST."""
        fields: Mapping[str, str] = {"q": q, "epoch": "ns"}
        if self.database:
            fields = {**fields, "db": self.database}
        try:
            if write:
                resp = self._pool.request_encode_body(
                    "POST",
                    f"{self.url}/query",
                    fields=fields,
                    headers=self.headers(),
                    encode_multipart=False,
                )
            else:
                resp = self._pool.request(
                    "GET", f"{self.url}/query", fields=fields, headers=self.headers()
                )
        except HTTPError as exc:
            msg = f"InfluxDB at {self.url} is unreachable: {exc}"
            raise InfluxQueryError(msg) from exc
        return _answer(resp.status, resp.data, self.url, q)

    def series(self, q: str) -> list[dict[str, Any]]:
        """The series of a SELECT's results."""
        out: list[dict[str, Any]] = []
        for result in self.query(q).get("results", []):
            out.extend(result.get("series", []))
        return out

    def rows(self, q: str) -> list[dict[str, Any]]:
        """A SELECT's rows as dicts (series tags plus columns)."""
        return list(flatten(self.series(q)))

    def paged_rows(self, q: str, page: int = DEFAULT_PAGE) -> list[dict[str, Any]]:
        """Every row of a SELECT (without ORDER/LIMIT), oldest first, past the row limit."""
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            batch = self.rows(f"{q} ORDER BY time ASC LIMIT {page} OFFSET {offset}")
            rows.extend(batch)
            if len(batch) < page:
                return rows
            offset += page

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()


def _answer(status: int, body: bytes, url: str, q: str) -> dict[str, Any]:
    if 300 <= status < 400:
        msg = f"InfluxDB at {url} answered a redirect ({status}); redirects are not followed"
        raise InfluxQueryError(msg)
    try:
        doc = json.loads(body)
    except ValueError as exc:
        msg = f"InfluxDB at {url} answered {status} with non-JSON: {body[:200]!r}"
        raise InfluxQueryError(msg) from exc
    if not isinstance(doc, dict):
        msg = f"InfluxDB at {url} answered {status} with {type(doc).__name__}, not an object"
        raise InfluxQueryError(msg)
    errors = [doc["error"]] if "error" in doc else []
    errors += [r["error"] for r in doc.get("results", []) if "error" in r]
    if status >= 300 or errors:
        detail = "; ".join(map(str, errors)) or body[:200].decode("utf-8", "replace")
        msg = f"InfluxDB at {url} refused {q[:120]!r} ({status}): {detail}"
        raise InfluxQueryError(msg)
    return doc
