"""Sensor health: stale, faulted, spiking, frozen and low-battery sensors, checksum rates.

Pure logic, no I/O. Rules on readings run on event time (``ts_ns``); staleness and data
gaps run on the ``now_ns`` the caller passes to :meth:`SensorHealth.check`, so tests and
the simulator drive time. Every ``(rule, subject)`` is raised at most once until it is
cleared, so the caller can map events straight to an alert store that keeps one active
alert per rule and subject. The rules, their defaults and the reasons for them are in
``docs/sensor-health.md``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config import SensorConfig
from gateway.core.clock import NS_PER_S
from gateway.core.model import Quality, Reading
from gateway.sop.settings import GapMode, HealthSettings
from gateway.sop.spikes import spike_limit, spike_rate

Rule = Literal[
    "sensor_stale",
    "sensor_fault",
    "sensor_spike",
    "sensor_frozen",
    "battery_low",
    "checksum_rate",
    "data_gap",
    "journal_budget",
    "sink_down",
    "journal_unwritable",
    "journal_damaged",
    "identity_mismatch",
    "conflicting_duplicate",
    "session_takeover",
]
EventKindName = Literal["raised", "cleared"]
SeverityName = Literal["warning", "critical"]

# Reject reasons that mean "damaged on the wire": a serial line's checksum, a Modbus
# frame's or a 1-Wire scratchpad's CRC.
CHECKSUM_REASONS = frozenset({"checksum", "crc"})
_FAULT_FLAGS = Quality.SENTINEL | Quality.IMPOSSIBLE
_NS_PER_MIN = 60 * NS_PER_S
# Float slack so that a battery at exactly threshold + margin clears (3.3 + 0.1 != 3.4).
_EPS = 1e-9


@dataclass(slots=True)
class HealthEvent:
    """A health rule raised or cleared for a sensor, a driver or a zone."""

    kind: EventKindName
    rule: Rule
    subject: str
    at_ns: int
    value: float | None
    limit: float | None
    message: str
    severity: SeverityName = "warning"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _SensorState:
    last_rx_ns: int | None = None
    last_ts_ns: int | None = None  # newest event time seen (late readings are skipped)
    last_usable: tuple[int, float] | None = None  # (ts_ns, temp_c) of the last non-fault
    good_streak: int = 0
    last_spike_ns: int | None = None
    run_value: float | None = None
    run_count: int = 0
    run_start_ns: int = 0


@dataclass(slots=True)
class _Snapshot:
    good: int
    bad: int

    @property
    def total(self) -> int:
        return self.good + self.bad


def checksum_rejects(dropped: Mapping[str, int]) -> dict[str, int]:
    """Per-driver checksum/CRC rejects from ``Counters.dropped`` (keys ``driver:reason``)."""
    out: dict[str, int] = {}
    for key, n in dropped.items():
        driver, _, reason = key.rpartition(":")
        if reason in CHECKSUM_REASONS and driver:
            out[driver] = out.get(driver, 0) + n
    return out


class SensorHealth:
    """Evaluates the sensor-health rules and emits raise/clear events, once per condition."""

    def __init__(
        self,
        sensors: Sequence[SensorConfig],
        settings: HealthSettings | None = None,
        *,
        started_ns: int | None = None,
    ) -> None:
        self._settings = settings if settings is not None else HealthSettings()
        self._sensors: dict[str, SensorConfig] = {s.id: s for s in sensors}
        self._state: dict[str, _SensorState] = {s.id: _SensorState() for s in sensors}
        self._zones: dict[str, list[str]] = {}
        for s in sensors:
            self._zones.setdefault(s.zone, []).append(s.id)
        # Never-seen sensors go stale counted from here; None = the first check().
        self._started_ns = started_ns
        self._last_now_ns: int | None = None
        self._active: set[tuple[Rule, str]] = set()
        self._checksums: dict[str, deque[_Snapshot]] = {}

    @property
    def settings(self) -> HealthSettings:
        """The thresholds in use."""
        return self._settings

    def active(self) -> set[tuple[Rule, str]]:
        """The (rule, subject) pairs currently raised."""
        return set(self._active)

    def restore(self, active: Iterable[tuple[Rule, str]]) -> None:
        """Mark conditions as raised (from the alert store after a restart) so they clear."""
        self._active.update(active)

    def last_seen(self, sensor: str) -> tuple[int | None, tuple[int, float] | None]:
        """(arrival ns of its last reading, (ts ns, °C) of its last usable one), for status."""
        state = self._state.get(sensor)
        return (None, None) if state is None else (state.last_rx_ns, state.last_usable)

    def is_stale(self, sensor: str) -> bool:
        """True while the sensor's stale condition is raised."""
        return ("sensor_stale", sensor) in self._active

    def stale_limit_ns(self, sensor: str) -> int:
        """How long the sensor may stay silent before it is stale."""
        cfg = self._sensors[sensor]
        return round(self._settings.stale_after_intervals * cfg.interval_s * NS_PER_S)

    def next_deadline_ns(self) -> int | None:
        """The earliest time a sensor not yet stale becomes stale (for a timer to sleep on)."""
        if self._started_ns is None and any(s.last_rx_ns is None for s in self._state.values()):
            return None
        deadlines = [
            self._anchor(sid) + self.stale_limit_ns(sid)
            for sid in self._sensors
            if not self.is_stale(sid)
        ]
        return min(deadlines, default=None)

    # -- readings (event time) ------------------------------------------------------------

    def spike_flag(self, reading: Reading) -> bool:
        """True when the reading changes faster than the limit since the sensor's last one."""
        return self._spike_rate(reading) is not None

    def observe(self, readings: Iterable[Reading]) -> list[HealthEvent]:
        """Update per-sensor state from readings; return the events they raise or clear."""
        events: list[HealthEvent] = []
        for r in readings:
            st = self._state.get(r.sensor)
            if st is None:
                continue  # unknown sensors are dead-lettered by the normaliser
            cfg = self._sensors[r.sensor]
            touched_gap = self._observe_liveness(r, st, events)
            if st.last_ts_ns is not None and r.ts_ns <= st.last_ts_ns:
                # A duplicate or late reading proves the link is alive, nothing more.
                if touched_gap:
                    self._reconsider_gap(cfg.zone, r.received_ns, events)
                continue
            st.last_ts_ns = r.ts_ns
            if r.quality & _FAULT_FLAGS:
                st.good_streak = 0
                self._raise(
                    events,
                    "sensor_fault",
                    r.sensor,
                    r.ts_ns,
                    r.temp_c,
                    None,
                    f"sensor {r.sensor} sent {_fault_name(r.quality)} value {r.temp_c:g} °C",
                    details={"quality": r.quality, "zone": cfg.zone},
                )
            else:
                st.good_streak += 1
                if st.good_streak >= self._settings.fault_clear_readings and self._clear(
                    events,
                    "sensor_fault",
                    r.sensor,
                    r.ts_ns,
                    r.temp_c,
                    f"sensor {r.sensor} reads plausibly again",
                ):
                    touched_gap = True
                self._observe_spike(r, st, cfg, events)
                self._observe_frozen(r, st, cfg, events)
                st.last_usable = (r.ts_ns, r.temp_c)
            self._observe_battery(r, events)
            if touched_gap:
                self._reconsider_gap(cfg.zone, r.received_ns, events)
        return events

    def _observe_liveness(self, r: Reading, st: _SensorState, events: list[HealthEvent]) -> bool:
        if st.last_rx_ns is None or r.received_ns > st.last_rx_ns:
            st.last_rx_ns = r.received_ns
        return self._clear(
            events, "sensor_stale", r.sensor, r.received_ns, None, f"sensor {r.sensor} reports"
        )

    def _spike_rate(self, r: Reading) -> float | None:
        st = self._state.get(r.sensor)
        if st is None or r.quality & _FAULT_FLAGS:
            return None
        model = self._sensors[r.sensor].model
        rate = spike_rate(st.last_usable, r.ts_ns, r.temp_c, self._settings, model)
        if rate is None and r.quality & Quality.SPIKE and st.last_usable is not None:
            # Flagged at ingest against its baseline (gateway/sop/spikes.py): report it.
            prev_ts, prev_temp = st.last_usable
            dt_ns = max(1, r.ts_ns - prev_ts)
            rate = abs(r.temp_c - prev_temp) * _NS_PER_MIN / dt_ns
        return rate

    def _observe_spike(
        self, r: Reading, st: _SensorState, cfg: SensorConfig, events: list[HealthEvent]
    ) -> None:
        rate = self._spike_rate(r)
        limit = spike_limit(self._settings, cfg.model)
        if rate is not None:
            st.last_spike_ns = r.ts_ns
            assert st.last_usable is not None
            prev_ts, prev_temp = st.last_usable
            self._raise(
                events,
                "sensor_spike",
                r.sensor,
                r.ts_ns,
                round(rate, 3),
                limit,
                f"sensor {r.sensor} changed {prev_temp:g} -> {r.temp_c:g} °C"
                f" at {rate:.1f} °C/min (limit {limit:g})",
                details={"from_c": prev_temp, "to_c": r.temp_c, "dt_s": (r.ts_ns - prev_ts) / 1e9},
            )
            return
        if st.last_spike_ns is None:
            return
        smooth_ns = round(self._settings.stale_after_intervals * cfg.interval_s * NS_PER_S)
        if r.ts_ns - st.last_spike_ns >= smooth_ns:
            st.last_spike_ns = None
            self._clear(
                events,
                "sensor_spike",
                r.sensor,
                r.ts_ns,
                None,
                f"sensor {r.sensor} smooth for {smooth_ns / NS_PER_S:g} s",
            )

    def _observe_frozen(
        self, r: Reading, st: _SensorState, cfg: SensorConfig, events: list[HealthEvent]
    ) -> None:
        if cfg.model not in self._settings.frozen_models:
            return
        if r.temp_c == st.run_value:
            st.run_count += 1
        else:
            st.run_value, st.run_count, st.run_start_ns = r.temp_c, 1, r.ts_ns
            self._clear(
                events, "sensor_frozen", r.sensor, r.ts_ns, r.temp_c, f"sensor {r.sensor} varies"
            )
            return
        n = self._settings.frozen_readings
        if st.run_count >= n:
            self._raise(
                events,
                "sensor_frozen",
                r.sensor,
                r.ts_ns,
                float(st.run_count),
                float(n),
                f"sensor {r.sensor} sent {r.temp_c:g} °C {st.run_count} times in a row",
                details={"since_ns": st.run_start_ns, "temp_c": r.temp_c},
            )

    def _observe_battery(self, r: Reading, events: list[HealthEvent]) -> None:
        """One battery_low rule on volts, or on percent for sensors that only report that.

        Volts win when a reading has both (the voltage is what the device measured; the
        percentage is its own estimate from it).
        """
        settings = self._settings
        if r.battery_v is not None:
            value, low, margin, unit = (
                r.battery_v,
                settings.low_battery_v,
                settings.battery_clear_margin_v,
                "V",
            )
            shown = f"{value:.2f} V"
        elif r.battery_pct is not None:
            value, low, margin, unit = (
                r.battery_pct,
                settings.low_battery_pct,
                settings.battery_clear_margin_pct,
                "%",
            )
            shown = f"{value:g} %"
        else:
            return
        if value < low:
            self._raise(
                events,
                "battery_low",
                r.sensor,
                r.ts_ns,
                value,
                low,
                f"sensor {r.sensor} battery {shown} below {low:g} {unit}",
            )
        elif value >= low + margin - _EPS:
            self._clear(
                events,
                "battery_low",
                r.sensor,
                r.ts_ns,
                value,
                f"sensor {r.sensor} battery {shown}",
            )

    # -- timers (the caller's clock) ------------------------------------------------------

    def check(self, now_ns: int, zones_with_shipments: set[str]) -> list[HealthEvent]:
        """Raise stale sensors and data gaps due at now_ns; clear gaps that have ended."""
        if self._started_ns is None:
            self._started_ns = now_ns
        self._last_now_ns = now_ns
        events: list[HealthEvent] = []
        for sid in self._sensors:
            if self.is_stale(sid):
                continue
            last = self._anchor(sid)
            limit_ns = self.stale_limit_ns(sid)
            deadline = last + limit_ns
            if now_ns >= deadline:
                never = self._state[sid].last_rx_ns is None
                self._raise(
                    events,
                    "sensor_stale",
                    sid,
                    deadline,
                    (now_ns - last) / NS_PER_S,
                    limit_ns / NS_PER_S,
                    f"sensor {sid} "
                    + ("has not reported since start" if never else "silent")
                    + f" for {(now_ns - last) / NS_PER_S:.0f} s"
                    f" (limit {limit_ns / NS_PER_S:g} s)",
                    details={"last_received_ns": None if never else last, "zone": self._zone(sid)},
                )
        for zone, members in self._zones.items():
            gap = zone in zones_with_shipments and self._blind(zone)
            if gap:
                last_rx = [self._anchor(s) for s in members]
                self._raise(
                    events,
                    "data_gap",
                    zone,
                    now_ns,
                    float(sum(self._is_blind(s) for s in members)),
                    float(len(members)),
                    f"zone {zone} holds shipments but "
                    + ("no sensor" if self._mode(zone) == "all_stale" else "not every sensor")
                    + " reports: its trace is unknown",
                    severity="critical",
                    details={
                        "mode": self._mode(zone),
                        "blind_sensors": [s for s in members if self._is_blind(s)],
                        "since_ns": max(last_rx),
                    },
                )
            else:
                reason = "holds no shipments" if zone not in zones_with_shipments else "reports"
                self._clear(
                    events,
                    "data_gap",
                    zone,
                    now_ns,
                    None,
                    f"zone {zone} {reason}",
                    severity="critical",
                )
        return events

    # -- checksum error rate (per driver) -------------------------------------------------

    def observe_checksums(
        self,
        received: Mapping[str, int],
        rejected: Mapping[str, int],
        *,
        now_ns: int | None = None,
    ) -> list[HealthEvent]:
        """From cumulative good-line and checksum-reject counts, raise/clear per-driver rates."""
        s = self._settings
        if now_ns is not None:
            self._last_now_ns = now_ns
        at_ns = self._last_now_ns if self._last_now_ns is not None else self._started_ns or 0
        events: list[HealthEvent] = []
        for driver in sorted(set(received) | set(rejected)):
            now = _Snapshot(received.get(driver, 0), rejected.get(driver, 0))
            history = self._checksums.setdefault(driver, deque([_Snapshot(0, 0)]))
            if now.good < history[-1].good or now.bad < history[-1].bad:
                history.clear()  # the counters restarted from zero
                history.append(_Snapshot(0, 0))
            # Base = the newest snapshot that still leaves at least a window of lines.
            while len(history) > 1 and now.total - history[1].total >= s.checksum_window:
                history.popleft()
            base = history[0]
            if now != history[-1]:
                history.append(now)
            lines = now.total - base.total
            if lines < s.checksum_min_lines:
                continue
            bad = now.bad - base.bad
            rate = bad / lines
            if rate > s.checksum_error_rate:
                self._raise(
                    events,
                    "checksum_rate",
                    driver,
                    at_ns,
                    round(rate, 4),
                    s.checksum_error_rate,
                    f"driver {driver}: {bad} of the last {lines} lines failed the checksum"
                    f" ({rate:.1%}, limit {s.checksum_error_rate:.1%})",
                    details={"lines": lines, "bad": bad},
                )
            elif rate <= s.checksum_clear_rate:
                self._clear(
                    events,
                    "checksum_rate",
                    driver,
                    at_ns,
                    round(rate, 4),
                    f"driver {driver}: checksum errors {rate:.1%} of the last {lines} lines",
                )
        return events

    # -- helpers --------------------------------------------------------------------------

    def _anchor(self, sensor: str) -> int:
        last = self._state[sensor].last_rx_ns
        if last is not None:
            return last
        assert self._started_ns is not None
        return self._started_ns

    def _zone(self, sensor: str) -> str:
        return self._sensors[sensor].zone

    def _mode(self, zone: str) -> GapMode:
        return self._settings.data_gap_zones.get(zone, self._settings.data_gap)

    def _is_blind(self, sensor: str) -> bool:
        if self.is_stale(sensor):
            return True
        return self._settings.data_gap_counts_faults and ("sensor_fault", sensor) in self._active

    def _blind(self, zone: str) -> bool:
        members = self._zones[zone]
        test = all if self._mode(zone) == "all_stale" else any
        return test(self._is_blind(s) for s in members)

    def _reconsider_gap(self, zone: str, at_ns: int, events: list[HealthEvent]) -> None:
        if not self._blind(zone):
            self._clear(
                events, "data_gap", zone, at_ns, None, f"zone {zone} reports", severity="critical"
            )

    def _raise(
        self,
        events: list[HealthEvent],
        rule: Rule,
        subject: str,
        at_ns: int,
        value: float | None,
        limit: float | None,
        message: str,
        *,
        severity: SeverityName = "warning",
        details: dict[str, Any] | None = None,
    ) -> bool:
        key = (rule, subject)
        if key in self._active:
            return False
        self._active.add(key)
        events.append(
            HealthEvent(
                "raised", rule, subject, at_ns, value, limit, message, severity, details or {}
            )
        )
        return True

    def _clear(
        self,
        events: list[HealthEvent],
        rule: Rule,
        subject: str,
        at_ns: int,
        value: float | None,
        message: str,
        *,
        severity: SeverityName = "warning",
    ) -> bool:
        key = (rule, subject)
        if key not in self._active:
            return False
        self._active.discard(key)
        events.append(HealthEvent("cleared", rule, subject, at_ns, value, None, message, severity))
        return True


def _fault_name(quality: int) -> str:
    if quality & Quality.SENTINEL:
        return "sentinel"
    return "impossible"
