"""Product profiles: the temperature limits and SOP parameters a zone or shipment must hold.

Default profiles (``DEFAULT_PROFILES``) and why these values:

| name              | range (°C)  | alarm delay | budget | hysteresis | MKT limit / window |
|-------------------|-------------|-------------|--------|------------|--------------------|
| chilled           | 2 .. 8      | 15 min      | 60 min | 0.5 °C     | 8 °C / 24 h        |
| frozen            | <= -18      | 30 min      | 2 h    | 1.0 °C     | none               |
| frozen_transport  | <= -15      | 15 min      | 60 min | 1.0 °C     | none               |
| cold_holding      | <= 5        | 30 min      | 4 h    | 0.5 °C     | none               |
| controlled_room   | 15 .. 25    | 60 min      | 24 h   | 0.5 °C     | 25 °C / 30 days    |
| flowers           | 0.5 .. 1.5  | 30 min      | 2 h    | 0.2 °C     | none               |

- The alarm delay rides out door openings and defrost cycles (a few minutes) without
  letting a real failure go unseen for long; frozen stores get a longer delay because a
  -18 °C mass warms slowly, transport (-15 °C tolerance) a shorter one.
- cold_holding uses the food-code "4 hours out of temperature control" rule as budget.
- controlled_room follows USP <1079.2>: MKT over 30 days must not exceed 25 °C; chilled
  uses the 24 h cold-chain window with the 8 °C upper limit.
- Hysteresis is the margin a reading must be back inside by before an alarm clears; for
  flowers it must stay below half the 1 °C range, or no reading could ever clear.
- Warn when 80 % of the budget is spent (``budget_warn_fraction``) everywhere.
- Gaps: a zone value stands for at most ``max_gap_s`` (default: 3 x the zone's slowest
  sensor interval); unknown time that could have spent the remaining budget rejects
  (``unknown_time = "reject"``, the conservative default) or asks for review.

These are starting points for a hub's config, not regulatory advice: a site overrides them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# DESIGN.md fixes R at 8.3144 J/(mol K) so that the USP default dH = 83.144 kJ/mol gives
# dH/R = 10000 K exactly; keeping it lets the reference MKT checks match to the digit.
GAS_CONSTANT_J_PER_MOL_K = 8.3144

Seconds = Annotated[float, Field(ge=0)]


class ProductProfile(BaseModel):
    """Temperature limits and SOP parameters for one kind of product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    min_c: float | None = None
    max_c: float | None = None
    alarm_delay_s: Seconds = 0.0
    budget_s: Seconds = 0.0
    budget_warn_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    hysteresis_c: Annotated[float, Field(ge=0)] = 0.0
    mkt_limit_c: float | None = None
    mkt_window_s: Annotated[float, Field(gt=0)] = 86_400.0
    dh_kj_per_mol: Annotated[float, Field(gt=0)] = 83.144
    # Gap policy (docs/sop-semantics.md): a zone value stands for at most max_gap_s (None:
    # 3 x the zone's slowest sensor interval, its stale limit); later time is unknown.
    max_gap_s: Annotated[float, Field(gt=0)] | None = None
    # Unknown time in custody that could have spent the remaining budget: reject or review.
    unknown_time: Literal["reject", "review"] = "reject"

    @model_validator(mode="after")
    def _limits(self) -> ProductProfile:
        if self.min_c is None and self.max_c is None:
            msg = f"profile {self.name!r}: set min_c, max_c or both"
            raise ValueError(msg)
        if self.min_c is not None and self.max_c is not None:
            if self.min_c >= self.max_c:
                msg = f"profile {self.name!r}: min_c must be below max_c"
                raise ValueError(msg)
            if 2 * self.hysteresis_c >= self.max_c - self.min_c:
                msg = (
                    f"profile {self.name!r}: hysteresis_c must be under half the range "
                    "(max_c - min_c), or an alarm could never clear"
                )
                raise ValueError(msg)
        return self

    @property
    def dh_over_r_k(self) -> float:
        """Activation energy over the gas constant, in kelvin (10000 K for the default)."""
        return self.dh_kj_per_mol * 1000.0 / GAS_CONSTANT_J_PER_MOL_K

    def out_of_range(self, temp_c: float) -> bool:
        """True when the temperature is strictly outside the limits (the limits are inside)."""
        return (self.min_c is not None and temp_c < self.min_c) or (
            self.max_c is not None and temp_c > self.max_c
        )

    def back_inside(self, temp_c: float) -> bool:
        """True when the temperature is inside the limits by at least the hysteresis margin."""
        if self.min_c is not None and not temp_c >= self.min_c + self.hysteresis_c:
            return False
        return self.max_c is None or temp_c <= self.max_c - self.hysteresis_c


_MIN = 60.0
_HOUR = 3600.0

DEFAULT_PROFILES: dict[str, ProductProfile] = {
    p.name: p
    for p in (
        ProductProfile(
            name="chilled",
            min_c=2.0,
            max_c=8.0,
            alarm_delay_s=15 * _MIN,
            budget_s=1 * _HOUR,
            hysteresis_c=0.5,
            mkt_limit_c=8.0,
        ),
        ProductProfile(
            name="frozen",
            max_c=-18.0,
            alarm_delay_s=30 * _MIN,
            budget_s=2 * _HOUR,
            hysteresis_c=1.0,
        ),
        ProductProfile(
            name="frozen_transport",
            max_c=-15.0,
            alarm_delay_s=15 * _MIN,
            budget_s=1 * _HOUR,
            hysteresis_c=1.0,
        ),
        ProductProfile(
            name="cold_holding",
            max_c=5.0,
            alarm_delay_s=30 * _MIN,
            budget_s=4 * _HOUR,
            hysteresis_c=0.5,
        ),
        ProductProfile(
            name="controlled_room",
            min_c=15.0,
            max_c=25.0,
            alarm_delay_s=1 * _HOUR,
            budget_s=24 * _HOUR,
            hysteresis_c=0.5,
            mkt_limit_c=25.0,
            mkt_window_s=30 * 24 * _HOUR,
        ),
        ProductProfile(
            name="flowers",
            min_c=0.5,
            max_c=1.5,
            alarm_delay_s=30 * _MIN,
            budget_s=2 * _HOUR,
            hysteresis_c=0.2,
        ),
    )
}
"""Built-in profiles by name; see the module docstring for the reasoning."""
