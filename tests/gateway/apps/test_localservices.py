"""The private services that tests and the demo run: real processes, real ports."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.apps.localservices import (
    InfluxDB1,
    Mosquitto,
    VictoriaMetrics,
    free_port,
    http_request,
    port_open,
)
from gateway.core.errors import ServiceError

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_open("127.0.0.1", port)


def test_mosquitto_accepts_connections_and_stops(mosquitto: Mosquitto) -> None:
    assert port_open(mosquitto.host, mosquitto.port)
    pid = mosquitto.pid
    assert pid is not None
    mosquitto.stop()
    assert not mosquitto.running
    assert not _alive(pid)
    assert not port_open(mosquitto.host, mosquitto.port)


def test_mosquitto_config_has_the_benchmark_limits(mosquitto: Mosquitto) -> None:
    text = mosquitto.config_path.read_text()
    assert "max_inflight_messages 1000\n" in text
    assert "max_queued_messages 1000000\n" in text
    assert f"listener {mosquitto.port} 127.0.0.1\n" in text


def _session_client(broker: Mosquitto, got: list[bytes], done: threading.Event) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="persistent-sub", clean_session=False
    )

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    return client


def test_mosquitto_restart_keeps_qos1_sessions(mosquitto: Mosquitto) -> None:
    got: list[bytes] = []
    done = threading.Event()
    sub = _session_client(mosquitto, got, done)
    sub.loop_start()
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.subscribe("t/x", qos=1)
    assert subscribed.wait(timeout=5)
    sub.disconnect()
    sub.loop_stop()

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    pub.publish("t/x", b"kept", qos=1).wait_for_publish(timeout=5)
    pub.disconnect()
    pub.loop_stop()

    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port

    sub = _session_client(mosquitto, got, done)
    sub.loop_start()
    try:
        assert done.wait(timeout=10), "queued QoS 1 message lost across the restart"
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got == [b"kept"]


def test_mosquitto_bad_config_raises_with_log_tail(tmp_path: Path) -> None:
    if not Mosquitto.binary_available():
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path / "bad", extra_config="no_such_option 1")
    with pytest.raises(ServiceError, match="no_such_option"):
        broker.start()
    assert not broker.running


def test_influxdb_write_query_count_and_restart(influx_db: tuple[InfluxDB1, str]) -> None:
    server, db = influx_db
    server.write(db, "m,t=a v=1 1000\nm,t=a v=1 1000\nm,t=b v=2 2000\n")
    assert server.count(db, "m") == 2  # same series and timestamp: one point
    assert server.rows("SELECT * FROM m ORDER BY time", db) == [
        {"time": 1000, "t": "a", "v": 1},
        {"time": 2000, "t": "b", "v": 2},
    ]
    assert server.count(db, "m", "t = 'b'") == 1
    port = server.port
    server.restart()
    assert server.port == port
    assert server.count(db, "m") == 2


def test_influxdb_with_admin_requires_credentials(influxdb: InfluxDB1, tmp_path: Path) -> None:
    with InfluxDB1(tmp_path / "auth", admin=("admin", "secret")) as server:
        server.create_database("d")
        server.write("d", "m v=1 1")
        server.restart()  # the admin user is created again without complaint
        assert server.count("d", "m") == 1
        status, _ = http_request("POST", f"{server.url}/write?db=d", data=b"m v=2 2")
        assert status == 401


def test_influxdb_bad_query_raises(influx_db: tuple[InfluxDB1, str]) -> None:
    server, db = influx_db
    with pytest.raises(ServiceError, match="InfluxQL"):
        server.query("SELEKT nothing", db)


def test_influxdb_has_no_v2_api(influx_db: tuple[InfluxDB1, str]) -> None:
    server, _ = influx_db
    req = urllib.request.Request(f"{server.url}/api/v2/write", data=b"m v=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    info.value.close()
    assert info.value.code == 404


def test_victoria_stores_line_protocol_and_exports_it(victoria: VictoriaMetrics) -> None:
    req = urllib.request.Request(
        f"{victoria.url}/write?precision=ns",
        data=b"reading,hub=h1,sensor=s1 temp_c=4.5,quality=0i 1700000000000000000\n",
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204
    series = victoria.export('{__name__="reading_temp_c"}')
    assert series == [
        {
            "metric": {"__name__": "reading_temp_c", "hub": "h1", "sensor": "s1"},
            "values": [4.5],
            "timestamps": [1700000000000],
        }
    ]
    assert victoria.count('{__name__=~"reading_.*"}') == 2


def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    if not VictoriaMetrics.binary_available():
        pytest.skip("victoria-metrics is not installed")
    pid = None
    with pytest.raises(RuntimeError), VictoriaMetrics(tmp_path / "vm") as vm:
        pid = vm.pid
        raise RuntimeError("test failed")
    assert pid is not None
    assert not _alive(pid)
