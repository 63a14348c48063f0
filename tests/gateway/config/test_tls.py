"""TLS end to end: the MQTT driver, the planner feed and the InfluxDB writer over TLS.

Everything runs against real servers with certificates made for the test run
(tests/tls_material.py): a private Mosquitto with a TLS listener (gateway.apps.localservices
Mosquitto plus extra listener config) and a small local HTTPS server standing in for
InfluxDB's write endpoint. What is proven:

- server verification against a configured CA works (127.0.0.1 and localhost), and a
  server certificate from another CA is refused with a certificate verification error;
- username/password over TLS (password from a SecretRef), wrong password refused;
- client certificates, when the broker requires them;
- ``verify = false`` connects to anything and says so loudly in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import logging
import os
import ssl
import subprocess
import threading
import uuid
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.config import MqttDriverConfig, TopicMapping
from drivers.mqtt.driver import MqttDriver
from gateway.alerts.store import AlertStore
from gateway.apps.localservices import Mosquitto, free_port
from gateway.config import InfluxSinkConfig
from gateway.core.clock import ManualClock, SystemClock
from gateway.core.errors import DriverDisconnected, SinkRejected, SinkUnavailable
from gateway.core.metrics import Counters
from gateway.core.model import Delivery
from gateway.core.tls import TlsConfig
from gateway.journal.store import Journal, JournalRunner
from gateway.sinks.influx import InfluxWriter
from gateway.sinks.planner.config import PlannerConfig
from gateway.sinks.planner.feed import COMPONENT, PlannerFeed
from gateway.sinks.planner.payloads import HubState
from tests.tls_material import CLIENT_CN, KeyPair, TlsMaterial, make_tls_material, openssl_available

pytestmark = pytest.mark.integration

WAIT_S = 20.0
T0_MS = 1_767_225_600_000
USER = "gateway"
PASSWORD = "s3cret-over-tls"
PASSWORD_ENV = "COLDCHAIN_TEST_TLS_MQTT_PASSWORD"
HUB = "hub-tls"


def _require(available: bool, what: str) -> None:
    """Skip locally when a binary is missing (like tests/conftest.py); fail in CI."""
    if available:
        return
    reason = f"{what} is not installed"
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """Two CAs and their certificates, made once for this module."""
    _require(openssl_available(), "openssl")
    return make_tls_material(tmp_path_factory.mktemp("tls"))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and everything it was raised from (explicit cause, else implicit context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_certificate_failure(exc: BaseException) -> bool:
    """An SSLCertVerificationError somewhere in the chain, or its text in a message."""
    return any(
        isinstance(e, ssl.SSLCertVerificationError) or "certificate verify failed" in str(e)
        for e in causes(exc)
    )


# -- a Mosquitto with a TLS listener -------------------------------------------------------


@dataclass(frozen=True)
class TlsBroker:
    """A running broker: ``port`` is its TLS listener (the plain one is broker.port)."""

    broker: Mosquitto
    port: int


@pytest.fixture
def start_broker(tmp_path: Path, tls: TlsMaterial) -> Iterator[Callable[..., TlsBroker]]:
    """Factory: a Mosquitto with one TLS listener, stopped at the end of the test.

    ``server`` is the certificate the listener presents (default: signed by the test
    CA); ``client_certs`` makes the listener require a client certificate signed by the
    test CA (its CN becomes the username); ``passwords`` turns anonymous access off
    and checks usernames against a password file made by mosquitto_passwd.
    """
    _require(Mosquitto.binary_available(), "mosquitto")
    with contextlib.ExitStack() as stack:

        def start(
            server: KeyPair | None = None,
            *,
            client_certs: bool = False,
            passwords: dict[str, str] | None = None,
        ) -> TlsBroker:
            pair = server or tls.server
            workdir = tmp_path / f"mosquitto-{uuid.uuid4().hex[:6]}"
            workdir.mkdir()
            lines: list[str] = []
            if passwords:
                _require(Path("/usr/bin/mosquitto_passwd").exists(), "mosquitto_passwd")
                password_file = workdir / "passwords"
                for user, password in passwords.items():
                    flags = ["-b"] if password_file.exists() else ["-b", "-c"]
                    subprocess.run(
                        ["mosquitto_passwd", *flags, str(password_file), user, password],
                        check=True,
                        capture_output=True,
                        timeout=30,
                    )
                # global options (per_listener_settings is off): later lines win
                lines += [f"password_file {password_file}", "allow_anonymous false"]
            port = free_port()
            lines += [
                f"listener {port} 127.0.0.1",
                f"cafile {tls.ca.cert}",
                f"certfile {pair.cert}",
                f"keyfile {pair.key}",
            ]
            if client_certs:
                lines += ["require_certificate true", "use_identity_as_username true"]
            broker = stack.enter_context(Mosquitto(workdir, extra_config="\n".join(lines)))
            return TlsBroker(broker, port)

        yield start


def publish_over_tls(
    port: int,
    ca: Path,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
    username: str | None = None,
    password: str | None = None,
    client: KeyPair | None = None,
) -> None:
    """Blocking: a paho client connects over TLS (trusting ca only), QoS 1, PUBACK."""
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-pub-{uuid.uuid4().hex[:8]}")
    mqtt.tls_set(
        ca_certs=str(ca),
        certfile=str(client.cert) if client else None,
        keyfile=str(client.key) if client else None,
    )
    if username is not None:
        mqtt.username_pw_set(username, password)
    mqtt.connect("127.0.0.1", port)
    mqtt.loop_start()
    try:
        info = mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published()
    finally:
        mqtt.disconnect()
        mqtt.loop_stop()


# -- the MQTT driver ---------------------------------------------------------------------


def driver_config(port: int, **overrides: Any) -> MqttDriverConfig:
    fields: dict[str, Any] = {
        "name": "tls-nodes",
        "host": "127.0.0.1",
        "port": port,
        "keepalive_s": 5,
        "subscriptions": [
            TopicMapping(
                topic="sensors/+/telemetry",
                sensor_path="id",
                temp_path="temp_c",
                ts_path="ts",
                ts_format="epoch_ms",
                seq_path="n",
            )
        ],
    }
    fields.update(overrides)
    return MqttDriverConfig.model_validate(fields)


def reading(n: int) -> tuple[str, bytes]:
    doc = {"id": "s1", "temp_c": 4.5, "ts": T0_MS + n * 1000, "n": n}
    return "sensors/s1/telemetry", json.dumps(doc).encode()


def stream_of(driver: MqttDriver) -> AsyncGenerator[Delivery, None]:
    """driver.deliveries(), typed as the async generator it is (so it can be closed)."""
    return cast(AsyncGenerator[Delivery, None], driver.deliveries())


async def receive_one(
    driver: MqttDriver, publish: Callable[[str, bytes], None], n: int = 1
) -> None:
    """Connect the driver, publish reading n with publish, and see it arrive as a sample."""
    async with contextlib.aclosing(stream_of(driver)) as stream:
        async with asyncio.timeout(WAIT_S):
            first = await anext(stream)  # the empty delivery: connected and subscribed
        assert (list(first.samples), list(first.rejects)) == ([], [])
        await asyncio.to_thread(publish, *reading(n))
        async with asyncio.timeout(WAIT_S):
            while True:
                delivery = await anext(stream)
                delivery.ack()
                if any(s.seq == n for s in delivery.samples):
                    break
        sample = next(s for s in delivery.samples if s.seq == n)
        assert (sample.sensor, sample.temp_c, sample.source) == ("s1", 4.5, "mqtt:tls-nodes")
    await driver.close()


async def refused(driver: MqttDriver) -> DriverDisconnected:
    """The driver's first connection attempt fails with DriverDisconnected."""
    with pytest.raises(DriverDisconnected) as info:
        async with contextlib.aclosing(stream_of(driver)) as stream:
            async with asyncio.timeout(WAIT_S):
                await anext(stream)
    await driver.close()
    return info.value


