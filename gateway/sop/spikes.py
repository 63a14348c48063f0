"""The rate-of-change check: a reading that jumps faster than its sensor can is a SPIKE.

One function (:func:`spike_rate`) decides it for ingest, which sets ``Quality.SPIKE`` on
the reading before it is journaled (so the journal, InfluxDB and the trace all see the
flag), and for the ``sensor_spike`` health alert. The rules skip a SPIKE reading as they
skip a sentinel; the trace lists it.

:class:`SpikeCheck` compares each plausible reading with its sensor's *baseline*, the last
reading it accepted: a glitch (4, 30, 4 °C) flags only the 30. A real step is confirmed by
the next reading: a flagged reading followed by one within ``spike_min_delta_c`` of it
makes that second reading the new baseline, so a real change costs one reading, not the
alarm. The limit is ``spike_c_per_min`` or its per-model override; after a restart the
first reading of each sensor has no baseline and is not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sop.settings import HealthSettings

_NS_PER_MIN = 60_000_000_000


def spike_limit(settings: HealthSettings, model: str) -> float:
    """°C per minute a sensor of this model may change by (the per-model override first)."""
    return settings.spike_c_per_min_models.get(model, settings.spike_c_per_min)


def spike_rate(
    previous: tuple[int, float] | None,
    ts_ns: int,
    temp_c: float,
    settings: HealthSettings,
    model: str = "generic",
) -> float | None:
    """The rate in °C/min if the change since ``previous`` is a spike, else None."""
    if previous is None:
        return None
    prev_ts, prev_temp = previous
    dt_ns = ts_ns - prev_ts
    delta = abs(temp_c - prev_temp)
    if dt_ns <= 0 or delta < settings.spike_min_delta_c:
        return None
    rate = delta * _NS_PER_MIN / dt_ns
    return rate if rate > spike_limit(settings, model) else None


@dataclass(slots=True)
class _Baseline:
    accepted: tuple[int, float]
    flagged: tuple[int, float] | None = None


class SpikeCheck:
    """Per-sensor baselines for the ingest-time SPIKE flag (one per gateway)."""

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self._baselines: dict[str, _Baseline] = {}
        self.flagged = 0

    def flag(self, sensor: str, model: str, ts_ns: int, temp_c: float) -> bool:
        """True if this plausible reading is a spike; updates the sensor's baseline."""
        if not self.settings.flag_spikes:
            return False
        base = self._baselines.get(sensor)
        if base is None:
            self._baselines[sensor] = _Baseline((ts_ns, temp_c))
            return False
        if ts_ns <= base.accepted[0]:
            return False  # late or duplicate: judged against nothing newer, never flagged
        if base.flagged is not None and (
            abs(temp_c - base.flagged[1]) < self.settings.spike_min_delta_c
            or (
                spike_rate(base.flagged, ts_ns, temp_c, self.settings, model) is None
                and abs(temp_c - base.flagged[1]) <= abs(temp_c - base.accepted[1])
            )
        ):
            # The jump is confirmed by the next reading: a real change, the new baseline.
            base.accepted, base.flagged = (ts_ns, temp_c), None
            return False
        if spike_rate(base.accepted, ts_ns, temp_c, self.settings, model) is not None:
            base.flagged = (ts_ns, temp_c)
            self.flagged += 1
            return True
        base.accepted, base.flagged = (ts_ns, temp_c), None
        return False
