"""Every payload format's documented payloads -> real Mosquitto -> gateway -> journal.

One MQTT driver with one subscription per format, the fixtures of
tests/drivers/mqtt/fixtures/ (sources in its README) published at QoS 1 as the devices
would, and the exact values the journal stored: the multi-probe, Fahrenheit,
percent-battery, naive-time, plain-number, ``nan`` and Sparkplug birth/data/rebirth
cases. What is not a reading is counted by reason and, where it is an error, kept as a
dead letter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.apps.localservices import Mosquitto
from gateway.core.clock import NS_PER_S
from tests.drivers.mqtt import sparkplug_wire as spb
from tests.drivers.mqtt.conftest import Publisher
from tests.drivers.mqtt.payload_fixtures import fixture
from tests.integration.harness import hub_config, running_gateway, wait_for

pytestmark = pytest.mark.integration

SP = "spBv1.0/ColdRoom"

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"},
    {"topic": "tele/+/SENSOR", "format": "tasmota", "time_zone": "Europe/Berlin"},
    {"topic": "stat/+/STATUS10", "format": "tasmota", "time_zone": "Europe/Berlin"},
    {"topic": "+/events/rpc", "format": "shelly"},
    # Before ESPHome's: "+/sensor/+/state" matches Home Assistant's topics too (the first
    # matching subscription wins; check-config warns about such overlaps).
    {"topic": "homeassistant/sensor/+/state", "format": "homeassistant"},
    {"topic": "+/sensor/+/state", "format": "esphome"},
    {
        "topic": "v3/+/devices/+/up",
        "format": "ttn",
        "temp_key": "sensorTemperature",
        "battery_key": "batteryVoltage",
    },
    {
        "topic": "application/+/device/+/event/+",
        "format": "chirpstack",
        "temp_key": "temperatureSensor.1",
        "rh_key": "humiditySensor.1",
    },
    {"topic": "spBv1.0/#", "format": "sparkplug_b"},
]

SENSOR_IDS = {
    "dock/probe_1": "z2m-dock-1",
    "aqara": "z2m-aqara",
    "freezer/00000566CC39": "tas-f1",
    "freezer/0000059352D4": "tas-f2",
    "freezer/000005937C90": "tas-f3",
    "lab/DHT11": "tas-lab-dht",
    "lab/SHT3X": "tas-lab-sht",
    "shellyhtg3-84fce63bd6a4": "shelly-ht",
    "freezer-node/probe_1": "esp-probe-1",
    "freezer_temperature": "ha-freezer",
    "eui-70b3d52dd600035a": "ttn-kit",
    "0101010101010101": "cs-dev",
    "ColdRoom/Edge1/Cabinet Temperature": "spb-cabinet",
    "ColdRoom/Edge1/Freezer1/Probe1/Temperature": "spb-p1",
    "ColdRoom/Edge1/Freezer1/Probe2/Temperature": "spb-p2",
}

CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event"


def _dbirth(
    seq: int, aliases: dict[str, int], values: dict[str, float], at_ms: int = spb.T_MS
) -> bytes:
    return spb.payload(
        [
            spb.metric(n, alias=a, datatype=spb.FLOAT, float_value=values[n], timestamp=at_ms)
            for n, a in aliases.items()
        ],
        timestamp=at_ms,
        seq=seq,
    )


def _ddata(seq: int, values: dict[int, float], at_ms: int) -> bytes:
    return spb.payload(
        [spb.metric(alias=a, float_value=v, timestamp=at_ms) for a, v in values.items()],
        timestamp=at_ms,
        seq=seq,
    )


def _ecosystem_messages() -> list[tuple[str, bytes]]:
    """Each format's documented payloads on the topics its devices publish on."""
    return [
        ("zigbee2mqtt/dock/probe_1", fixture("zigbee2mqtt/wsdcgq01lm_docs.json")),
        ("zigbee2mqtt/aqara", fixture("zigbee2mqtt/wsdcgq11lm_exposes.json")),
        ("zigbee2mqtt/aqara", fixture("zigbee2mqtt/wsdcgq11lm_battery_only.json")),
        ("zigbee2mqtt/bridge/state", fixture("zigbee2mqtt/bridge_state.txt")),
        ("tele/freezer/SENSOR", fixture("tasmota/ds18x20_three_probes.json")),
        ("stat/lab/STATUS10", fixture("tasmota/status10_fahrenheit.json")),
        ("shellyhtg3-84fce63bd6a4/events/rpc", fixture("shelly/notify_status_temperature.json")),
        ("shellyhtg3-84fce63bd6a4/events/rpc", fixture("shelly/notify_status_humidity_only.json")),
        ("freezer-node/sensor/probe_1/state", fixture("esphome/state_number.txt")),
        ("freezer-node/sensor/probe_1/state", fixture("esphome/state_nan.txt")),
        (
            "homeassistant/sensor/freezer_temperature/state",
            fixture("homeassistant/state_number.txt"),
        ),
        (
            "homeassistant/sensor/freezer_temperature/state",
            fixture("homeassistant/state_unavailable.txt"),
        ),
        (
            "v3/starter-kit@ttn/devices/eui-70b3d52dd600035a/up",
            fixture("ttn/uplink_starter_kit.json"),
        ),
        ("v3/app1@tenant1/devices/dev1/up", fixture("ttn/uplink_mqtt_docs_no_formatter.json")),
        (f"{CS_TOPIC}/up", fixture("chirpstack/up_event_with_object.json")),
        (f"{CS_TOPIC}/status", fixture("chirpstack/status_event_docs.json")),
        (f"{SP}/NBIRTH/Edge1", spb.nbirth()),
        (
            f"{SP}/DBIRTH/Edge1/Freezer1",
            _dbirth(
                1,
                {"Probe1/Temperature": 1, "Probe2/Temperature": 2, "Humidity": 3},
                {"Probe1/Temperature": -18.5, "Probe2/Temperature": -19.0, "Humidity": 60.0},
            ),
        ),
        (f"{SP}/DDATA/Edge1/Freezer1", _ddata(2, {1: -18.3, 2: -18.9, 3: 61.0}, spb.T_MS + 5000)),
        # Rebirth (7 s later: a birth carries the time it was sent; the same time with
        # another value would be a conflicting duplicate): alias 1 is now the humidity,
        # the probes moved to 5 and 6.
        (f"{SP}/NBIRTH/Edge1", spb.nbirth(seq=0, bd_seq=1, at_ms=spb.T_MS + 7000)),
        (
            f"{SP}/DBIRTH/Edge1/Freezer1",
            _dbirth(
                1,
                {"Humidity": 1, "Probe1/Temperature": 5, "Probe2/Temperature": 6},
                {"Humidity": 59.0, "Probe1/Temperature": -18.0, "Probe2/Temperature": -18.1},
                at_ms=spb.T_MS + 7000,
            ),
        ),
        (f"{SP}/DDATA/Edge1/Freezer1", _ddata(2, {1: 62.0, 5: -17.5, 6: -17.6}, spb.T_MS + 9000)),
    ]