async def test_driver_verifies_the_server_and_receives_qos1(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_broker()
    tls_config = {"enabled": True, "ca_file": str(tls.ca.cert)}
    driver = MqttDriver(driver_config(server.port, tls=tls_config), ManualClock())

    def publish(topic: str, payload: bytes) -> None:
        publish_over_tls(server.port, tls.ca.cert, topic, payload)

    with caplog.at_level(logging.WARNING):
        await receive_one(driver, publish)
    assert not [r for r in caplog.records if "VERIFICATION IS OFF" in r.getMessage()]


async def test_driver_verifies_the_dns_name_too(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial
) -> None:
    server = start_broker()
    config = driver_config(
        server.port, host="localhost", tls={"enabled": True, "ca_file": str(tls.ca.cert)}
    )

    def publish(topic: str, payload: bytes) -> None:
        publish_over_tls(server.port, tls.ca.cert, topic, payload)

    await receive_one(MqttDriver(config, ManualClock()), publish)


async def test_driver_refuses_a_server_certificate_of_another_ca(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial
) -> None:
    server = start_broker(tls.other_server)
    config = driver_config(server.port, tls={"enabled": True, "ca_file": str(tls.ca.cert)})

    error = await refused(MqttDriver(config, ManualClock()))

    assert is_certificate_failure(error), repr(error)
    assert f"127.0.0.1:{server.port}" in str(error)


async def test_a_failed_handshake_leaves_no_socket_open(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial
) -> None:
    # paho does not close the socket of a failed handshake; gateway.core.tls's context
    # does (_ClosingSSLSocket). An open one would show up as a ResourceWarning here.
    server = start_broker(tls.other_server)
    config = driver_config(server.port, tls={"enabled": True, "ca_file": str(tls.ca.cert)})
    for _ in range(3):  # three attempts of a reconnect loop
        error = await refused(MqttDriver(config, ManualClock()))
        assert is_certificate_failure(error)
        del error  # its chain holds paho's frames, and so the socket
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_driver_refuses_a_server_unknown_to_the_system_store(
    start_broker: Callable[..., TlsBroker],
) -> None:
    # TLS on without ca_file: the system CAs, which never signed the test certificate
    server = start_broker()
    config = driver_config(server.port, tls={"enabled": True})

    error = await refused(MqttDriver(config, ManualClock()))

    assert is_certificate_failure(error), repr(error)


async def test_verify_false_connects_to_any_server_and_warns_loudly(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_broker(tls.other_server)
    config = driver_config(
        server.port, tls={"enabled": True, "ca_file": str(tls.ca.cert), "verify": False}
    )
    with caplog.at_level(logging.WARNING, logger="gateway.core.tls"):
        driver = MqttDriver(config, ManualClock())
    warnings = [
        r for r in caplog.records if r.name == "gateway.core.tls" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "TLS SERVER VERIFICATION IS OFF" in text
    assert "mqtt driver tls-nodes" in text

    def publish(topic: str, payload: bytes) -> None:
        # the test publisher still verifies: it trusts the other CA explicitly
        publish_over_tls(server.port, tls.other_ca.cert, topic, payload)

    await receive_one(driver, publish)


async def test_username_and_password_over_tls(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_broker(passwords={USER: PASSWORD})
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    config = driver_config(
        server.port,
        tls={"enabled": True, "ca_file": str(tls.ca.cert)},
        username=USER,
        password={"env": PASSWORD_ENV},
    )

    def publish(topic: str, payload: bytes) -> None:
        publish_over_tls(server.port, tls.ca.cert, topic, payload, username=USER, password=PASSWORD)

    await receive_one(MqttDriver(config, ManualClock()), publish)


@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong-password", "anonymous"])
async def test_wrong_or_missing_password_is_refused(
    start_broker: Callable[..., TlsBroker],
    tls: TlsMaterial,
    monkeypatch: pytest.MonkeyPatch,
    password: str | None,
) -> None:
    server = start_broker(passwords={USER: PASSWORD})
    overrides: dict[str, Any] = {"tls": {"enabled": True, "ca_file": str(tls.ca.cert)}}
    if password is not None:
        monkeypatch.setenv(PASSWORD_ENV, password)
        overrides |= {"username": USER, "password": {"env": PASSWORD_ENV}}

    error = await refused(MqttDriver(driver_config(server.port, **overrides), ManualClock()))

    assert not is_certificate_failure(error)
    assert "not authorized" in str(error).lower(), error


async def test_client_certificate_required_by_the_broker(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial
) -> None:
    server = start_broker(client_certs=True)
    config = driver_config(
        server.port,
        tls={
            "enabled": True,
            "ca_file": str(tls.ca.cert),
            "cert_file": str(tls.client.cert),
            "key_file": str(tls.client.key),
        },
    )

    def publish(topic: str, payload: bytes) -> None:
        publish_over_tls(server.port, tls.ca.cert, topic, payload, client=tls.client)

    await receive_one(MqttDriver(config, ManualClock()), publish)
    # use_identity_as_username: the broker saw the certificate's CN
    log = server.broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert f"u'{CLIENT_CN}'" in log, log[-2000:]


async def test_no_client_certificate_is_refused_when_required(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial
) -> None:
    server = start_broker(client_certs=True)
    config = driver_config(server.port, tls={"enabled": True, "ca_file": str(tls.ca.cert)})

    # The broker ends the TLS session right after the handshake. aiomqtt (2.5) ignores a
    # disconnect before CONNACK and gives up after its 10 s timeout: this test takes 10 s.
    await refused(MqttDriver(config, ManualClock()))

    log = server.broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "peer did not return a certificate" in log, log[-2000:]


def test_tls_config_rejects_a_certificate_without_its_key(tls: TlsMaterial) -> None:
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        TlsConfig(enabled=True, cert_file=str(tls.client.cert))


def test_tls_config_off_means_no_context(tls: TlsMaterial) -> None:
    assert TlsConfig().context("x") is None
    with pytest.raises(ValueError, match="enabled = false"):
        TlsConfig(ca_file=str(tls.ca.cert))  # would silently connect in plaintext
    context = TlsConfig(enabled=True, ca_file=str(tls.ca.cert)).context("x")
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_missing_or_mismatched_tls_files_stop_the_driver_at_load(
    tls: TlsMaterial, tmp_path: Path
) -> None:
    missing = driver_config(1, tls={"enabled": True, "ca_file": str(tmp_path / "nope.pem")})
    with pytest.raises(FileNotFoundError):
        MqttDriver(missing, ManualClock())
    mismatched = driver_config(
        1,
        tls={
            "enabled": True,
            "ca_file": str(tls.ca.cert),
            "cert_file": str(tls.client.cert),
            "key_file": str(tls.server.key),
        },
    )
    with pytest.raises(ssl.SSLError):
        MqttDriver(mismatched, ManualClock())


# -- the planner feed --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_planner(
    tmp_path: Path, config: PlannerConfig, counters: Counters
) -> AsyncIterator[PlannerFeed]:
    journal = Journal(tmp_path / f"journal-{uuid.uuid4().hex[:6]}.db")
    runner = JournalRunner(journal)
    try:
        feed = PlannerFeed(
            config,
            HUB,
            runner,
            AlertStore(journal.connection, HUB),
            counters,
            SystemClock(),
            lambda: (HubState.ONLINE, []),
        )
        task = asyncio.create_task(feed.run())
        try:
            yield feed
        finally:
            await feed.close()
            async with asyncio.timeout(WAIT_S):
                await task
    finally:
        runner.close()


async def test_planner_feed_publishes_over_verified_tls(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial, tmp_path: Path
) -> None:
    server = start_broker()
    config = PlannerConfig(port=server.port, tls=TlsConfig(enabled=True, ca_file=str(tls.ca.cert)))
    counters = Counters()
    context = ssl.create_default_context(cafile=str(tls.ca.cert))
    status_topic = f"coldchain/v1/{HUB}/status"
    async with (
        aiomqtt.Client("127.0.0.1", server.port, tls_context=context) as planner,
        running_planner(tmp_path, config, counters),
    ):
        await planner.subscribe(status_topic, qos=1)
        async with asyncio.timeout(WAIT_S):
            async for message in planner.messages:
                assert isinstance(message.payload, bytes)
                if json.loads(message.payload)["state"] == "online":
                    break
        assert counters.connected[COMPONENT]


async def test_planner_feed_refuses_a_server_of_another_ca(
    start_broker: Callable[..., TlsBroker], tls: TlsMaterial, tmp_path: Path
) -> None:
    server = start_broker(tls.other_server)
    config = PlannerConfig(
        port=server.port,
        max_backoff_s=0.5,
        tls=TlsConfig(enabled=True, ca_file=str(tls.ca.cert)),
    )
    counters = Counters()
    async with running_planner(tmp_path, config, counters):
        async with asyncio.timeout(WAIT_S):
            while COMPONENT not in counters.last_error:
                await asyncio.sleep(0.02)
        assert "certificate verify failed" in counters.last_error[COMPONENT]
        assert not counters.connected[COMPONENT]


# -- InfluxDB over https -----------------------------------------------------------------


class _InfluxStandIn(BaseHTTPRequestHandler):
    """Answers 204 to the v1 and v2 write endpoints and to /ping, like InfluxDB."""

    server: _HttpsServer
    timeout = 10  # per connection: a stuck client cannot hold the server's close
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.startswith(("/write?", "/api/v2/write?")):
            self.server.writes.append((self.path, body))
            self._answer(204)
        else:
            self._answer(404)

    def do_GET(self) -> None:
        self._answer(204 if self.path.startswith("/ping") else 404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpsServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads

    def __init__(self, pair: KeyPair) -> None:
        super().__init__(("127.0.0.1", 0), _InfluxStandIn)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pair.cert, pair.key)
        # the handshake runs in accept(); a failed one is an OSError the server ignores
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.writes: list[tuple[str, bytes]] = []


@contextlib.contextmanager
def https_server(pair: KeyPair) -> Iterator[_HttpsServer]:
    """A local HTTPS server presenting pair, served from a thread; closed on exit."""
    server = _HttpsServer(pair)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def influx_config(server: _HttpsServer, host: str = "127.0.0.1", **fields: Any) -> Any:
    port = server.server_address[1]
    settings: dict[str, Any] = {"url": f"https://{host}:{port}", "database": "d", "timeout_s": 5}
    if fields.get("api") == "v2":
        settings |= {"org": "o", "bucket": "b", "token": {"value": "t"}}
    return InfluxSinkConfig.model_validate(settings | fields)


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_influx_https_with_the_configured_ca(tls: TlsMaterial, api: str, host: str) -> None:
    with https_server(tls.server) as server:
        writer = InfluxWriter(influx_config(server, host, api=api, ca_file=str(tls.ca.cert)))
        try:
            await writer.write(b"m v=1 1", 1)
        finally:
            await writer.close()
    assert [body for _, body in server.writes] == [b"m v=1 1"]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_influx_https_refuses_a_server_of_another_ca(tls: TlsMaterial, api: str) -> None:
    with https_server(tls.other_server) as server:
        writer = InfluxWriter(influx_config(server, api=api, ca_file=str(tls.ca.cert)))
        try:
            with pytest.raises(SinkUnavailable) as info:
                await writer.write(b"m v=1 1", 1)
            assert not await writer.ping()
        finally:
            await writer.close()
    # a certificate failure keeps the backlog (retry later), it does not quarantine data
    assert not isinstance(info.value, SinkRejected)
    assert is_certificate_failure(info.value), repr(info.value)
    assert server.writes == []


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_influx_verify_tls_false_works_and_warns(
    tls: TlsMaterial, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    with https_server(tls.other_server) as server:
        with caplog.at_level(logging.WARNING, logger="gateway.sinks.influx"):
            writer = InfluxWriter(influx_config(server, api=api, verify_tls=False))
        try:
            await writer.write(b"m v=2 2", 1)
        finally:
            await writer.close()
    assert [body for _, body in server.writes] == [b"m v=2 2"]
    assert any(
        r.levelno == logging.WARNING and "verification is OFF" in r.getMessage()
        for r in caplog.records
    )
