"""The gateway's own ``sink_down`` alert: an output unreachable for too long.

A sink that is down keeps its backlog in the journal and loses nothing, so a short outage
needs nobody. One down for ``after_s`` (default 10 min) means InfluxDB dashboards and the
planner are going stale and someone should look: a warning alert ``sink_down`` on the
sink's name, through the same alert store, outbox and notifications as every other
alert; it clears when the sink is connected again. Checked on the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

from gateway.core.clock import NS_PER_S, Clock
from gateway.core.metrics import Counters
from gateway.sop.sensor_health import HealthEvent

RULE: Final = "sink_down"
CHECK_S: Final = 10.0
DEFAULT_AFTER_S: Final = 600.0


class SinkWatch:
    """Raises and clears ``sink_down`` from the counters' connected flags."""

    def __init__(
        self,
        sinks: Sequence[str],
        counters: Counters,
        clock: Clock,
        report: Callable[[list[HealthEvent]], None],
        after_s: float = DEFAULT_AFTER_S,
    ) -> None:
        self.sinks = list(sinks)
        self._counters = counters
        self._clock = clock
        self._report = report
        self._after_ns = round(after_s * NS_PER_S)
        self._down_since: dict[str, int] = {}
        self._raised: set[str] = set()

    def restore(self, active: Iterable[tuple[str, str]]) -> None:
        """After a restart: the (rule, subject) pairs of active alerts; ours get cleared
        once the sink is back, and are not raised twice."""
        self._raised |= {subject for rule, subject in active if rule == RULE}

    def check(self) -> list[HealthEvent]:
        """One look at every sink; the transitions are also reported."""
        now = self._clock.now_ns()
        events: list[HealthEvent] = []
        for sink in self.sinks:
            connected = self._counters.connected.get(sink)
            if connected is False:
                since = self._down_since.setdefault(sink, now)
                if sink not in self._raised and now - since >= self._after_ns:
                    self._raised.add(sink)
                    minutes = (now - since) / NS_PER_S / 60
                    reason = self._counters.last_error.get(sink, "no detail")
                    events.append(
                        HealthEvent(
                            kind="raised",
                            rule=RULE,
                            subject=sink,
                            at_ns=now,
                            value=round(minutes, 1),
                            limit=self._after_ns / NS_PER_S / 60,
                            message=f"sink {sink} unreachable for {minutes:.0f} min; its"
                            f" backlog waits in the journal: {reason}"[:300],
                            details={"since_ns": since},
                        )
                    )
            elif connected:
                self._down_since.pop(sink, None)
                if sink in self._raised:
                    self._raised.discard(sink)
                    events.append(
                        HealthEvent(
                            kind="cleared",
                            rule=RULE,
                            subject=sink,
                            at_ns=now,
                            value=None,
                            limit=None,
                            message=f"sink {sink} reachable again",
                        )
                    )
        if events:
            self._report(events)
        return events

    async def run(self) -> None:
        """Check every CHECK_S seconds on the clock, until cancelled."""
        while True:
            await self._clock.sleep(CHECK_S)
            self.check()
