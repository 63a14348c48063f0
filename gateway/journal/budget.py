"""The journal's disk budget: keep the journal within ``journal.max_size_mb``.

Over the budget the gateway frees space down to 90 %: delivered readings first (InfluxDB
has them), then delivered self-metrics and dead letters, then the oldest undelivered
readings are thinned to one per sensor per ``downsample_s`` (``Journal.enforce_budget``).
The newest hour, the readings of shipments still in custody, custody records and alerts
are never touched. Thinning raises the gateway's own critical ``journal_budget`` alert,
which clears after an hour without thinning. Passes run in bounded steps on the journal
thread so other journal work goes in between, then a WAL checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.config import JournalConfig
from gateway.core.clock import NS_PER_S, Clock
from gateway.core.metrics import Counters
from gateway.journal.store import BudgetResult, JournalRunner

log = logging.getLogger(__name__)

BUDGET_INTERVAL_S = 30.0  # how often the journal's size is checked against max_size_mb
BUDGET_PROTECT_RECENT_S = 3600.0  # the newest hour of readings is never downsampled
BUDGET_CLEAR_S = 3600.0  # journal_budget clears after an hour without thinning


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A ``journal_budget`` transition for the alert machinery (critical while raised)."""

    kind: Literal["raised", "cleared"]
    at_ns: int
    used_mb: float
    budget_mb: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class DiskBudget:
    """The budget loop; alerts go out through ``on_alert``.

    ``oldest_open_ns()`` is when the oldest shipment still in custody arrived (its
    readings are what a restart replays its time-out-of-range budget from).
    """

    def __init__(
        self,
        config: JournalConfig,
        runner: JournalRunner,
        sinks: list[str],
        counters: Counters,
        clock: Clock,
        *,
        hub: str,
        oldest_open_ns: Callable[[], int | None],
        on_alert: Callable[[BudgetAlert], None],
    ) -> None:
        self.config = config
        self.runner = runner
        self.sinks = sinks
        self.counters = counters
        self.clock = clock
        self.hub = hub
        self._oldest_open_ns = oldest_open_ns
        self._on_alert = on_alert

    async def run(self, raised_before: bool) -> None:
        """Check every BUDGET_INTERVAL_S; ``raised_before``: the alert is active already."""
        cfg = self.config
        if cfg.max_size_mb is None:
            return
        budget = cfg.max_size_mb
        max_bytes = int(budget * 1e6)
        hub = self.hub
        # raised before a restart: clear it in time
        last_thinned_ns: int | None = self.clock.now_ns() if raised_before else None
        while True:
            now = self.clock.now_ns()
            result = await self.enforce(max_bytes, now)
            used_mb = round(result.used_bytes / 1e6, 1)
            if result.removed_delivered or result.removed_diagnostics:
                log.warning(
                    "journal over its %.0f MB budget: deleted %d delivered readings (InfluxDB"
                    " has them) and %d self-metrics/dead-letter rows before their retention",
                    budget,
                    result.removed_delivered,
                    result.removed_diagnostics,
                )
            if result.downsampled or result.over:
                self.counters.drop("journal", "downsampled", result.downsampled)
                log.error(
                    "journal over its %.0f MB budget with undelivered data: downsampled %d"
                    " readings to one per sensor per %g s; %.1f MB in use",
                    budget,
                    result.downsampled,
                    cfg.downsample_s,
                    used_mb,
                )
                last_thinned_ns = now
                message = (
                    f"journal disk budget exhausted on {hub}: undelivered readings"
                    f" downsampled to one per sensor per {cfg.downsample_s:g} s"
                )
                details = {"downsampled": result.downsampled, "since_ns": now}
                self._on_alert(BudgetAlert("raised", now, used_mb, budget, message, details))
            elif last_thinned_ns is not None and now - last_thinned_ns >= int(
                BUDGET_CLEAR_S * NS_PER_S
            ):
                last_thinned_ns = None
                message = f"journal of {hub} within its disk budget again"
                self._on_alert(BudgetAlert("cleared", now, used_mb, budget, message))
            await self.clock.sleep(BUDGET_INTERVAL_S)

    async def enforce(self, max_bytes: int, now: int) -> BudgetResult:
        """Run Journal.enforce_budget in bounded steps (other journal work goes between)."""
        cfg = self.config
        journal = self.runner.journal
        protect = now - int(BUDGET_PROTECT_RECENT_S * NS_PER_S)
        # Readings of shipments still in custody are what a restart replays their
        # time-out-of-range budgets from: keep them, unless a shipment was left open
        # longer than the retention (then it would pin the whole journal).
        oldest_open = self._oldest_open_ns()
        if oldest_open is not None and now - oldest_open < cfg.retention_days * 86_400 * NS_PER_S:
            protect = min(protect, oldest_open)
        total = BudgetResult(0, 0, 0, 0, over=False)
        resume = 0
        while True:
            step = await self.runner.call(
                journal.enforce_budget,
                max_bytes,
                self.sinks,
                int(cfg.downsample_s * NS_PER_S),
                protect,
                now,
                resume_id=resume,
            )
            total = BudgetResult(
                step.used_bytes,
                total.removed_delivered + step.removed_delivered,
                total.removed_diagnostics + step.removed_diagnostics,
                total.downsampled + step.downsampled,
                over=step.over,
            )
            if not step.more:
                break
            resume = step.resume_id
        if total.removed_delivered or total.removed_diagnostics or total.downsampled:
            await self.runner.call(journal.checkpoint)
        return total
