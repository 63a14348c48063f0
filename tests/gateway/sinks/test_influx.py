"""InfluxWriter against real servers (influxd 1.x, VictoriaMetrics) and a scripted peer.

The scripted HTTP peer only covers what real servers will not do on demand
(429/503 with Retry-After, 401, a hanging response); every happy path and the
ordinary failures run against the real binaries.
"""

from __future__ import annotations

import gzip
import http.server
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.apps.localservices import InfluxDB1, VictoriaMetrics, free_port
from gateway.config import InfluxSinkConfig
from gateway.core.errors import SinkRejected, SinkUnavailable
from gateway.core.model import Reading
from gateway.outbox.lineprotocol import encode, line, reading_line
from gateway.sinks.influx import InfluxRejected, InfluxUnavailable, InfluxWriter, parse_retry_after

TS = 1_700_000_000_000_000_000


def _readings(n: int, hub: str = "hub-1") -> list[Reading]:
    return [
        Reading(
            sensor=f"s{i % 5}",
            ts_ns=TS + i * 1_000_000_007,
            received_ns=TS + i * 1_000_000_007 + 3,
            temp_c=2.0 + i / 100,
            source="serial:ttyUSB0",
            zone="cold-1" if i % 2 else "dock 2, east",
            rh=50.0 + i % 7,
            battery_v=None,
            quality=i % 3,
            seq=i,
        )
        for i in range(n)
    ]


def _body(readings: list[Reading], hub: str = "hub-1") -> bytes:
    return encode(reading_line(hub, r) for r in readings)


def _v1(url: str, database: str, **extra: Any) -> InfluxWriter:
    return InfluxWriter(InfluxSinkConfig(url=url, database=database, **extra))


@pytest.fixture
async def v1_writer(influx_db: tuple[InfluxDB1, str]) -> Any:
    server, db = influx_db
    writer = _v1(server.url, db)
    yield writer
    await writer.close()


# -- v1 against influxd -------------------------------------------------------------------


@pytest.mark.integration
async def test_v1_write_reads_back_exactly(
    influx_db: tuple[InfluxDB1, str], v1_writer: InfluxWriter
) -> None:
    server, db = influx_db
    readings = _readings(10)
    custody = line(
        "custody",
        {"hub": "hub-1", "shipment": "SHP 42", "event": "received", "zone": "dock 2, east"},
        {"actor": "ana", "seq": 1, "note": 'box "A" \\ dented', "temp_c": 3.5},
        TS + 5,
    )
    await v1_writer.write(_body(readings) + b"\n" + custody.encode(), len(readings) + 1)

    rows = server.rows("SELECT * FROM reading ORDER BY time", db)
    assert len(rows) == 10
    for row, r in zip(rows, readings, strict=True):
        assert row["time"] == r.ts_ns
        assert (row["hub"], row["sensor"], row["zone"]) == ("hub-1", r.sensor, r.zone)
        assert row["source"] == "serial:ttyUSB0"
        assert row["temp_c"] == r.temp_c
        assert row["rh"] == r.rh
        assert "battery_v" not in row  # no point had one: no column
        assert row["quality"] == r.quality
        assert row["seq"] == r.seq
    [c] = server.rows("SELECT * FROM custody", db)
    assert c["shipment"] == "SHP 42"
    assert c["note"] == 'box "A" \\ dented'
    assert c["time"] == TS + 5


