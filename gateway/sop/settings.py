"""Settings models of the SOP rules, as the config file holds them.

Leaf module (pydantic and the pure custody events only): ``gateway.config`` imports these
without loading the rules, the journal or the custody ledger.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.core.clock import NS_PER_S
from gateway.custody.events import CustodyKind

SeverityName = Literal["info", "warning", "critical"]
GapMode = Literal["all_stale", "any_stale"]


class HealthSettings(BaseModel):
    """Thresholds of the sensor-health rules; defaults are explained in the docs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stale_after_intervals: float = Field(default=3.0, gt=0)
    spike_c_per_min: float = Field(default=5.0, gt=0)
    spike_min_delta_c: float = Field(
        default=0.5, ge=0, description="a change smaller than this is never a spike (noise)"
    )
    # Per sensor model (kind) overrides of spike_c_per_min, e.g. {"ds18b20": 3.0} for a
    # probe in a glycol bottle that cannot physically move faster.
    spike_c_per_min_models: dict[str, Annotated[float, Field(gt=0)]] = {}
    # SPIKE is set at ingest (gateway/sop/spikes.py) unless this is false.
    flag_spikes: bool = True
    frozen_readings: int = Field(default=30, ge=2)
    frozen_models: frozenset[str] = frozenset({"sht3x", "pt100", "generic"})
    fault_clear_readings: int = Field(default=3, ge=1)
    low_battery_v: float = Field(default=3.3, gt=0)
    battery_clear_margin_v: float = Field(default=0.1, ge=0)
    # For sensors that report a state of charge instead of a voltage (Zigbee, Shelly).
    low_battery_pct: float = Field(default=20.0, gt=0, le=100)
    battery_clear_margin_pct: float = Field(default=5.0, ge=0)
    checksum_error_rate: float = Field(default=0.05, gt=0, lt=1)
    checksum_clear_rate: float = Field(default=0.025, ge=0, lt=1)
    checksum_window: int = Field(default=200, ge=1)
    checksum_min_lines: int = Field(default=50, ge=1)
    data_gap: GapMode = "all_stale"
    data_gap_zones: dict[str, GapMode] = {}
    data_gap_counts_faults: bool = True


class DwellRule(BaseModel):
    """Maximum time from one custody event to the next expected one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_kind: CustodyKind
    to_kinds: Annotated[tuple[CustodyKind, ...], Field(min_length=1)]
    limit_s: Annotated[float, Field(gt=0)]
    warn_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    severity_warn: SeverityName = "warning"
    severity_violate: SeverityName = "critical"
    zone_kinds: tuple[str, ...] | None = None
    name: Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")] | None = None

    @model_validator(mode="after")
    def _sane(self) -> DwellRule:
        if self.from_kind in self.to_kinds:
            msg = f"to_kinds must not contain from_kind {self.from_kind.value!r}"
            raise ValueError(msg)
        return self

    @property
    def rule(self) -> str:
        """The alert rule name: ``name`` or ``dwell.{from_kind}.{first to_kind}``."""
        return self.name or f"dwell.{self.from_kind.value}.{self.to_kinds[0].value}"

    @property
    def limit_ns(self) -> int:
        """The limit in nanoseconds."""
        return round(self.limit_s * NS_PER_S)

    @property
    def warn_ns(self) -> int:
        """Offset from the start at which the warning fires."""
        return round(self.limit_s * self.warn_fraction * NS_PER_S)

    def applies_to(self, kind: CustodyKind, zone_kind: str | None) -> bool:
        """True if an event of this kind in a zone of this kind starts the rule."""
        if kind is not self.from_kind:
            return False
        return self.zone_kinds is None or zone_kind in self.zone_kinds


_K = CustodyKind

DEFAULT_DWELL_RULES: tuple[DwellRule, ...] = (
    # Receiving: into storage (or cross-docked to staging, or turned into a return) in 30 min.
    DwellRule(
        from_kind=_K.RECEIVED, to_kinds=(_K.PUT_AWAY, _K.STAGED, _K.RETURNED), limit_s=30 * 60
    ),
    # Staged on the dock: handed over (or re-stowed) within 20 min.
    DwellRule(from_kind=_K.STAGED, to_kinds=(_K.HANDED_TO_CARRIER, _K.PUT_AWAY), limit_s=20 * 60),
    # Packed: handed over within 60 min, wherever it waits meanwhile (staging included).
    DwellRule(from_kind=_K.PACKED, to_kinds=(_K.HANDED_TO_CARRIER, _K.PUT_AWAY), limit_s=60 * 60),
)
"""DESIGN.md's examples; to_kinds lists the target first, then legitimate exits."""
