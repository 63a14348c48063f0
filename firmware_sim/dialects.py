"""How each ecosystem publishes a round of readings: topics and payloads per dialect.

The simulator's MQTT nodes speak the gateway's payload formats (drivers/mqtt/formats/):
``json`` (the generic node), ``zigbee2mqtt``, ``tasmota`` (all probes of a round in one
``DS18B20-1..n`` message, optionally ``TempUnit: F``, ``Time`` in local time without
offset), ``shelly`` (Gen2 NotifyStatus), ``esphome`` and ``homeassistant`` (the value as
text), ``ttn``, ``chirpstack`` and ``sparkplug_b`` (births on the first round, then
DDATA by alias, seq per edge node). ``subscription(dialect)`` is the config the gateway
needs to read what the dialect publishes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

DIALECTS: Final = (
    "json",
    "zigbee2mqtt",
    "tasmota",
    "shelly",
    "esphome",
    "homeassistant",
    "ttn",
    "chirpstack",
    "sparkplug_b",
)

TASMOTA_TOPIC: Final = "tasmota-sim"
SPARKPLUG_GROUP: Final = "ColdChainSim"
SPARKPLUG_EDGE: Final = "sim-edge"
CHIRPSTACK_APP: Final = "2e0e3a1f-6b1c-4c4e-9a6e-0c0ffee00001"


@dataclass(frozen=True, slots=True)
class Values:
    """One device's values of one round."""

    temp_c: float
    rh: float
    battery_v: float
    seq: int


@dataclass
class DialectState:
    """What a dialect remembers across rounds (Sparkplug births and seq)."""

    born: bool = False
    edge: str = SPARKPLUG_EDGE  # the Sparkplug edge node id (one per publisher)
    sparkplug_seq: int = 0
    aliases: dict[str, int] = field(default_factory=dict)


def _battery_pct(volts: float) -> int:
    """A coin cell's state of charge, roughly linear 2.7 V .. 3.7 V (what Zigbee reports)."""
    return max(0, min(100, round((volts - 2.7) * 100)))


def device_id(dialect: str, device: str, edge: str = SPARKPLUG_EDGE) -> str:
    """The device id the gateway's format reads for this simulated device."""
    if dialect == "tasmota":
        return f"{TASMOTA_TOPIC}/{device}"
    if dialect == "esphome":
        return f"{device}/temperature"
    if dialect == "chirpstack":
        return _eui(device)
    if dialect == "sparkplug_b":
        return f"{SPARKPLUG_GROUP}/{edge}/{device}/Temperature"
    return device


def _eui(device: str) -> str:
    return (device.encode().hex() + "0" * 16)[:16].upper()


def subscription(dialect: str, *, fahrenheit: bool = False) -> dict[str, Any]:
    """The gateway subscription that reads this dialect as the simulator speaks it."""
    if dialect == "json":
        return {
            "topic": "sensors/+/telemetry",
            "sensor_path": "id",
            "temp_path": "temp_c",
            "ts_path": "ts",
            "ts_format": "epoch_ms",
            "rh_path": "rh",
            "battery_path": "battery_v",
            "seq_path": "seq",
        }
    topics = {
        "zigbee2mqtt": "zigbee2mqtt/#",
        "tasmota": "tele/+/SENSOR",
        "shelly": "+/events/rpc",
        "esphome": "+/sensor/+/state",
        "homeassistant": "homeassistant/sensor/+/state",
        "ttn": "v3/+/devices/+/up",
        "chirpstack": "application/+/device/+/event/+",
        "sparkplug_b": "spBv1.0/#",
    }
    sub: dict[str, Any] = {"topic": topics[dialect], "format": dialect}
    if dialect == "tasmota":
        sub["time_zone"] = "UTC"
    if dialect in ("ttn", "chirpstack"):
        sub["battery_key"] = "batteryVoltage"
    if dialect in ("esphome", "homeassistant") and fahrenheit:
        sub["temp_unit"] = "F"
    return sub


