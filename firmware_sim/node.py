"""MQTT sensor-node simulator (paho-mqtt 2.x).

Each simulated device publishes JSON to ``sensors/<device>/telemetry`` at QoS 1::

    {"id": "<device>", "ts": <epoch_ms>, "temp_c": 4.1, "rh": 82.0, "battery_v": 3.58, "seq": 7}

With ``malformed_rate`` > 0 some messages are replaced by one of: not JSON, JSON
without ``temp_c``, or ``temp_c`` as a string. Counts are kept per device.

With ``dialect`` set the nodes speak an ecosystem's format instead (Zigbee2MQTT,
Tasmota, Shelly, ESPHome, Home Assistant, TTN, ChirpStack, Sparkplug B: see
firmware_sim/dialects.py); ``malformed_rate`` applies to the generic JSON dialect only.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.dialects import DIALECTS, DialectState, Values, round_messages
from firmware_sim.thermal import ColdRoom, Probe
from gateway.core.clock import Clock, SystemClock

MALFORMED_KINDS = ("not_json", "missing_temp", "temp_string")


def telemetry_topic(device: str) -> str:
    """The topic a device publishes its readings to."""
    return f"sensors/{device}/telemetry"


class SensorNodeSim:
    """A fleet of simulated MQTT sensor nodes sharing one client connection."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[str] | int = 3,
        *,
        probes: Mapping[str, Probe] | None = None,
        interval_s: float = 10.0,
        speed: float = 1.0,
        malformed_rate: float = 0.0,
        start_ms: int | None = None,
        client_id: str = "coldchain-node-sim",
        qos: int = 1,
        clock: Clock | None = None,
        seed: int = 0,
        dialect: str = "json",
        fahrenheit: bool = False,
    ) -> None:
        if dialect not in DIALECTS:
            msg = f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})"
            raise ValueError(msg)
        self.dialect = dialect
        self.fahrenheit = fahrenheit
        self._dialect_state = DialectState()
        names = (
            [f"node-{i}" for i in range(1, devices + 1)]
            if isinstance(devices, int)
            else list(devices)
        )
        room = ColdRoom(seed=seed)
        self.probes: dict[str, Probe] = (
            dict(probes)
            if probes is not None
            else {
                name: Probe(room, seed=seed * 1000 + i, resolution_c=0.01)
                for i, name in enumerate(names)
            }
        )
        self.devices = list(self.probes)
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.speed = speed
        self.malformed_rate = malformed_rate
        self.qos = qos
        self.sim_ms = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._clock: Clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._zones = list({id(p.zone): p.zone for p in self.probes.values()}.values())
        self._seq: dict[str, int] = dict.fromkeys(self.devices, 0)
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._early_acks: set[int] = set()
        self._mid_device: dict[int, str] = {}
        self.sent: Counter[str] = Counter()  # well-formed readings published, per device
        self.malformed: Counter[str] = Counter()  # malformed payloads published, per device
        self.acked: Counter[str] = Counter()  # PUBACKs received (both kinds), per device
        self.published: list[tuple[str, float]] = []  # (device, temp_c) well formed
        self._connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id
        )
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.qos == 0:
            return
        with self._lock:
            device = self._mid_device.pop(mid, None)
            if device is None:  # PUBACK beat publish() back to the publishing thread
                self._early_acks.add(mid)
            else:
                self._pending.discard(mid)
                self.acked[device] += 1

    def connect(self, timeout_s: float = 5.0) -> None:
        """Connect and start paho's network thread; TimeoutError if the broker never answers."""
        self._client.connect(self.host, self.port)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            msg = f"no CONNACK from {self.host}:{self.port} within {timeout_s} s"
            raise TimeoutError(msg)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> SensorNodeSim:
        """Connect on entering the context."""
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on leaving the context."""
        self.close()

    @property
    def pending(self) -> int:
        """QoS 1 publishes still waiting for their PUBACK."""
        with self._lock:
            return len(self._pending)

    def payload(self, device: str) -> tuple[bytes, bool]:
        """The next payload of ``device`` and whether it is well formed (advances its seq)."""
        self._seq[device] += 1
        reading: dict[str, Any] = {
            "id": device,
            "ts": self.sim_ms,
            "temp_c": round(self.probes[device].read_c(), 2),
            "rh": round(self._rng.uniform(75.0, 90.0), 1),
            "battery_v": round(self._rng.uniform(3.4, 3.7), 2),
            "seq": self._seq[device],
        }
        if self.malformed_rate and self._rng.random() < self.malformed_rate:
            kind = self._rng.choice(MALFORMED_KINDS)
            if kind == "not_json":
                return b"\x00not json {" + device.encode(), False
            if kind == "missing_temp":
                del reading["temp_c"]
            else:
                reading["temp_c"] = str(reading["temp_c"])
            return json.dumps(reading).encode(), False
        self.published.append((device, reading["temp_c"]))
        return json.dumps(reading).encode(), True

    def publish_round(self) -> int:
        """Advance simulated time one interval and publish one message per device."""
        self.sim_ms += round(self.interval_s * 1000)
        for zone in self._zones:
            zone.step(self.interval_s)
        if self.dialect != "json":
            return self._publish_dialect_round()
        for device in self.devices:
            body, good = self.payload(device)
            # Never hold our lock across publish(): paho calls on_publish under its own
            # lock, and publish() takes that lock too.
            info = self._client.publish(telemetry_topic(device), body, qos=self.qos)
            if self.qos > 0:
                with self._lock:
                    if info.mid in self._early_acks:
                        self._early_acks.discard(info.mid)
                        self.acked[device] += 1
                    else:
                        self._pending.add(info.mid)
                        self._mid_device[info.mid] = device
            (self.sent if good else self.malformed)[device] += 1
        return len(self.devices)

    def _publish_dialect_round(self) -> int:
        values: dict[str, Values] = {}
        for device in self.devices:
            self._seq[device] += 1
            values[device] = Values(
                temp_c=round(self.probes[device].read_c(), 2),
                rh=round(self._rng.uniform(75.0, 90.0), 1),
                battery_v=round(self._rng.uniform(3.4, 3.7), 2),
                seq=self._seq[device],
            )
        messages = round_messages(
            self.dialect, values, self.sim_ms, self._dialect_state, fahrenheit=self.fahrenheit
        )
        for topic, body in messages:
            device = next((d for d in self.devices if d in topic), self.devices[0])
            info = self._client.publish(topic, body, qos=self.qos)
            if self.qos > 0:
                with self._lock:
                    if info.mid in self._early_acks:
                        self._early_acks.discard(info.mid)
                        self.acked[device] += 1
                    else:
                        self._pending.add(info.mid)
                        self._mid_device[info.mid] = device
        for device, v in values.items():
            self.sent[device] += 1
            self.published.append((device, v.temp_c))
        return len(self.devices)

    async def run(self, rounds: int | None = None) -> None:
        """Publish a round every ``interval_s / speed`` seconds, forever or ``rounds`` times."""
        done = 0
        while rounds is None or done < rounds:
            self.publish_round()
            done += 1
            await self._clock.sleep(self.interval_s / self.speed)