def _utc(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp()) * NS_PER_S


SP_T = spb.T_MS * 1_000_000

# (sensor, temp_c, rh, battery_v, battery_pct, device ts or None) as the journal stores them.
EXPECTED = [
    ("z2m-dock-1", 27.34, 44.72, None, None, None),
    ("z2m-aqara", 22.75, 55.43, 3.0, 97.0, None),
    ("tas-f1", 13.3, None, None, None, _utc("2021-01-02T08:09:44+00:00")),
    ("tas-f2", 1.2, None, None, None, _utc("2021-01-02T08:09:44+00:00")),
    ("tas-f3", 22.5, None, None, None, _utc("2021-01-02T08:09:44+00:00")),
    ("tas-lab-dht", 26.0, 27.0, None, None, _utc("2018-02-07T19:16:19+00:00")),
    ("tas-lab-sht", 23.7778, 18.9, None, None, _utc("2018-02-07T19:16:19+00:00")),
    ("shelly-ht", 4.1, None, None, None, 1631186545040 * 1_000_000),
    ("esp-probe-1", 21.5, None, None, None, None),
    ("ha-freezer", 4.25, None, None, None, None),
    ("ttn-kit", 21.5, None, 3.4, None, _utc("2025-04-16T11:54:13+00:00") + 697237014),
    ("cs-dev", 25.0, 32.0, None, None, _utc("2022-07-18T09:34:15+00:00") + 775023242),
    ("spb-cabinet", 21.25, None, None, None, SP_T),
    ("spb-p1", -18.5, None, None, None, SP_T),
    ("spb-p2", -19.0, None, None, None, SP_T),
    ("spb-p1", -18.3, None, None, None, SP_T + 5000 * 1_000_000),
    ("spb-p2", -18.9, None, None, None, SP_T + 5000 * 1_000_000),
    ("spb-cabinet", 21.25, None, None, None, SP_T + 7000 * 1_000_000),
    ("spb-p1", -18.0, None, None, None, SP_T + 7000 * 1_000_000),
    ("spb-p2", -18.1, None, None, None, SP_T + 7000 * 1_000_000),
    ("spb-p1", -17.5, None, None, None, SP_T + 9000 * 1_000_000),
    ("spb-p2", -17.6, None, None, None, SP_T + 9000 * 1_000_000),
]


