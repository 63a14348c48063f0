"""The one InfluxQL client: quoting, paging past the row limit, TLS as configured, and
never a redirect (a redirect must not carry the hub's credentials to another listener).

The TLS test goes through ``coldchain trace``'s own source construction: before the
client was shared, the trace ignored ``[sinks.influx] ca_file`` while verify honoured it
(architecture review, bug 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.trace.cli import open_source
from tests.tls_material import KeyPair, TlsMaterial, make_tls_material, openssl_available

EMPTY = json.dumps({"results": [{"statement_id": 0}]}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(EMPTY)))
        self.end_headers()
        self.wfile.write(EMPTY)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False

    def __init__(self, pair: KeyPair | None = None, redirect_to: str = "") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        if pair is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pair.cert, pair.key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.redirect_to = redirect_to
        self.seen: list[tuple[str, str | None]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def serving(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    if not openssl_available():
        pytest.skip("openssl is not installed")
    return make_tls_material(tmp_path_factory.mktemp("tls"))


def _config(url: str, **influx: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "hub": {"id": "hub-a"},
            "zones": [{"id": "z1", "kind": "cold_storage"}],
            "sinks": {"influx": {"url": url, "database": "db", "timeout_s": 5, **influx}},
        }
    )


def _trace_args() -> argparse.Namespace:
    return argparse.Namespace(source="influx", database=None)


def test_trace_over_https_honours_the_configured_ca(tls: TlsMaterial) -> None:
    with serving(_Server(tls.server)) as server:
        config = _config(f"https://127.0.0.1:{server.port}", ca_file=str(tls.ca.cert))
        source = open_source(_trace_args(), config)
        assert source.custody_events("SH-1") == []  # answered over verified TLS
        assert server.seen, "the query reached the server"


def test_trace_over_https_refuses_a_server_of_another_ca(tls: TlsMaterial) -> None:
    from gateway.trace.query import TraceSourceError

    with serving(_Server(tls.other_server)) as server:
        config = _config(f"https://127.0.0.1:{server.port}", ca_file=str(tls.ca.cert))
        source = open_source(_trace_args(), config)
        with pytest.raises(TraceSourceError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            source.custody_events("SH-1")


def test_trace_with_verification_off_reads_a_self_signed_server(tls: TlsMaterial) -> None:
    with serving(_Server(tls.other_server)) as server:
        config = _config(f"https://127.0.0.1:{server.port}", verify_tls=False)
        assert open_source(_trace_args(), config).custody_events("SH-1") == []


def test_a_redirect_is_refused_and_credentials_never_reach_the_other_listener() -> None:
    from gateway.influxql.client import InfluxQLClient, InfluxQueryError

    with (
        serving(_Server()) as elsewhere,
        serving(_Server(redirect_to=f"http://127.0.0.1:{elsewhere.port}")) as first,
    ):
        client = InfluxQLClient(
            f"http://127.0.0.1:{first.port}", "db", username="hub", password="s3cret"
        )
        with pytest.raises(InfluxQueryError, match="redirect"):
            client.rows('SELECT * FROM "reading"')
        client.close()
        assert first.seen and first.seen[0][1] is not None  # our own server got the auth
        assert elsewhere.seen == []


def test_paged_rows_reads_past_the_page_size_in_time_order(
    influx_db: tuple[Any, str], tmp_path: Path
) -> None:
    from gateway.influxql.client import InfluxQLClient

    server, db = influx_db
    lines = "\n".join(f"reading,hub=h,sensor=s temp_c={i}.5 {1_000 + i}" for i in range(25))
    server.write(db, lines)
    client = InfluxQLClient(server.url, db)
    try:
        rows = client.paged_rows('SELECT "temp_c" FROM "reading"', page=10)
    finally:
        client.close()
    assert [r["temp_c"] for r in rows] == [i + 0.5 for i in range(25)]
    assert [r["time"] for r in rows] == [1_000 + i for i in range(25)]


def test_literals_and_identifiers_are_escaped() -> None:
    from gateway.influxql.client import InfluxQLClient, quote_ident, quote_literal

    assert quote_literal("a'b\\c") == "'a\\'b\\\\c'"
    assert quote_ident('a"b\\c') == '"a\\"b\\\\c"'
    client = InfluxQLClient("http://127.0.0.1:9", 'd"b', retention_policy="rp 1")
    assert client.target("custody") == '"d\\"b"."rp 1"."custody"'
