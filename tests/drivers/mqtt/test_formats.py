"""The ecosystem payload formats on their documented payloads (tests/drivers/mqtt/fixtures/).

Each test decodes a fixture through the same TopicRouter the driver uses and checks the
exact samples and rejects; tests/integration/test_mqtt_formats_end_to_end.py sends the
same payloads through a real Mosquitto into the journal.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.mqtt.config import TopicMapping
from drivers.mqtt.formats import FORMATS, Decoded, format_spec
from drivers.mqtt.payload import TopicRouter
from gateway.config import parse_config
from gateway.core.clock import NS_PER_S
from gateway.core.model import RawSample, Reject
from tests.drivers.mqtt import sparkplug_wire as spb
from tests.drivers.mqtt.payload_fixtures import fixture

RX = 1_767_225_600 * NS_PER_S
SOURCE = "mqtt:hub"


def router(*mappings: dict[str, Any], ids: dict[str, str] | None = None) -> TopicRouter:
    return TopicRouter([TopicMapping.model_validate(m) for m in mappings], ids or {}, 16_384)


def decode(r: TopicRouter, topic: str, payload: bytes) -> Decoded:
    return r.decode(topic, payload, RX, SOURCE)


def only_samples(d: Decoded) -> list[RawSample]:
    assert list(d.rejects) == []
    return list(d.samples)


def reasons(d: Decoded) -> list[tuple[str, bool]]:
    return [(r.reason, r.dead_letter) for r in d.rejects]


def utc_ns(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp()) * NS_PER_S


def test_every_registered_format_loads_and_names_itself() -> None:
    for name in FORMATS:
        spec = format_spec(name)
        assert spec.name == name
        assert spec.topic and spec.summary


def test_json_only_fields_are_refused_for_a_named_format() -> None:
    with pytest.raises(ValidationError, match="sensor_path, temp_path belong to format 'json'"):
        TopicMapping(topic="tele/+/SENSOR", format="tasmota", sensor_path="id", temp_path="t")
    with pytest.raises(ValidationError, match="temp_key: format 'json' uses temp_path"):
        TopicMapping(topic="a/#", sensor_path="id", temp_key="t")
    with pytest.raises(ValidationError, match="not a known IANA zone"):
        TopicMapping(topic="tele/+/SENSOR", format="tasmota", time_zone="Mars/Olympus")


# -- tasmota ------------------------------------------------------------------------------


def test_tasmota_three_ds18b20_probes_are_three_readings_in_the_configured_zone() -> None:
    r = router({"topic": "tele/+/SENSOR", "format": "tasmota", "time_zone": "Europe/Berlin"})
    got = only_samples(
        decode(r, "tele/freezer/SENSOR", fixture("tasmota/ds18x20_three_probes.json"))
    )
    # Time 2021-01-02T09:09:44 is Berlin local time (CET, UTC+1).
    ts = utc_ns("2021-01-02T08:09:44+00:00")
    assert [(s.sensor, s.temp_c, s.ts_ns) for s in got] == [
        ("freezer/00000566CC39", 13.3, ts),
        ("freezer/0000059352D4", 1.2, ts),
        ("freezer/000005937C90", 22.5, ts),
    ]


def test_tasmota_naive_time_without_a_zone_is_refused_visibly() -> None:
    r = router({"topic": "tele/+/SENSOR", "format": "tasmota"})
    d = decode(r, "tele/freezer/SENSOR", fixture("tasmota/ds18x20_three_probes.json"))
    assert d.samples == ()
    (dead,) = d.rejects
    assert (dead.reason, dead.dead_letter) == ("bad_timestamp", True)
    assert "set time_zone" in dead.detail
    assert dead.raw == fixture("tasmota/ds18x20_three_probes.json")


def test_tasmota_fahrenheit_status10_is_converted_to_celsius() -> None:
    r = router({"topic": "stat/+/STATUS10", "format": "tasmota", "time_zone": "UTC"})
    got = only_samples(decode(r, "stat/lab/STATUS10", fixture("tasmota/status10_fahrenheit.json")))
    assert [s.sensor for s in got] == ["lab/DHT11", "lab/SHT3X"]
    assert got[0].temp_c == pytest.approx(26.0)  # 78.8 °F
    assert got[1].temp_c == pytest.approx(23.7777778)  # 74.8 °F
    assert [s.rh for s in got] == [27.0, 18.9]
    assert got[0].ts_ns == utc_ns("2018-02-07T20:16:19+00:00")


def test_tasmota_config_unit_never_overrides_the_payload_unit() -> None:
    r = router(
        {"topic": "stat/+/STATUS10", "format": "tasmota", "temp_unit": "C", "time_zone": "UTC"}
    )
    got = only_samples(decode(r, "stat/lab/STATUS10", fixture("tasmota/status10_fahrenheit.json")))
    assert got[0].temp_c == pytest.approx(26.0)


def test_tasmota_single_sensor_with_humidity_and_other_topics() -> None:
    r = router(
        {"topic": "tele/#", "format": "tasmota", "time_zone": "UTC"}, ids={"dock/AM2301": "d1"}
    )
    (s,) = only_samples(decode(r, "tele/dock/SENSOR", fixture("tasmota/am2301.json")))
    assert (s.sensor, s.temp_c, s.rh) == ("d1", 24.6, 58.2)
    assert reasons(decode(r, "tele/dock/STATE", b'{"POWER":"ON"}')) == [("ignored", False)]
    assert reasons(decode(r, "tele/dock/LWT", b"Online")) == [("ignored", False)]


def test_tasmota_null_probe_and_unknown_unit() -> None:
    r = router({"topic": "tele/+/SENSOR", "format": "tasmota", "time_zone": "UTC"})
    body = (
        b'{"Time":"2020-01-26T20:54:10","AM2301-12":{"Temperature":25.1,"Humidity":66.4},'
        b'"AM2301-14":{"Temperature":null,"Humidity":null},"TempUnit":"C"}'
    )
    d = decode(r, "tele/x/SENSOR", body)
    assert [s.sensor for s in d.samples] == ["x/AM2301-12"]
    assert reasons(d) == [("no_value", False)]
    bad = decode(r, "tele/x/SENSOR", b'{"DS18B20":{"Temperature":4.0},"TempUnit":"R"}')
    assert reasons(bad) == [("bad_unit", True)]


# -- zigbee2mqtt --------------------------------------------------------------------------


def test_zigbee2mqtt_documented_state() -> None:
    r = router({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"})
    (s,) = only_samples(
        decode(r, "zigbee2mqtt/dock/probe_1", fixture("zigbee2mqtt/wsdcgq01lm_docs.json"))
    )
    assert (s.sensor, s.temp_c, s.rh, s.ts_ns, s.battery_v, s.battery_pct) == (
        "dock/probe_1",
        27.34,
        44.72,
        None,
        None,
        None,
    )


def test_zigbee2mqtt_battery_is_percent_and_voltage_is_millivolts() -> None:
    r = router({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"})
    (s,) = only_samples(
        decode(r, "zigbee2mqtt/aqara", fixture("zigbee2mqtt/wsdcgq11lm_exposes.json"))
    )
    assert (s.temp_c, s.rh, s.battery_v, s.battery_pct) == (22.75, 55.43, 3.0, 97.0)


def test_zigbee2mqtt_battery_only_and_bridge_messages_are_counted_not_errors() -> None:
    r = router({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"})
    d = decode(r, "zigbee2mqtt/aqara", fixture("zigbee2mqtt/wsdcgq11lm_battery_only.json"))
    assert (d.samples, reasons(d)) == ((), [("no_temperature", False)])
    assert reasons(
        decode(r, "zigbee2mqtt/bridge/state", fixture("zigbee2mqtt/bridge_state.txt"))
    ) == [("ignored", False)]
    assert reasons(decode(r, "zigbee2mqtt/aqara/availability", b'{"state":"online"}')) == [
        ("ignored", False)
    ]


def test_zigbee2mqtt_last_seen_is_the_device_time() -> None:
    r = router({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"})
    body = b'{"temperature":16,"last_seen":"2020-02-26T20:44:09+01:00"}'
    (s,) = only_samples(decode(r, "zigbee2mqtt/x", body))
    assert s.ts_ns == utc_ns("2020-02-26T19:44:09+00:00")
    (e,) = only_samples(decode(r, "zigbee2mqtt/x", b'{"temperature":16,"last_seen":1582746249000}'))
    assert e.ts_ns == 1582746249000 * 1_000_000


# -- shelly -------------------------------------------------------------------------------


def test_shelly_notify_status_temperature() -> None:
    r = router({"topic": "+/events/rpc", "format": "shelly"})
    (s,) = only_samples(
        decode(
            r,
            "shellyhtg3-84fce63bd6a4/events/rpc",
            fixture("shelly/notify_status_temperature.json"),
        )
    )
    assert (s.sensor, s.temp_c, s.ts_ns) == (
        "shellyhtg3-84fce63bd6a4",
        4.1,
        1631186545040 * 1_000_000,
    )


def test_shelly_humidity_only_and_switch_notifications_are_counted() -> None:
    r = router({"topic": "+/events/rpc", "format": "shelly"})
    hum = decode(
        r, "shellyhtg3-84fce63bd6a4/events/rpc", fixture("shelly/notify_status_humidity_only.json")
    )
    assert reasons(hum) == [("no_temperature", False)]
    switch = decode(
        r, "shellypro4pm-f008d1d8b8b8/events/rpc", fixture("shelly/notify_status_switch_docs.json")
    )
    assert reasons(switch) == [("ignored", False)]


def test_shelly_status_topic_and_full_status_with_battery() -> None:
    r = router(
        {"topic": "+/status/+", "format": "shelly"}, {"topic": "+/events/rpc", "format": "shelly"}
    )
    (s,) = only_samples(
        decode(r, "shellyplus1-x/status/temperature:0", fixture("shelly/status_temperature_0.json"))
    )
    assert (s.sensor, s.temp_c, s.ts_ns) == ("shellyplus1-x", -18.5, None)
    full = (
        b'{"src":"shellyplusht-b8d61a8b17cc","method":"NotifyFullStatus","params":{"ts":1680962879.62,'
        b'"devicepower:0":{"id":0,"battery":{"V":5.43,"percent":88}},"humidity:0":{"id":0,"rh":42.2},'
        b'"temperature:0":{"id":0,"tC":19.8,"tF":67.6},"temperature:100":{"id":100,"tC":null}}}'
    )
    d = decode(r, "shellyplusht-b8d61a8b17cc/events/rpc", full)
    (t,) = d.samples
    assert (t.temp_c, t.rh, t.battery_v, t.battery_pct) == (19.8, 42.2, 5.43, 88.0)
    assert reasons(d) == [("no_value", False)]


# -- esphome / homeassistant ----------------------------------------------------------------


def test_esphome_plain_number_and_nan() -> None:
    r = router({"topic": "+/sensor/+/state", "format": "esphome"})
    (s,) = only_samples(
        decode(r, "freezer-node/sensor/probe_1/state", fixture("esphome/state_number.txt"))
    )
    assert (s.sensor, s.temp_c, s.ts_ns) == ("freezer-node/probe_1", 21.5, None)
    nan = decode(r, "freezer-node/sensor/probe_1/state", fixture("esphome/state_nan.txt"))
    assert reasons(nan) == [("no_value", False)]
    assert reasons(decode(r, "freezer-node/sensor/probe_1/state", b"ON")) == [("bad_type", True)]


def test_esphome_fahrenheit_from_config() -> None:
    r = router({"topic": "+/sensor/+/state", "format": "esphome", "temp_unit": "F"})
    (s,) = only_samples(decode(r, "n/sensor/t/state", b"39.2"))
    assert s.temp_c == pytest.approx(4.0)


def test_homeassistant_state_and_no_value_words() -> None:
    r = router({"topic": "homeassistant/sensor/+/state", "format": "homeassistant"})
    (s,) = only_samples(
        decode(
            r,
            "homeassistant/sensor/freezer_temperature/state",
            fixture("homeassistant/state_number.txt"),
        )
    )
    assert (s.sensor, s.temp_c) == ("freezer_temperature", 4.25)
    for name in ("state_unavailable.txt", "state_unknown.txt"):
        d = decode(
            r, "homeassistant/sensor/freezer_temperature/state", fixture(f"homeassistant/{name}")
        )
        assert reasons(d) == [("no_value", False)]


# -- ttn / chirpstack ---------------------------------------------------------------------


def test_ttn_starter_kit_uplink() -> None:
    r = router(
        {
            "topic": "v3/+/devices/+/up",
            "format": "ttn",
            "temp_key": "sensorTemperature",
            "battery_key": "batteryVoltage",
        }
    )
    (s,) = only_samples(
        decode(
            r,
            "v3/starter-kit@ttn/devices/eui-70b3d52dd600035a/up",
            fixture("ttn/uplink_starter_kit.json"),
        )
    )
    assert (s.sensor, s.temp_c, s.battery_v, s.seq) == ("eui-70b3d52dd600035a", 21.5, 3.4, 14)
    assert s.ts_ns == utc_ns("2025-04-16T11:54:13+00:00") + 697237014


def test_ttn_without_temp_key_names_the_candidate_and_without_formatter_is_dead() -> None:
    r = router({"topic": "v3/+/devices/+/up", "format": "ttn"})
    d = decode(
        r,
        "v3/starter-kit@ttn/devices/eui-70b3d52dd600035a/up",
        fixture("ttn/uplink_starter_kit.json"),
    )
    (dead,) = d.rejects
    assert (dead.reason, dead.dead_letter) == ("missing_field", True)
    assert "sensorTemperature present: set temp_key" in dead.detail
    raw = decode(
        r, "v3/app1@tenant1/devices/dev1/up", fixture("ttn/uplink_mqtt_docs_no_formatter.json")
    )
    assert reasons(raw) == [("missing_field", True)]
    every = router({"topic": "v3/#", "format": "ttn"})
    assert reasons(decode(every, "v3/app1@tenant1/devices/dev1/join", b"{}")) == [
        ("ignored", False)
    ]


def test_chirpstack_uplink_with_codec_object() -> None:
    r = router(
        {
            "topic": "application/+/device/+/event/+",
            "format": "chirpstack",
            "temp_key": "temperatureSensor.1",
            "rh_key": "humiditySensor.1",
        }
    )
    topic = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
    (s,) = only_samples(decode(r, topic, fixture("chirpstack/up_event_with_object.json")))
    assert (s.sensor, s.temp_c, s.rh, s.seq) == ("0101010101010101", 25.0, 32.0, None)
    assert s.ts_ns == utc_ns("2022-07-18T09:34:15+00:00") + 775023242
    assert reasons(decode(r, topic, fixture("chirpstack/up_event_docs.json"))) == [
        ("missing_field", True)
    ]
    status = decode(
        r, topic.replace("/up", "/status"), fixture("chirpstack/status_event_docs.json")
    )
    assert reasons(status) == [("no_temperature", False)]


# -- sparkplug b --------------------------------------------------------------------------

SP = "spBv1.0/ColdRoom"


def dbirth(seq: int, aliases: dict[str, int], values: dict[str, float]) -> bytes:
    return spb.payload(
        [
            spb.metric(
                name, alias=alias, datatype=spb.FLOAT, float_value=values[name], timestamp=spb.T_MS
            )
            for name, alias in aliases.items()
        ],
        timestamp=spb.T_MS,
        seq=seq,
    )


def ddata(seq: int, values: dict[int, float], at_ms: int) -> bytes:
    return spb.payload(
        [spb.metric(alias=alias, float_value=v, timestamp=at_ms) for alias, v in values.items()],
        timestamp=at_ms,
        seq=seq,
    )


def test_sparkplug_birth_data_and_rebirth_with_changed_aliases() -> None:
    r = router({"topic": "spBv1.0/#", "format": "sparkplug_b"})
    node = decode(r, f"{SP}/NBIRTH/Edge1", spb.nbirth())
    assert [(s.sensor, s.temp_c) for s in only_samples(node)] == [
        ("ColdRoom/Edge1/Cabinet Temperature", 21.25)
    ]
    birth = decode(
        r,
        f"{SP}/DBIRTH/Edge1/Freezer1",
        dbirth(
            1,
            {"Probe1/Temperature": 1, "Probe2/Temperature": 2, "Humidity": 3},
            {"Probe1/Temperature": -18.5, "Probe2/Temperature": -19.0, "Humidity": 60.0},
        ),
    )
    assert [(s.sensor, s.temp_c) for s in only_samples(birth)] == [
        ("ColdRoom/Edge1/Freezer1/Probe1/Temperature", -18.5),
        ("ColdRoom/Edge1/Freezer1/Probe2/Temperature", -19.0),
    ]
    data = only_samples(
        decode(
            r,
            f"{SP}/DDATA/Edge1/Freezer1",
            ddata(2, {1: -18.3, 2: -18.9, 3: 61.0}, spb.T_MS + 5000),
        )
    )
    assert [(s.sensor, s.temp_c, s.ts_ns) for s in data] == [
        ("ColdRoom/Edge1/Freezer1/Probe1/Temperature", -18.3, (spb.T_MS + 5000) * 1_000_000),
        ("ColdRoom/Edge1/Freezer1/Probe2/Temperature", -18.9, (spb.T_MS + 5000) * 1_000_000),
    ]
    # Rebirth: the edge node restarts; alias 1 is now the humidity.
    only_samples(decode(r, f"{SP}/NBIRTH/Edge1", spb.nbirth(seq=0, bd_seq=1)))
    decode(
        r,
        f"{SP}/DBIRTH/Edge1/Freezer1",
        dbirth(
            1,
            {"Humidity": 1, "Probe1/Temperature": 5, "Probe2/Temperature": 6},
            {"Humidity": 59.0, "Probe1/Temperature": -18.0, "Probe2/Temperature": -18.1},
        ),
    )
    after = decode(
        r, f"{SP}/DDATA/Edge1/Freezer1", ddata(2, {1: 62.0, 5: -17.5, 6: -17.6}, spb.T_MS + 9000)
    )
    assert [(s.sensor, s.temp_c) for s in only_samples(after)] == [
        ("ColdRoom/Edge1/Freezer1/Probe1/Temperature", -17.5),
        ("ColdRoom/Edge1/Freezer1/Probe2/Temperature", -17.6),
    ]


def test_sparkplug_data_before_any_birth_is_an_unknown_alias_dead_letter() -> None:
    r = router({"topic": "spBv1.0/#", "format": "sparkplug_b"})
    body = ddata(7, {1: -18.3}, spb.T_MS)
    d = decode(r, f"{SP}/DDATA/Edge1/Freezer1", body)
    (dead,) = d.rejects
    assert (dead.reason, dead.dead_letter, dead.raw) == ("unknown_alias", True, body)
    # A new connection starts with empty tables: decoders are per connection.
    fresh = router({"topic": "spBv1.0/#", "format": "sparkplug_b"})
    assert fresh.decoders[0] is not r.decoders[0]


def test_sparkplug_seq_gap_is_counted_and_the_data_still_read() -> None:
    r = router({"topic": "spBv1.0/#", "format": "sparkplug_b"})
    decode(r, f"{SP}/NBIRTH/Edge1", spb.nbirth())
    decode(r, f"{SP}/DBIRTH/Edge1/F", dbirth(1, {"Temperature": 1}, {"Temperature": 4.0}))
    d = decode(r, f"{SP}/DDATA/Edge1/F", ddata(5, {1: 4.5}, spb.T_MS))
    assert [s.temp_c for s in d.samples] == [4.5]
    assert reasons(d) == [("seq_gap", False)]
    assert "seq 5 after 1" in d.rejects[0].detail


def test_sparkplug_types_null_and_garbage() -> None:
    r = router({"topic": "spBv1.0/#", "format": "sparkplug_b", "temp_key": "t*"})
    body = spb.payload(
        [
            spb.metric("t_int", datatype=spb.INT16, int_value=-5),
            spb.metric("t_long", datatype=spb.INT64, long_value=-7),
            spb.metric("t_double", datatype=spb.DOUBLE, double_value=3.25),
            spb.metric("t_null", datatype=spb.FLOAT, is_null=True),
            spb.metric("humidity", datatype=spb.FLOAT, float_value=50.0),
        ],
        seq=0,
    )
    d = decode(r, f"{SP}/NBIRTH/E", body)
    assert [(s.sensor, s.temp_c) for s in d.samples] == [
        ("ColdRoom/E/t_int", -5.0),
        ("ColdRoom/E/t_long", -7.0),
        ("ColdRoom/E/t_double", 3.25),
    ]
    assert reasons(d) == [("no_value", False)]
    text = spb.payload([spb.metric("t", datatype=spb.STRING, string_value="cold")], seq=1)
    assert reasons(decode(r, f"{SP}/NDATA/E", text)) == [("bad_type", True)]
    assert reasons(decode(r, f"{SP}/NDATA/E", b"\xff\xff\xff")) == [("not_protobuf", True)]
    assert reasons(decode(r, "spBv1.0/STATE/scada", b'{"online":true}')) == [("ignored", False)]


def test_sparkplug_float32_is_stored_as_its_shortest_decimal() -> None:
    r = router({"topic": "spBv1.0/#", "format": "sparkplug_b"})
    body = spb.payload([spb.metric("Temperature", datatype=spb.FLOAT, float_value=4.1)], seq=0)
    (s,) = only_samples(decode(r, f"{SP}/NBIRTH/E", body))
    assert s.temp_c == 4.1


# -- json (the default) keeps its behaviour, and gains units and zones --------------------


def test_json_units_and_time_zone() -> None:
    r = router(
        {
            "topic": "s/+/t",
            "sensor_topic_segment": 1,
            "temp_path": "t",
            "temp_unit": "F",
            "battery_path": "b",
            "battery_unit": "%",
            "ts_path": "ts",
            "ts_format": "iso8601",
            "time_zone": "Europe/Lisbon",
        }
    )
    (s,) = only_samples(decode(r, "s/n1/t", b'{"t": 39.2, "b": 55, "ts": "2026-07-01T12:00:00"}'))
    assert s.temp_c == pytest.approx(4.0)
    assert (s.battery_v, s.battery_pct) == (None, 55.0)
    assert s.ts_ns == utc_ns("2026-07-01T11:00:00+00:00")  # WEST, UTC+1
    ambiguous = decode(r, "s/n1/t", b'{"t": 39.2, "ts": "2026-10-25T01:30:00"}')
    assert reasons(ambiguous) == [("bad_timestamp", True)]


def test_reject_objects_are_plain_rejects() -> None:
    r = router({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"})
    d = decode(r, "zigbee2mqtt/x", b"not json")
    assert isinstance(d.rejects[0], Reject)
    assert reasons(d) == [("not_json", True)]


# -- the docs pages' config blocks are valid configs --------------------------------------

DOCS = Path(__file__).resolve().parents[3] / "docs" / "mqtt-formats"


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "json"])
def test_each_format_has_a_docs_page_whose_config_block_is_valid(name: str) -> None:
    text = (DOCS / f"{name}.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    if not block.startswith("[[drivers.mqtt]]"):
        block = '[[drivers.mqtt]]\nname = "docs"\n' + block
    doc = tomllib.loads(block)
    sensors = {s for d in doc["drivers"]["mqtt"] for s in d.get("sensor_ids", {}).values()}
    config = parse_config(
        {
            "hub": {"id": "docs"},
            "zones": [{"id": "z", "kind": "cold_storage"}],
            "sensors": [{"id": s, "zone": "z"} for s in sorted(sensors)],
            **doc,
        }
    )
    (driver,) = config.drivers.mqtt
    assert [s.format for s in driver.subscriptions] == [name]


# -- the driver's step (decode_into) gives what decode gives ----------------------------------


def test_decode_into_equals_decode_for_every_format_and_the_json_fast_path() -> None:
    cases = [
        ({"topic": "s/+/t", "sensor_topic_segment": 1, "temp_path": "t"}, "s/n/t", b'{"t": 4}'),
        ({"topic": "s/+/t", "sensor_topic_segment": 1, "temp_path": "t"}, "s/n/t", b"nope"),
        ({"topic": "zigbee2mqtt/#", "format": "zigbee2mqtt"}, "zigbee2mqtt/a",
         fixture("zigbee2mqtt/wsdcgq11lm_exposes.json")),
        ({"topic": "tele/+/SENSOR", "format": "tasmota", "time_zone": "UTC"}, "tele/f/SENSOR",
         fixture("tasmota/ds18x20_three_probes.json")),
        ({"topic": "+/events/rpc", "format": "shelly"}, "x/events/rpc",
         fixture("shelly/notify_status_humidity_only.json")),
    ]  # fmt: skip
    for mapping, topic, payload in cases:
        expected = decode(router(mapping), topic, payload)
        samples: list[RawSample] = []
        rejects: list[Reject] = []
        router(mapping).decode_into(topic, payload, RX, SOURCE, samples, rejects)
        assert (samples, rejects) == (list(expected.samples), list(expected.rejects)), topic
    r = router({"topic": "s/+/t", "sensor_topic_segment": 1, "temp_path": "t"})
    samples, rejects = [], []
    r.decode_into("elsewhere", b"{}", RX, SOURCE, samples, rejects)
    assert [x.reason for x in rejects] == ["no_mapping"]


def test_decode_into_turns_a_raising_decode_one_into_a_decoder_error() -> None:
    r = router({"topic": "s/+/t", "sensor_topic_segment": 1, "temp_path": "t"})

    def broken(topic: str, payload: bytes, received_ns: int, source: str) -> RawSample:
        raise ValueError("bug")

    r._sinks["s/n/t"] = broken
    samples: list[RawSample] = []
    rejects: list[Reject] = []
    r.decode_into("s/n/t", b'{"t": 4}', RX, SOURCE, samples, rejects)
    assert samples == []
    assert [(x.reason, x.raw, x.detail) for x in rejects] == [
        ("decoder_error", b'{"t": 4}', "ValueError: bug")
    ]