def _f(temp_c: float) -> float:
    return round(temp_c * 9 / 5 + 32, 2)


def round_messages(
    dialect: str,
    values: Mapping[str, Values],
    sim_ms: int,
    state: DialectState,
    *,
    fahrenheit: bool = False,
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every message one round publishes, in publish order."""
    render = _RENDERERS.get(dialect)
    if render is None:
        msg = f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})"
        raise ValueError(msg)
    return render(values, sim_ms, state, fahrenheit)


_Messages = list[tuple[str, bytes]]


def _iso(sim_ms: int) -> datetime:
    return datetime.fromtimestamp(sim_ms / 1000, tz=UTC)


def _json(values: Mapping[str, Values], sim_ms: int, _s: DialectState, _f_: bool) -> _Messages:
    return [
        (
            f"sensors/{d}/telemetry",
            json.dumps(
                {
                    "id": d,
                    "ts": sim_ms,
                    "temp_c": v.temp_c,
                    "rh": v.rh,
                    "battery_v": v.battery_v,
                    "seq": v.seq,
                }
            ).encode(),
        )
        for d, v in values.items()
    ]


def _zigbee2mqtt(values: Mapping[str, Values], _ms: int, _s: DialectState, _f_: bool) -> _Messages:
    return [
        (
            f"zigbee2mqtt/{d}",
            json.dumps(
                {
                    "battery": _battery_pct(v.battery_v),
                    "humidity": v.rh,
                    "linkquality": 120,
                    "temperature": v.temp_c,
                    "voltage": round(v.battery_v * 1000),
                }
            ).encode(),
        )
        for d, v in values.items()
    ]


def _tasmota(
    values: Mapping[str, Values], sim_ms: int, _s: DialectState, fahrenheit: bool
) -> _Messages:
    doc: dict[str, Any] = {"Time": _iso(sim_ms).replace(tzinfo=None).isoformat(timespec="seconds")}
    for i, (d, v) in enumerate(values.items(), start=1):
        doc[f"DS18B20-{i}"] = {"Id": d, "Temperature": _f(v.temp_c) if fahrenheit else v.temp_c}
    doc["TempUnit"] = "F" if fahrenheit else "C"
    return [(f"tele/{TASMOTA_TOPIC}/SENSOR", json.dumps(doc, separators=(",", ":")).encode())]


def _shelly(values: Mapping[str, Values], sim_ms: int, _s: DialectState, _f_: bool) -> _Messages:
    return [
        (
            f"{d}/events/rpc",
            json.dumps(
                {
                    "src": d,
                    "dst": f"{d}/events",
                    "method": "NotifyStatus",
                    "params": {
                        "ts": sim_ms / 1000,
                        "temperature:0": {"id": 0, "tC": v.temp_c, "tF": _f(v.temp_c)},
                        "humidity:0": {"id": 0, "rh": v.rh},
                        "devicepower:0": {
                            "id": 0,
                            "battery": {"V": v.battery_v, "percent": _battery_pct(v.battery_v)},
                        },
                    },
                }
            ).encode(),
        )
        for d, v in values.items()
    ]


def _state_text(v: Values, fahrenheit: bool) -> bytes:
    return f"{_f(v.temp_c) if fahrenheit else v.temp_c:.2f}".encode()


def _esphome(
    values: Mapping[str, Values], _ms: int, _s: DialectState, fahrenheit: bool
) -> _Messages:
    return [
        (f"{d}/sensor/temperature/state", _state_text(v, fahrenheit)) for d, v in values.items()
    ]


def _homeassistant(
    values: Mapping[str, Values], _ms: int, _s: DialectState, fahrenheit: bool
) -> _Messages:
    return [
        (f"homeassistant/sensor/{d}/state", _state_text(v, fahrenheit)) for d, v in values.items()
    ]


def _ttn(values: Mapping[str, Values], sim_ms: int, _s: DialectState, _f_: bool) -> _Messages:
    at = _iso(sim_ms).isoformat().replace("+00:00", "Z")
    return [
        (
            f"v3/coldchain-sim@ttn/devices/{d}/up",
            json.dumps(
                {
                    "end_device_ids": {
                        "device_id": d,
                        "application_ids": {"application_id": "coldchain-sim"},
                    },
                    "received_at": at,
                    "uplink_message": {
                        "f_port": 2,
                        "f_cnt": v.seq,
                        "decoded_payload": {
                            "temperature": v.temp_c,
                            "humidity": v.rh,
                            "batteryVoltage": v.battery_v,
                        },
                        "rx_metadata": [{"gateway_ids": {"gateway_id": "sim-gw"}, "time": at}],
                        "received_at": at,
                    },
                }
            ).encode(),
        )
        for d, v in values.items()
    ]


def _chirpstack(
    values: Mapping[str, Values], sim_ms: int, _s: DialectState, _f_: bool
) -> _Messages:
    at = _iso(sim_ms).isoformat()
    return [
        (
            f"application/{CHIRPSTACK_APP}/device/{_eui(d)}/event/up",
            json.dumps(
                {
                    "time": at,
                    "deviceInfo": {"deviceName": d, "devEui": _eui(d)},
                    "fCnt": v.seq,
                    "fPort": 1,
                    "object": {
                        "temperature": v.temp_c,
                        "humidity": v.rh,
                        "batteryVoltage": v.battery_v,
                    },
                }
            ).encode(),
        )
        for d, v in values.items()
    ]


def _sparkplug(
    values: Mapping[str, Values], sim_ms: int, state: DialectState, _f_: bool
) -> _Messages:
    from drivers.mqtt.formats._sparkplug_pb import DOUBLE, FLOAT, INT64, Payload

    base = f"spBv1.0/{SPARKPLUG_GROUP}"
    out: list[tuple[str, bytes]] = []

    def next_seq() -> int:
        seq = state.sparkplug_seq
        state.sparkplug_seq = (seq + 1) % 256
        return seq

    if not state.born:
        state.sparkplug_seq = 0
        birth = Payload(timestamp=sim_ms, seq=next_seq())
        birth.metrics.add(name="bdSeq", alias=0, datatype=INT64, long_value=0)
        out.append((f"{base}/NBIRTH/{state.edge}", birth.SerializeToString()))
        for i, (d, v) in enumerate(values.items()):
            state.aliases[d] = 10 + 2 * i
            dbirth = Payload(timestamp=sim_ms, seq=next_seq())
            dbirth.metrics.add(
                name="Temperature",
                alias=state.aliases[d],
                datatype=FLOAT,
                float_value=v.temp_c,
                timestamp=sim_ms,
            )
            dbirth.metrics.add(
                name="Humidity",
                alias=state.aliases[d] + 1,
                datatype=DOUBLE,
                double_value=v.rh,
                timestamp=sim_ms,
            )
            out.append((f"{base}/DBIRTH/{state.edge}/{d}", dbirth.SerializeToString()))
        state.born = True
        return out
    for d, v in values.items():
        data = Payload(timestamp=sim_ms, seq=next_seq())
        data.metrics.add(alias=state.aliases[d], float_value=v.temp_c, timestamp=sim_ms)
        data.metrics.add(alias=state.aliases[d] + 1, double_value=v.rh, timestamp=sim_ms)
        out.append((f"{base}/DDATA/{state.edge}/{d}", data.SerializeToString()))
    return out


_RENDERERS: Final[
    dict[str, Callable[[Mapping[str, Values], int, DialectState, bool], _Messages]]
] = {
    "json": _json,
    "zigbee2mqtt": _zigbee2mqtt,
    "tasmota": _tasmota,
    "shelly": _shelly,
    "esphome": _esphome,
    "homeassistant": _homeassistant,
    "ttn": _ttn,
    "chirpstack": _chirpstack,
    "sparkplug_b": _sparkplug,
}
