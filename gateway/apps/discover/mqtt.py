"""``coldchain discover --mqtt HOST[:PORT]``: listen on a broker, guess each topic's format.

For a pop-up site: subscribe to ``#`` (and ``$``-free topics only) for ``--seconds``,
then, for every topic that carried a message, try the payload formats
(drivers/mqtt/formats/) in order of how specific their topic layout is, and keep the
first that reads a temperature from it. The output lists each topic with its format and
the values the gateway would store, then a config snippet (a ``[[drivers.mqtt]]``
block with one subscription per format, ``sensor_ids`` for every device and one
``[[sensors]]`` per reading) that ``coldchain check-config`` accepts as it is, together
with a ``[hub]`` and the ``--zone`` it names.

It only listens (QoS 0, clean session, a client id of its own): it takes nothing from
the gateway's persistent session. Guesses are guesses: the snippet marks what must be
checked (a device-local time zone, a unit the payload does not carry).
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from drivers.mqtt.config import TopicMapping
from drivers.mqtt.formats import format_spec
from drivers.mqtt.topics import filter_matches, filters_overlap
from gateway.core.model import RawSample

# Formats in the order they are tried: the most specific topic layouts first, the
# generic JSON guess last.
ORDER = (
    "sparkplug_b",
    "ttn",
    "chirpstack",
    "zigbee2mqtt",
    "tasmota",
    "shelly",
    "homeassistant",
    "esphome",
)
# Topic filters each format is tried on (the format's own layouts).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "sparkplug_b": ("spBv1.0/#",),
    "ttn": ("v3/+/devices/+/up",),
    "chirpstack": ("application/+/device/+/event/up",),
    "zigbee2mqtt": ("zigbee2mqtt/#",),
    "tasmota": ("tele/+/SENSOR", "stat/+/STATUS10"),
    "shelly": ("+/events/rpc", "+/status/+"),
    "homeassistant": ("homeassistant/sensor/+/state",),
    "esphome": ("+/sensor/+/state",),
}
_TEMP_KEY = re.compile(r"temp", re.IGNORECASE)
_NOT_ID = re.compile(r"[^A-Za-z0-9_.:-]+")
MAX_TOPICS = 2000  # a busy broker: the first ones are enough to set a site up


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The MQTT-discovery options of ``coldchain discover``."""
    p.add_argument(
        "--mqtt",
        metavar="HOST[:PORT]",
        nargs="?",
        const="127.0.0.1:1883",
        help="listen on this broker and guess each topic's payload format (default port 1883)",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="how long to listen")
    p.add_argument("--username", help="MQTT user name, if the broker wants one")
    p.add_argument("--password-env", help="environment variable holding the MQTT password")
    p.add_argument(
        "--time-zone",
        default="UTC",
        help="IANA zone of devices that send local times without offset (Tasmota's Time)",
    )


@dataclass
class Found:
    """One topic: what it carried and how the gateway would read it."""

    topic: str
    payloads: list[bytes] = field(default_factory=list)
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    samples: list[RawSample] = field(default_factory=list)
    note: str = ""


def discover(args: argparse.Namespace, out: TextIO) -> int:
    """Listen, guess, print; 0 when the broker could be reached."""
    host, _, port_text = str(args.mqtt).partition(":")
    try:
        port = int(port_text or 1883)
    except ValueError:
        print(f"discover: bad port in {args.mqtt!r}", file=sys.stderr)
        return 2
    try:
        messages = listen(host, port, args.seconds, args.username, _password(args))
    except OSError as exc:
        print(f"discover: cannot reach the broker {host}:{port}: {exc}", file=sys.stderr)
        return 1
    found = guess_all(messages, args.time_zone)
    report(found, host, port, args.zone, args.seconds, out)
    return 0


def _password(args: argparse.Namespace) -> str | None:
    import os

    return os.environ.get(args.password_env) if args.password_env else None


