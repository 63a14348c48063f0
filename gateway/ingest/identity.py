"""Alerts on forged or conflicting readings: someone reports what is not theirs to report.

Every refused reading is already dead-lettered and counted (``<driver>:<reason>``). Two
reasons mean that someone may be writing the hub's record who should not:

``identity_mismatch``      a sensor reported from where it does not belong (a payload id
                           that is not its topic's device, a sensor its block does not list)
``conflicting_duplicate``  a second reading for a (sensor, time) already committed with
                           another value (the journal's identity, issue 10): an attempt to
                           overwrite a reading

They are rare and deliberate (or a misconfiguration worth fixing), so the first refusal
from a driver raises the critical alert of that reason (rule = the reason, subject = the
driver's source, e.g. ``mqtt:nodes``); a burst stays one alert whose count grows. It
clears after ``quiet_s`` without another refusal of that reason from that driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from gateway.core.clock import NS_PER_S, Clock
from gateway.core.model import Reject
from gateway.ingest.normalize import IDENTITY_MISMATCH

CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"
RULES: Final = (IDENTITY_MISMATCH, CONFLICTING_DUPLICATE)
QUIET_S: Final = 3600.0
CHECK_INTERVAL_S: Final = 60.0

_WHAT: Final = {
    IDENTITY_MISMATCH: "a sensor reported by a device or driver it does not belong to",
    CONFLICTING_DUPLICATE: "a second, different reading for a sensor and time already recorded",
}


@dataclass(frozen=True, slots=True)
class IdentityAlert:
    """A raise or clear of one of :data:`RULES` for a driver; the daemon journals it."""

    kind: Literal["raised", "cleared"]
    rule: str
    source: str
    at_ns: int
    count: int
    message: str
    details: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class _Burst:
    count: int
    first_ns: int
    last_ns: int
    last_detail: str


class IdentityWatch:
    """Turns forged or conflicting readings into the gateway's own alerts, per driver."""

    def __init__(
        self,
        clock: Clock,
        report: Callable[[Sequence[IdentityAlert]], None],
        quiet_s: float = QUIET_S,
    ) -> None:
        self._clock = clock
        self._report = report
        self._quiet_ns = int(quiet_s * NS_PER_S)
        self._bursts: dict[tuple[str, str], _Burst] = {}

    def restore(self, active: Iterable[tuple[str, str]]) -> None:
        """(rule, source) alerts still active after a restart: clear them after a quiet period."""
        now = self._clock.now_ns()
        for key in active:
            self._bursts.setdefault(key, _Burst(0, now, now, "raised before a restart"))

    def observe(self, rejects: Sequence[Reject]) -> None:
        """Called with each commit's rejects; raises an alert at a driver's first refusal."""
        now = self._clock.now_ns()
        events: list[IdentityAlert] = []
        for reject in rejects:
            if reject.reason not in RULES:
                continue
            key = (reject.reason, reject.source)
            burst = self._bursts.get(key)
            if burst is None:
                burst = _Burst(0, now, now, reject.detail)
                self._bursts[key] = burst
                events.append(_raised(now, reject))
            burst.count += 1
            burst.last_ns = now
            burst.last_detail = reject.detail
        if events:
            self._report(events)

    def sweep(self) -> None:
        """Clear the alerts of every driver quiet for ``quiet_s``."""
        now = self._clock.now_ns()
        events: list[IdentityAlert] = []
        for (rule, source), burst in list(self._bursts.items()):
            if now - burst.last_ns >= self._quiet_ns:
                del self._bursts[(rule, source)]
                message = f"no readings refused as {rule} from {source} for an hour"
                events.append(IdentityAlert("cleared", rule, source, now, burst.count, message))
        if events:
            self._report(events)

    async def run(self) -> None:
        """Sweep on the injected clock until cancelled."""
        while True:
            await self._clock.sleep(CHECK_INTERVAL_S)
            self.sweep()


def _raised(now: int, reject: Reject) -> IdentityAlert:
    return IdentityAlert(
        kind="raised",
        rule=reject.reason,
        source=reject.source,
        at_ns=now,
        count=1,
        message=(
            f"readings refused from {reject.source}: {_WHAT[reject.reason]}"
            f" ({reject.detail[:200]}); check the broker's ACL and the dead letters"
            " (coldchain dead-letters)"
        ),
        details={"topic": reject.topic[:200], "since_ns": now},
    )