def _config(tmp_path: Path, broker: Mosquitto) -> Any:
    sensors = sorted({row[0] for row in EXPECTED})
    return hub_config(
        tmp_path,
        zones=[{"id": "hub", "kind": "cold_storage"}],
        sensors=[{"id": s, "zone": "hub", "interval_s": 3600} for s in sensors],
        drivers={
            "mqtt": [
                {
                    "name": "eco",
                    "host": broker.host,
                    "port": broker.port,
                    "client_id": "gw-test-formats",
                    "subscriptions": SUBSCRIPTIONS,
                    "sensor_ids": SENSOR_IDS,
                }
            ]
        },
    )


async def test_every_format_into_the_journal_with_exact_values(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    messages = _ecosystem_messages()
    async with running_gateway(_config(tmp_path, mosquitto)) as gw:
        await wait_for(lambda: gw.counters.connected.get("eco"), timeout=15, what="subscribed")
        # One at a time, in order: Sparkplug's birth must arrive before its data.
        publisher = Publisher(mosquitto)
        await publisher.publish(messages)
        await wait_for(lambda: gw.counters.committed >= len(EXPECTED), what="every reading")
        await wait_for(
            lambda: sum(gw.counters.dropped.values()) >= 7, what="the counted non-readings"
        )
        rows = [r for _, r in gw.runner.journal.readings_after(0, 1000)]
        dropped = dict(gw.counters.dropped)
        letters = gw.runner.journal.dead_letters(100)
    got = [(r.sensor, r.temp_c, r.rh, r.battery_v, r.battery_pct) for r in rows]
    assert got == [row[:5] for row in EXPECTED]
    for reading, row in zip(rows, EXPECTED, strict=True):
        if row[5] is None:
            assert reading.ts_ns == reading.received_ns  # no device time: receive time, flagged
            assert reading.quality & 32
        else:
            assert reading.ts_ns == row[5]
    assert dropped == {
        "eco:no_temperature": 3,  # z2m battery report, Shelly humidity-only, ChirpStack status
        "eco:ignored": 1,  # zigbee2mqtt/bridge/state
        "eco:no_value": 2,  # ESPHome nan, Home Assistant unavailable
        "eco:missing_field": 1,  # the TTN uplink without a payload formatter
    }
    assert [(d.reason, d.topic) for d in letters] == [
        ("missing_field", "v3/app1@tenant1/devices/dev1/up")
    ]
    assert letters[0].payload == fixture("ttn/uplink_mqtt_docs_no_formatter.json")
