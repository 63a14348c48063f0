"""``coldchain discover --mqtt`` against a real Mosquitto where every format is publishing.

The devices' documented payloads are published retained (so they reach a subscriber as
soon as it subscribes, whatever the timing); discover lists each topic with its guessed
format and prints a snippet; the snippet, with a hub and its zone, passes check-config
without a warning, and a gateway run on it stores the right readings.
"""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest

from gateway.apps.discover import mqtt as discover_mqtt
from gateway.apps.localservices import Mosquitto
from gateway.cli import build_parser, main
from gateway.config import parse_config
from gateway.config.warnings import config_warnings
from tests.drivers.mqtt import sparkplug_wire as spb
from tests.drivers.mqtt.conftest import Publisher
from tests.drivers.mqtt.payload_fixtures import fixture
from tests.integration.harness import running_gateway, wait_for

pytestmark = pytest.mark.integration

SP = "spBv1.0/ColdRoom"
CS = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event"

MESSAGES = [
    ("zigbee2mqtt/dock_probe", fixture("zigbee2mqtt/wsdcgq01lm_docs.json")),
    ("zigbee2mqtt/aqara", fixture("zigbee2mqtt/wsdcgq11lm_exposes.json")),
    ("zigbee2mqtt/bridge/state", fixture("zigbee2mqtt/bridge_state.txt")),
    ("tele/freezer/SENSOR", fixture("tasmota/ds18x20_three_probes.json")),
    ("shellyhtg3-84fce63bd6a4/events/rpc", fixture("shelly/notify_status_temperature.json")),
    ("freezer-node/sensor/probe_1/state", fixture("esphome/state_number.txt")),
    ("homeassistant/sensor/freezer_temperature/state", fixture("homeassistant/state_number.txt")),
    ("v3/starter-kit@ttn/devices/eui-70b3d52dd600035a/up", fixture("ttn/uplink_starter_kit.json")),
    (f"{CS}/up", fixture("chirpstack/up_event_with_object.json")),
    (f"{SP}/NBIRTH/Edge1", spb.nbirth()),
    (
        f"{SP}/DBIRTH/Edge1/Freezer1",
        spb.payload(
            [
                spb.metric("Probe1/Temperature", alias=1, datatype=spb.FLOAT, float_value=-18.5),
                spb.metric("Humidity", alias=3, datatype=spb.FLOAT, float_value=60.0),
            ],
            timestamp=spb.T_MS,
            seq=1,
        ),
    ),
    ("sensors/node-1/telemetry", json.dumps({"id": "node-1", "temp_c": 3.9}).encode()),
]

# The format discover must guess for each topic.
FORMATS = {
    "zigbee2mqtt/dock_probe": "zigbee2mqtt",
    "zigbee2mqtt/aqara": "zigbee2mqtt",
    "tele/freezer/SENSOR": "tasmota",
    "shellyhtg3-84fce63bd6a4/events/rpc": "shelly",
    "freezer-node/sensor/probe_1/state": "esphome",
    "homeassistant/sensor/freezer_temperature/state": "homeassistant",
    "v3/starter-kit@ttn/devices/eui-70b3d52dd600035a/up": "ttn",
    f"{CS}/up": "chirpstack",
    f"{SP}/NBIRTH/Edge1": "sparkplug_b",
    f"{SP}/DBIRTH/Edge1/Freezer1": "sparkplug_b",
    "sensors/node-1/telemetry": "json",
}

# (sensor id as discover names it, temperature stored)
READINGS = {
    ("dock_probe", 27.34),
    ("aqara", 22.75),
    ("freezer-00000566CC39", 13.3),
    ("freezer-0000059352D4", 1.2),
    ("freezer-000005937C90", 22.5),
    ("shellyhtg3-84fce63bd6a4", 4.1),
    ("freezer-node-probe_1", 21.5),
    ("freezer_temperature", 4.25),
    ("eui-70b3d52dd600035a", 21.5),
    ("0101010101010101", 25.0),
    ("ColdRoom-Edge1-Cabinet-Temperature", 21.25),
    ("ColdRoom-Edge1-Freezer1-Probe1-Temperature", -18.5),
    ("node-1", 3.9),
}


async def test_discover_guesses_every_format_and_its_snippet_runs(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    await Publisher(mosquitto).publish(MESSAGES, retain=True)
    args = build_parser().parse_args(
        [
            "discover",
            "--mqtt",
            f"{mosquitto.host}:{mosquitto.port}",
            "--seconds",
            "3",
            "--zone",
            "popup",
            "--time-zone",
            "Europe/Berlin",
        ]
    )
    out = io.StringIO()
    assert discover_mqtt.discover(args, out) == 0
    text = out.getvalue()
    for topic, name in FORMATS.items():
        assert f"#   {topic}  [{name}]" in text, topic
    assert "#   zigbee2mqtt/bridge/state  (no temperature read" in text
    assert "Time is the device's local time: read in Europe/Berlin (check it)" in text

    snippet = text[text.index("[[drivers.mqtt]]") :]
    header = (
        f'[hub]\nid = "popup-1"\n[journal]\npath = "{tmp_path / "journal.db"}"\n'
        '[[zones]]\nid = "popup"\nkind = "cold_storage"\n'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(header + snippet)
    assert main(["check-config", str(path)]) == 0
    config = parse_config(tomllib.loads(path.read_text()))
    assert config_warnings(config) == []

    async with running_gateway(config) as gw:
        # The retained messages come again on the gateway's own SUBSCRIBE.
        await wait_for(lambda: gw.counters.committed >= len(READINGS), what="the readings")
        rows = [r for _, r in gw.runner.journal.readings_after(0, 1000)]
    assert {(r.sensor, r.temp_c) for r in rows} == READINGS
