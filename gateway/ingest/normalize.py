"""Raw samples to readings: sensor identity, calibration and quality flags.

A reading's sensor is known from where it arrived, never only from what a payload claims
(DESIGN): each sample carries the ``source`` its driver block set (``mqtt:nodes``,
``serial:board-a``), and a sensor is accepted only from the driver blocks that list it in
their :meth:`~drivers.base.DriverConfig.sensor_refs`. A serial probe's id arriving over
MQTT, or a node reporting for a sensor its block does not name, is refused
``identity_mismatch`` (dead-lettered with the sample, counted, and alerted by
:class:`gateway.ingest.identity.IdentityWatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.config import GatewayConfig, SensorConfig
from gateway.core.model import Quality, RawSample, Reading, Reject
from gateway.sop.spikes import SpikeCheck

UNKNOWN_SENSOR = "unknown_sensor"
IDENTITY_MISMATCH = "identity_mismatch"

DS18B20_SENTINELS = (85.0, -127.0)
_SENTINEL_MODELS = {"ds18b20", "generic"}


@dataclass(slots=True)
class Normalized:
    """The outcome of normalising one delivery."""

    readings: list[Reading] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class Normalizer:
    """Maps samples to configured sensors, applies calibration and sets quality flags."""

    def __init__(self, config: GatewayConfig) -> None:
        self._sensors: dict[str, SensorConfig] = config.sensor_index()
        self._skew_ns = int(config.clock_skew_bound_s * 1e9)
        # The rate-of-change check runs here so SPIKE is in the journal (issue 13).
        self.spikes = SpikeCheck(config.health)
        # Last receive-time timestamp per sensor without a device clock (see normalize).
        self._last_rx_ts: dict[str, int] = {}
        self._feeds: dict[str, frozenset[str]] = sensor_sources(config)
        self._owners: dict[str, list[str]] = {}
        for source, sensors in self._feeds.items():
            for sensor in sensors:
                self._owners.setdefault(sensor, []).append(source)

    def normalize(self, samples: Sequence[RawSample]) -> Normalized:
        """Turn samples into readings; unknown sensors become dead-lettered rejects."""
        out = Normalized()
        sensors = self._sensors
        skew = self._skew_ns
        for s in samples:
            cfg = sensors.get(s.sensor)
            if cfg is None:
                out.rejects.append(
                    Reject(
                        reason=UNKNOWN_SENSOR,
                        source=s.source,
                        raw=repr(s).encode(),
                        detail=f"sensor {s.sensor!r} is not in [[sensors]]",
                        dead_letter=True,
                    )
                )
                continue
            # A driver may qualify its source (modbus:bus1:3 for slave 3); the block is the
            # first two parts, driver kind and block name (names have no colons).
            feeds = self._feeds.get(s.source) or self._feeds.get(_block_of(s.source))
            if feeds is None or s.sensor not in feeds:
                out.rejects.append(self._mismatch(s))
                continue
            quality = 0
            raw_temp = s.temp_c
            if cfg.model in _SENTINEL_MODELS and raw_temp in DS18B20_SENTINELS:
                quality |= Quality.SENTINEL
            temp = raw_temp + cfg.offset_c
            if not cfg.min_valid_c <= raw_temp <= cfg.max_valid_c:
                quality |= Quality.IMPOSSIBLE
            if s.ts_ns is None:
                # Without a device time the reading is stamped with its receive time, which
                # a driver takes once per batch: a backlog of one sensor (queued in the
                # broker during an outage) would share one timestamp, and InfluxDB keeps one
                # point per series and time. One nanosecond apart, in arrival order, each
                # reading stays its own point.
                ts = s.received_ns
                last = self._last_rx_ts.get(s.sensor)
                if last is not None and ts <= last:
                    ts = last + 1
                self._last_rx_ts[s.sensor] = ts
                quality |= Quality.NO_DEVICE_TIME
            else:
                ts = s.ts_ns
                if abs(ts - s.received_ns) > skew:
                    quality |= Quality.CLOCK_SKEW
            if not quality & (Quality.SENTINEL | Quality.IMPOSSIBLE) and self.spikes.flag(
                s.sensor, cfg.model, ts, round(temp, 4)
            ):
                quality |= Quality.SPIKE
            out.readings.append(
                Reading(
                    sensor=s.sensor,
                    ts_ns=ts,
                    received_ns=s.received_ns,
                    temp_c=round(temp, 4),
                    source=s.source,
                    zone=cfg.zone,
                    rh=s.rh,
                    battery_v=s.battery_v,
                    battery_pct=s.battery_pct,
                    quality=int(quality),
                    seq=s.seq,
                )
            )
        return out

    def _mismatch(self, s: RawSample) -> Reject:
        owners = [o for o in self._owners.get(s.sensor, []) if o != _block_of(s.source)]
        belongs = f"it is listed by {', '.join(owners)}" if owners else "no driver lists it"
        return Reject(
            reason=IDENTITY_MISMATCH,
            source=s.source,
            raw=repr(s).encode(),
            detail=f"sensor {s.sensor!r} arrived from {s.source}, which does not list it;"
            f" {belongs}",
            dead_letter=True,
        )


def _block_of(source: str) -> str:
    return ":".join(source.split(":", 2)[:2])


def sensor_sources(config: GatewayConfig) -> dict[str, frozenset[str]]:
    """Driver source label (``<driver>:<name>``) -> the sensors that block may report."""
    return {
        f"{kind}:{block.name}": frozenset(sensor for _, sensor in block.sensor_refs())
        for kind, _, block in config.drivers.blocks()
    }