@pytest.mark.integration
async def test_v1_replay_does_not_duplicate(
    influx_db: tuple[InfluxDB1, str], v1_writer: InfluxWriter
) -> None:
    server, db = influx_db
    body = _body(_readings(50))
    await v1_writer.write(body, 50)
    await v1_writer.write(body, 50)
    await v1_writer.write(body[: len(body) // 2].rsplit(b"\n", 1)[0], 0)
    assert server.count(db, "reading") == 50


@pytest.mark.integration
async def test_v1_large_batch_is_gzipped_and_stored(
    influx_db: tuple[InfluxDB1, str], v1_writer: InfluxWriter
) -> None:
    server, db = influx_db
    body = _body(_readings(5000))
    assert len(body) > v1_writer.gzip_min_bytes
    await v1_writer.write(body, 5000)
    assert server.count(db, "reading") == 5000


@pytest.mark.integration
async def test_v1_unknown_database_is_rejected(influxdb: InfluxDB1) -> None:
    writer = _v1(influxdb.url, "no_such_db_here")
    try:
        with pytest.raises(SinkRejected, match="database not found") as info:
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert isinstance(info.value, InfluxRejected)
    assert info.value.status == 404


@pytest.mark.integration
async def test_v1_bad_line_is_rejected_with_server_message(v1_writer: InfluxWriter) -> None:
    with pytest.raises(InfluxRejected, match="unable to parse") as info:
        await v1_writer.write(b"this is not line protocol", 1)
    assert info.value.status == 400


@pytest.mark.integration
async def test_v1_stopped_server_is_unavailable_then_recovers(
    influxdb: InfluxDB1, tmp_path: Path
) -> None:
    # a private server: stopping the shared one would disturb other tests
    with InfluxDB1(tmp_path / "own") as server:
        server.create_database("d")
        writer = _v1(server.url, "d")
        try:
            assert await writer.ping()
            await writer.write(b"m v=1 1", 1)
            server.stop()
            assert not await writer.ping()
            with pytest.raises(SinkUnavailable):
                await writer.write(b"m v=2 2", 1)
            server.start()
            await writer.write(b"m v=2 2", 1)  # the same writer reconnects
        finally:
            await writer.close()
        assert server.count("d", "m") == 2


@pytest.mark.integration
async def test_v1_basic_auth_against_influxd(influxdb: InfluxDB1, tmp_path: Path) -> None:
    with InfluxDB1(tmp_path / "auth", admin=("gw", "p'w")) as server:
        server.create_database("d")
        good = _v1(server.url, "d", username="gw", password={"value": "p'w"})
        bad = _v1(server.url, "d", username="gw", password={"value": "nope"})
        try:
            await good.write(b"m v=1 1", 1)
            with pytest.raises(InfluxRejected, match="authorization failed") as info:
                await bad.write(b"m v=2 2", 1)
        finally:
            await good.close()
            await bad.close()
        assert info.value.status == 401
        assert server.count("d", "m") == 1


async def test_v1_unreachable_port_is_unavailable() -> None:
    writer = _v1(f"http://127.0.0.1:{free_port()}", "d")
    try:
        with pytest.raises(InfluxUnavailable, match="unreachable"):
            await writer.write(b"m v=1 1", 1)
        assert not await writer.ping()
    finally:
        await writer.close()


# -- v2 against VictoriaMetrics ----------------------------------------------------------


def _v2(url: str, **extra: Any) -> InfluxWriter:
    cfg: dict[str, Any] = {"org": "coldchain", "bucket": "hub-data", "token": {"value": "t0k"}}
    cfg.update(extra)
    return InfluxWriter(InfluxSinkConfig(api="v2", url=url, **cfg))


@pytest.mark.integration
async def test_v2_write_to_victoria_metrics(victoria: VictoriaMetrics) -> None:
    writer = _v2(victoria.url)
    readings = _readings(20, hub="hub-v2")
    try:
        assert await writer.ping()
        await writer.write(_body(readings, hub="hub-v2"), 20)
        await writer.write(_body(readings, hub="hub-v2"), 20)  # replay
    finally:
        await writer.close()
    series = victoria.export('{__name__="reading_temp_c", hub="hub-v2"}')
    stored = sorted(
        (ts, s["metric"]["sensor"], s["metric"]["zone"], v)
        for s in series
        for ts, v in zip(s["timestamps"], s["values"], strict=True)
    )
    # VictoriaMetrics keeps millisecond timestamps
    assert stored == sorted((r.ts_ns // 1_000_000, r.sensor, r.zone, r.temp_c) for r in readings)
    assert victoria.count('{__name__="reading_seq", hub="hub-v2"}') == 20


@pytest.mark.integration
async def test_v2_against_influxd_1_6_is_rejected(influxdb: InfluxDB1) -> None:
    writer = _v2(influxdb.url)
    try:
        with pytest.raises(InfluxRejected) as info:
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert info.value.status == 404  # influxd 1.6 has no /api/v2


async def test_v2_unreachable_port_is_unavailable() -> None:
    writer = _v2(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(InfluxUnavailable):
            await writer.write(b"m v=1 1", 1)
        assert not await writer.ping()
    finally:
        await writer.close()


# -- what real servers will not do on demand: a scripted HTTP peer -------------------------


@dataclass
class Script:
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def peer() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            script.seen.append((self.path, dict(self.headers.items()), data))
            time.sleep(script.delay_s)
            self.send_response(script.status)
            for k, v in script.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(script.body)))
            self.end_headers()
            self.wfile.write(script.body)

        do_POST = do_GET = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_s"), [(429, "7", 7.0), (503, None, None), (500, "x", None)]
)
async def test_429_and_5xx_are_unavailable_with_retry_after(
    peer: tuple[str, Script], status: int, retry_after: str | None, expected_s: float | None
) -> None:
    url, script = peer
    script.status = status
    script.body = b'{"error":"slow down"}'
    if retry_after is not None:
        script.headers["Retry-After"] = retry_after
    writer = _v1(url, "d")
    try:
        with pytest.raises(InfluxUnavailable, match="slow down") as info:
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert info.value.status == status
    assert info.value.retry_after_s == expected_s


async def test_v2_429_is_unavailable_with_retry_after(peer: tuple[str, Script]) -> None:
    url, script = peer
    script.status = 429
    script.headers["Retry-After"] = "3"
    script.body = b'{"code":"too many requests","message":"org over quota"}'
    writer = _v2(url)
    try:
        with pytest.raises(InfluxUnavailable, match="org over quota") as info:
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert info.value.retry_after_s == 3.0
    path, headers, _ = script.seen[0]
    assert path.startswith("/api/v2/write?")
    assert "org=coldchain" in path
    assert "bucket=hub-data" in path
    assert headers["Authorization"] == "Token t0k"


async def test_401_is_rejected(peer: tuple[str, Script]) -> None:
    url, script = peer
    script.status = 401
    script.body = b'{"error":"authorization failed"}'
    writer = _v1(url, "d")
    try:
        with pytest.raises(InfluxRejected, match="authorization failed") as info:
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert info.value.status == 401


async def test_timeout_is_unavailable(peer: tuple[str, Script]) -> None:
    url, script = peer
    script.delay_s = 1.0
    writer = _v1(url, "d", timeout_s=0.2)
    try:
        with pytest.raises(InfluxUnavailable):
            await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()


async def test_v1_request_shape_token_and_gzip(peer: tuple[str, Script]) -> None:
    url, script = peer
    writer = _v1(url, "coldchain", retention_policy="one_year", token={"value": "s3cret"})
    big = b"m v=1 1\n" * 1000
    try:
        await writer.write(b"m v=1 1", 1)
        await writer.write(big, 1000)
    finally:
        await writer.close()
    (path1, headers1, body1), (_, headers2, body2) = script.seen
    assert path1 == "/write?db=coldchain&precision=ns&rp=one_year"
    assert headers1["Authorization"] == "Token s3cret"
    assert body1 == b"m v=1 1"
    assert "Content-Encoding" not in headers1
    assert headers2["Content-Encoding"] == "gzip"
    assert gzip.decompress(body2) == big


async def test_v1_basic_auth(peer: tuple[str, Script]) -> None:
    url, script = peer
    writer = _v1(url, "d", username="gw", password={"value": "pw"})
    try:
        await writer.write(b"m v=1 1", 1)
    finally:
        await writer.close()
    assert script.seen[0][1]["Authorization"] == "Basic Z3c6cHc="  # gw:pw


async def test_closed_writer_refuses_and_close_is_idempotent(peer: tuple[str, Script]) -> None:
    url, _ = peer
    writer = _v1(url, "d")
    await writer.close()
    await writer.close()
    assert not await writer.ping()
    with pytest.raises(SinkUnavailable):
        await writer.write(b"m v=1 1", 1)


async def test_verify_tls_false_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.sinks.influx"):
        writer = _v1("https://influx.example:8086", "d", verify_tls=False)
    await writer.close()
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