def listen(
    host: str, port: int, seconds: float, username: str | None = None, password: str | None = None
) -> dict[str, list[bytes]]:
    """Every topic that carried a message within ``seconds``, with its payloads (max 5)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"coldchain-discover-{uuid.uuid4().hex[:8]}"
    )
    if username:
        client.username_pw_set(username, password)

    def on_connect(c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        c.subscribe("#", qos=0)

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        with lock:
            payloads = got.get(message.topic)
            if payloads is None:
                if len(got) >= MAX_TOPICS:
                    return
                payloads = got[message.topic] = []
            if len(payloads) < 5:
                payloads.append(bytes(message.payload))

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        time.sleep(seconds)  # a CLI listening for wall-clock seconds: the user's request
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return {topic: list(p) for topic, p in sorted(got.items())}


def guess_all(messages: dict[str, list[bytes]], time_zone: str) -> list[Found]:
    """Every topic's guess; Sparkplug B topics are read together, births first.

    Sparkplug data names its metrics by aliases that only the birth certificates define,
    so its topics go through one decoder in the order a host application needs them.
    """
    sparkplug = {t: p for t, p in messages.items() if t.startswith("spBv1.0/")}
    found = {t: guess(t, p, time_zone) for t, p in messages.items() if t not in sparkplug}
    if sparkplug:
        mapping = TopicMapping(topic="spBv1.0/#", format="sparkplug_b")
        decoder = format_spec("sparkplug_b").create(mapping, {}, 16_384)
        for topic in sorted(sparkplug, key=_births_first):
            item = Found(topic, sparkplug[topic])
            for payload in sparkplug[topic]:
                item.samples += decoder.decode(topic, payload, 0, "discover").samples
            if item.samples:
                item.format = "sparkplug_b"
            elif "DATA/" in topic:
                item.note = "Sparkplug data without a birth seen: ask the edge node to rebirth"
            found[topic] = item
    return [found[t] for t in sorted(found)]


def _births_first(topic: str) -> tuple[int, str]:
    levels = topic.split("/")
    kind = levels[2] if len(levels) > 2 else ""
    return {"NBIRTH": 0, "DBIRTH": 1}.get(kind, 2), topic


def guess(topic: str, payloads: list[bytes], time_zone: str) -> Found:
    """The first format that reads a temperature from the topic's payloads."""
    found = Found(topic, payloads)
    for name in ORDER:
        if not any(filter_matches(f.split("/"), topic) for f in LAYOUTS[name]):
            continue
        for options in _option_sets(name, payloads, time_zone):
            samples = _decode_all(name, topic, payloads, options)
            if samples:
                found.format, found.options, found.samples = name, options, samples
                found.note = _note(name, options)
                return found
    samples, options = _json_guess(topic, payloads)
    if samples:
        found.format, found.options, found.samples = "json", options, samples
        found.note = "generic JSON: check temp_path and the timestamp"
    return found


def _option_sets(name: str, payloads: list[bytes], time_zone: str) -> list[dict[str, Any]]:
    """The subscription options worth trying for a format on these payloads."""
    base: dict[str, Any] = {}
    if name == "tasmota":
        base["time_zone"] = time_zone
    sets = [base]
    if name in ("ttn", "chirpstack"):
        for key in _temperature_keys(name, payloads):
            sets.append({**base, "temp_key": key})
    return sets


def _temperature_keys(name: str, payloads: list[bytes]) -> list[str]:
    import json

    keys: list[str] = []
    for raw in payloads:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if type(doc) is not dict:
            continue
        decoded = (
            doc.get("uplink_message", {}).get("decoded_payload")
            if name == "ttn" and type(doc.get("uplink_message")) is dict
            else doc.get("object")
        )
        keys += _number_paths(decoded, "")
    return sorted({k for k in keys if _TEMP_KEY.search(k)})


def _number_paths(value: object, prefix: str) -> list[str]:
    if type(value) is dict:
        paths: list[str] = []
        for key, inner in value.items():
            paths += _number_paths(inner, f"{prefix}{key}.")
        return paths
    if type(value) in (int, float):
        return [prefix.rstrip(".")]
    return []


def _decode_all(
    name: str, topic: str, payloads: list[bytes], options: dict[str, Any]
) -> list[RawSample]:
    mapping = TopicMapping.model_validate({"topic": topic, "format": name, **options})
    decoder = format_spec(name).create(mapping, {}, 16_384)
    samples: list[RawSample] = []
    for payload in payloads:
        samples.extend(decoder.decode(topic, payload, 0, "discover").samples)
    return samples


def _json_guess(topic: str, payloads: list[bytes]) -> tuple[list[RawSample], dict[str, Any]]:
    """Generic JSON: a number field named like a temperature, the device from the topic."""
    import json

    for raw in payloads:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if type(doc) is not dict:
            continue
        candidates = [p for p in _number_paths(doc, "") if _TEMP_KEY.search(p)]
        if not candidates:
            continue
        levels = topic.split("/")
        options: dict[str, Any] = {
            "temp_path": candidates[0],
            "sensor_topic_segment": max(0, len(levels) - 2) if len(levels) > 1 else 0,
        }
        if "id" in doc and type(doc["id"]) in (str, int):
            options.pop("sensor_topic_segment")
            options["sensor_path"] = "id"
        mapping = TopicMapping.model_validate({"topic": topic, **options})
        decoder = format_spec("json").create(mapping, {}, 16_384)
        samples = [s for p in payloads for s in decoder.decode(topic, p, 0, "discover").samples]
        if samples:
            return samples, options
    return [], {}


def _note(name: str, options: dict[str, Any]) -> str:
    if name == "tasmota":
        return f"Time is the device's local time: read in {options['time_zone']} (check it)"
    if name in ("esphome", "homeassistant"):
        return "the state topic carries no unit: °C assumed (set temp_unit if not)"
    if "temp_key" in options:
        return f"temperature from {options['temp_key']} (guessed from its name)"
    return ""


