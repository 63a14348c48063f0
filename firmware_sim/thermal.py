"""Deterministic thermal models of hub zones, stepped on simulated time.

Every model is seeded, so the same seed and the same steps give the same trace.
Models know nothing about wall time: the caller advances them with ``step(dt_s)``.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

_MAX_SUBSTEP_S = 1.0


class ZoneModel(Protocol):
    """What a board or node asks of a zone: advance time, read the air temperature."""

    @property
    def temperature_c(self) -> float:
        """True air temperature of the zone now, °C."""
        ...

    def step(self, dt_s: float) -> None:
        """Advance the model by ``dt_s`` simulated seconds."""
        ...


class CyclingZone:
    """A refrigerated zone: compressor with on/off hysteresis, heat leak, door openings.

    The compressor switches on at ``high_c`` and off at ``low_c``. Door openings arrive
    at random (Poisson, ``door_openings_per_h``) and each bumps the air temperature by
    up to ``door_bump_c``. From ``compressor_fails_at_s`` on the compressor stays off
    and the zone drifts toward ambient at ``failure_drift_c_per_min``.
    """

    def __init__(
        self,
        *,
        setpoint_c: float,
        low_c: float,
        high_c: float,
        ambient_c: float,
        cool_c_per_min: float,
        leak_c_per_min: float,
        door_openings_per_h: float = 0.0,
        door_bump_c: float = 0.0,
        compressor_fails_at_s: float | None = None,
        failure_drift_c_per_min: float = 0.3,
        seed: int = 0,
    ) -> None:
        if not low_c < setpoint_c < high_c:
            msg = "want low_c < setpoint_c < high_c"
            raise ValueError(msg)
        self.setpoint_c = setpoint_c
        self.low_c = low_c
        self.high_c = high_c
        self.ambient_c = ambient_c
        self.cool_c_per_min = cool_c_per_min
        self.leak_c_per_min = leak_c_per_min
        self.door_openings_per_h = door_openings_per_h
        self.door_bump_c = door_bump_c
        self.compressor_fails_at_s = compressor_fails_at_s
        self.failure_drift_c_per_min = failure_drift_c_per_min
        self._rng = random.Random(seed)
        self._temp_c = setpoint_c
        self.compressor_on = False
        self.elapsed_s = 0.0
        self.door_openings = 0

    @property
    def temperature_c(self) -> float:
        """True air temperature of the zone now, °C."""
        return self._temp_c

    @property
    def compressor_failed(self) -> bool:
        """True once the simulated time passed the compressor failure time."""
        return (
            self.compressor_fails_at_s is not None and self.elapsed_s >= self.compressor_fails_at_s
        )

    def step(self, dt_s: float) -> None:
        """Advance the model by ``dt_s`` simulated seconds (in substeps of at most 1 s)."""
        remaining = dt_s
        while remaining > 0:
            dt = min(remaining, _MAX_SUBSTEP_S)
            self._substep(dt)
            remaining -= dt

    def _substep(self, dt: float) -> None:
        self.elapsed_s += dt
        minutes = dt / 60.0
        if self.compressor_failed:
            self.compressor_on = False
            gap = self.ambient_c - self._temp_c
            move = min(abs(gap), self.failure_drift_c_per_min * minutes)
            self._temp_c += math.copysign(move, gap)
            return
        if self.compressor_on:
            self._temp_c -= self.cool_c_per_min * minutes
            if self._temp_c <= self.low_c:
                self.compressor_on = False
        else:
            self._temp_c += self.leak_c_per_min * minutes
            if self._temp_c >= self.high_c:
                self.compressor_on = True
        door_p = self.door_openings_per_h * dt / 3600.0
        if door_p > 0 and self._rng.random() < door_p:
            self.door_openings += 1
            self._temp_c += self._rng.uniform(0.3, 1.0) * self.door_bump_c
            if self._temp_c >= self.high_c:
                self.compressor_on = True


class ColdRoom(CyclingZone):
    """A chilled room at ~4 °C cycling between 2.5 and 5.5 °C, with door openings."""

    def __init__(
        self,
        *,
        seed: int = 0,
        setpoint_c: float = 4.0,
        low_c: float = 2.5,
        high_c: float = 5.5,
        ambient_c: float = 20.0,
        door_openings_per_h: float = 4.0,
        door_bump_c: float = 2.0,
        compressor_fails_at_s: float | None = None,
        failure_drift_c_per_min: float = 0.3,
    ) -> None:
        super().__init__(
            setpoint_c=setpoint_c,
            low_c=low_c,
            high_c=high_c,
            ambient_c=ambient_c,
            cool_c_per_min=0.5,
            leak_c_per_min=0.15,
            door_openings_per_h=door_openings_per_h,
            door_bump_c=door_bump_c,
            compressor_fails_at_s=compressor_fails_at_s,
            failure_drift_c_per_min=failure_drift_c_per_min,
            seed=seed,
        )


class Freezer(CyclingZone):
    """A freezer at ~-20 °C cycling between -21.5 and -18.5 °C."""

    def __init__(
        self,
        *,
        seed: int = 0,
        setpoint_c: float = -20.0,
        low_c: float = -21.5,
        high_c: float = -18.5,
        ambient_c: float = 20.0,
        door_openings_per_h: float = 2.0,
        door_bump_c: float = 1.5,
        compressor_fails_at_s: float | None = None,
        failure_drift_c_per_min: float = 0.3,
    ) -> None:
        super().__init__(
            setpoint_c=setpoint_c,
            low_c=low_c,
            high_c=high_c,
            ambient_c=ambient_c,
            cool_c_per_min=0.4,
            leak_c_per_min=0.1,
            door_openings_per_h=door_openings_per_h,
            door_bump_c=door_bump_c,
            compressor_fails_at_s=compressor_fails_at_s,
            failure_drift_c_per_min=failure_drift_c_per_min,
            seed=seed,
        )


class AmbientDock:
    """An unrefrigerated dock: diurnal swing between ~15 and ~22 °C plus a small wander.

    ``start_hour`` is the local hour of day at simulated time zero; the minimum is at
    04:00 and the maximum at 16:00.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        min_c: float = 15.0,
        max_c: float = 22.0,
        start_hour: float = 8.0,
        wander_c: float = 0.5,
    ) -> None:
        self.min_c = min_c
        self.max_c = max_c
        self.wander_c = wander_c
        self._rng = random.Random(seed)
        self._hour = start_hour
        self._wander = 0.0

    @property
    def temperature_c(self) -> float:
        """Air temperature on the dock now, °C."""
        mid = (self.min_c + self.max_c) / 2
        amp = (self.max_c - self.min_c) / 2
        phase = (self._hour - 16.0) / 24.0 * 2 * math.pi
        return mid + amp * math.cos(phase) + self._wander

    def step(self, dt_s: float) -> None:
        """Advance the time of day and the bounded random wander."""
        self._hour = (self._hour + dt_s / 3600.0) % 24.0
        # Mean-reverting wander so the dock never leaves its band by much.
        k = min(1.0, dt_s / 600.0)
        target = self._rng.gauss(0.0, self.wander_c)
        self._wander += (target - self._wander) * k


