"""Mosquitto and InfluxDB for the demo: running ones on loopback, else private ones."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from gateway.apps.demo.scenario import DEMO_DB
from gateway.apps.localservices import InfluxDB1, Mosquitto, port_open
from gateway.influxql.client import InfluxQLClient, quote_ident

log = logging.getLogger(__name__)


class DemoServices:
    """Finds or starts the broker and database the demo uses."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.mosquitto: Mosquitto | None = None
        self.influx: InfluxDB1 | None = None
        self.mqtt: tuple[str, int] | None = None
        self.influx_url: str | None = None
        self.notes: list[str] = []

    def start(self) -> None:
        """Pick or start services according to the mode."""
        if self.mode == "none":
            self.notes.append("services: none requested; journal only")
            return
        if self.mode in ("auto", "external"):
            if port_open("127.0.0.1", 1883):
                self.mqtt = ("127.0.0.1", 1883)
                self.notes.append("MQTT: using the broker on 127.0.0.1:1883")
            if port_open("127.0.0.1", 8086):
                self.influx_url = "http://127.0.0.1:8086"
                self.notes.append("InfluxDB: using the server on 127.0.0.1:8086")
        if self.mode in ("auto", "private"):
            if self.mqtt is None and Mosquitto.binary_available():
                self.mosquitto = Mosquitto(self.workdir / "mosquitto")
                self.mosquitto.start()
                self.mqtt = (self.mosquitto.host, self.mosquitto.port)
                self.notes.append(f"MQTT: started a private Mosquitto on port {self.mqtt[1]}")
            if self.influx_url is None and InfluxDB1.binary_available():
                self.influx = InfluxDB1(self.workdir / "influxdb")
                self.influx.start()
                self.influx_url = self.influx.url
                self.notes.append(f"InfluxDB: started a private influxd at {self.influx_url}")
        if self.mqtt is None:
            self.notes.append("MQTT: no broker found; MQTT sensor nodes are left out")
        if self.influx_url is None:
            self.notes.append("InfluxDB: none found; readings stay in the journal")
        if self.influx_url is not None:
            create_database(self.influx_url)

    def stop(self) -> None:
        """Stop what this demo started."""
        for svc in (self.mosquitto, self.influx):
            if svc is not None:
                with contextlib.suppress(Exception):
                    svc.stop()


def create_database(url: str) -> None:
    client = InfluxQLClient(url, timeout_s=5.0)
    try:
        client.query(f"CREATE DATABASE {quote_ident(DEMO_DB)}", write=True)
    finally:
        client.close()


def influx_count(url: str) -> int:
    client = InfluxQLClient(url, DEMO_DB, timeout_s=5.0)
    try:
        rows = client.rows('SELECT count("temp_c") FROM "reading"')
    finally:
        client.close()
    return int(rows[0].get("count", 0) or 0) if rows else 0