# -- the report ---------------------------------------------------------------------------


def sensor_id(device: str) -> str:
    """A valid [[sensors]] id for a device id (``ColdRoom/Edge1/P1`` -> ``ColdRoom-Edge1-P1``)."""
    cleaned = _NOT_ID.sub("-", device).strip("-_.:") or "sensor"
    return cleaned[:64]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _filters(readable: list[Found]) -> list[tuple[str, str, dict[str, Any]]]:
    """(filter, format, options): each format's own layout, exact topics where they overlap.

    A wildcard filter that overlaps another subscription's filter would shadow it (the
    first match wins, and check-config warns), so it is replaced by the exact topics it
    was seen on; generic JSON guesses are per topic anyway.
    """
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[str]] = {}
    for f in readable:
        assert f.format is not None
        groups.setdefault((f.format, tuple(sorted(f.options.items()))), []).append(f.topic)
    subs: list[tuple[str, str, dict[str, Any], list[str]]] = []  # filter, format, options, topics
    for (name, opts), topics in groups.items():
        layouts = [] if name == "json" else LAYOUTS[name]
        covered: set[str] = set()
        for layout in layouts:
            mine = [t for t in topics if filter_matches(layout.split("/"), t) and t not in covered]
            if mine:
                subs.append((layout, name, dict(opts), mine))
                covered.update(mine)
        subs += [(t, name, dict(opts), [t]) for t in topics if t not in covered]
    changed = True
    while changed:
        changed = False
        for i, (flt, name, options, topics) in enumerate(subs):
            if "+" not in flt and "#" not in flt:
                continue
            if any(filters_overlap(flt, other[0]) for j, other in enumerate(subs) if j != i):
                subs[i : i + 1] = [(t, name, options, [t]) for t in topics]
                changed = True
                break
    return [(flt, name, options) for flt, name, options, _ in subs]


def report(
    found: Iterable[Found],
    host: str,
    port: int,
    zone: str,
    seconds: float,
    out: TextIO,
) -> None:
    """The topic list, then the config snippet."""
    found = list(found)
    readable = [f for f in found if f.format is not None]
    print(f"# MQTT broker {host}:{port}: {len(found)} topic(s) in {seconds:g} s", file=out)
    for f in found:
        if f.format is None:
            why = f.note or "not a sensor topic, or an unknown layout"
            print(f"#   {f.topic}  (no temperature read: {why})", file=out)
            continue
        values = ", ".join(
            f"{s.sensor} {s.temp_c:g} °C"
            + (f" rh {s.rh:g}" if s.rh is not None else "")
            + (f" battery {s.battery_v:g} V" if s.battery_v is not None else "")
            + (f" battery {s.battery_pct:g} %" if s.battery_pct is not None else "")
            for s in _last_per_sensor(f.samples)
        )
        print(f"#   {f.topic}  [{f.format}]  {values}", file=out)
        if f.note:
            print(f"#       {f.note}", file=out)
    print(file=out)
    if not readable:
        print("# nothing to configure: no topic carried a temperature", file=out)
        return
    devices = sorted({s.sensor for f in readable for s in f.samples})
    print("[[drivers.mqtt]]", file=out)
    print('name = "discovered"', file=out)
    print(f"host = {_toml(host)}", file=out)
    print(f"port = {port}", file=out)
    print('client_id = "coldchain-discovered"  # keep stable and unique per hub', file=out)
    # The block's allow-list: a reading for a sensor it does not name is refused
    # identity_mismatch (docs/security.md); mapped devices are named by sensor_ids below.
    as_is = [device for device in devices if sensor_id(device) == device]
    print(f"sensors = [{', '.join(_toml(d) for d in as_is)}]", file=out)
    for topic, name, options in _filters(readable):
        print("[[drivers.mqtt.subscriptions]]", file=out)
        print(f"topic = {_toml(topic)}", file=out)
        if name != "json":
            print(f"format = {_toml(name)}", file=out)
        for key, value in options.items():
            print(f"{key} = {_toml(value)}", file=out)
    print(
        "[drivers.mqtt.sensor_ids]  # device id -> sensor id (ids that are valid as is: none)",
        file=out,
    )
    for device in devices:
        if sensor_id(device) != device:
            print(f"{_toml(device)} = {_toml(sensor_id(device))}", file=out)
    print(file=out)
    for device in devices:
        print(f"[[sensors]]\nid = {_toml(sensor_id(device))}\nzone = {_toml(zone)}\n", file=out)


def _last_per_sensor(samples: list[RawSample]) -> list[RawSample]:
    last: dict[str, RawSample] = {}
    for s in samples:
        last[s.sensor] = s
    return list(last.values())