class Probe:
    """A temperature probe in a zone: the zone's air temperature plus offset and noise."""

    def __init__(
        self,
        zone: ZoneModel,
        *,
        noise_c: float = 0.05,
        offset_c: float = 0.0,
        resolution_c: float = 0.0625,
        seed: int = 0,
    ) -> None:
        self.zone = zone
        self.noise_c = noise_c
        self.offset_c = offset_c
        self.resolution_c = resolution_c
        self._rng = random.Random(seed)

    def read_c(self) -> float:
        """One measurement, quantised to the probe's resolution (DS18B20: 1/16 °C)."""
        value = self.zone.temperature_c + self.offset_c + self._rng.gauss(0.0, self.noise_c)
        if self.resolution_c > 0:
            value = round(value / self.resolution_c) * self.resolution_c
        return value


def zone_from_name(
    kind: str, seed: int = 0, compressor_fails_at_s: float | None = None
) -> ZoneModel:
    """A zone model by kind name: ``cold_room``, ``freezer`` or ``dock``."""
    if kind == "cold_room":
        return ColdRoom(seed=seed, compressor_fails_at_s=compressor_fails_at_s)
    if kind == "freezer":
        return Freezer(seed=seed, compressor_fails_at_s=compressor_fails_at_s)
    if kind == "dock":
        return AmbientDock(seed=seed)
    msg = f"unknown zone kind {kind!r}: use cold_room, freezer or dock"
    raise ValueError(msg)
