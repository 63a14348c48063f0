"""SOP rules: product profiles, excursion detection, cumulative budgets and MKT."""

from gateway.rules.excursion import (
    BudgetEvent,
    CumulativeBudget,
    Excursion,
    ExcursionDetector,
    ExcursionEvent,
)
from gateway.rules.mkt import RollingMkt, mean_kinetic_temperature, time_weighted_samples
from gateway.rules.profiles import DEFAULT_PROFILES, ProductProfile

__all__ = [
    "DEFAULT_PROFILES",
    "BudgetEvent",
    "CumulativeBudget",
    "Excursion",
    "ExcursionDetector",
    "ExcursionEvent",
    "ProductProfile",
    "RollingMkt",
    "mean_kinetic_temperature",
    "time_weighted_samples",
]
