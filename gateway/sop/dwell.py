"""Dwell-time SOPs between custody events, and per-shipment cumulative excursion budgets.

Dwell (:class:`DwellTimers`): a :class:`DwellRule` starts a timer when a shipment gets an
event of ``from_kind`` (in a zone of one of ``zone_kinds``, if set) and stops it when one
of ``to_kinds`` arrives, or when the shipment is handed to a carrier (custody ended). A
running timer fires ``warn`` at ``start + warn_fraction * limit`` and ``violated`` at
``start + limit``, each once, from :meth:`DwellTimers.check` on the clock the caller passes:
a shipment left on the dock with nothing happening still raises on time. ``at_ns`` of a
fired event is the threshold itself, not the (later) time check ran. Stopping emits
``resolved``. A stopping event that arrives after a threshold that check has not fired yet
fires it first, so every threshold a timer reached is reported exactly once, in order.
Deadlines run on event time: a handoff keyed in late (``coldchain handoff --at``) starts its
timer at its own timestamp, so a back-dated step whose limit already passed raises at once
(the next step may never come). When the stopping step then arrives with an event time
inside the limit, ``resolved`` carries ``withdrawn=True``: the alert is withdrawn as
"recorded late, in time", and the trace, which judges dwell on event times only, shows no
violation. Reaching a limit exactly is a violation (:func:`gateway.sop.intervals.reached`).

Restart: :meth:`DwellTimers.rebuild` replays the ledger's accepted events of the open
shipments. The warn/violated flags are not persisted, so the next check re-emits thresholds
that had already fired; the alert store keeps one active alert per rule and subject and
the alert id is derived from the timer's start, so a re-emission is not a second raise.

Budgets (:class:`ShipmentBudgets`): a :class:`~gateway.sop.excursion.CumulativeBudget`
per shipment with a product profile, counting the zone value's time out of range only while
the shipment is open and in a tracked zone. It never resets; handing over pauses it and a
return resumes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from gateway.core.clock import NS_PER_S
from gateway.custody.events import CustodyEvent, CustodyKind, ShipmentState
from gateway.custody.ledger import CustodyLedger
from gateway.sop.excursion import BudgetEvent, CumulativeBudget
from gateway.sop.intervals import reached
from gateway.sop.profiles import ProductProfile
from gateway.sop.settings import DEFAULT_DWELL_RULES, DwellRule, SeverityName

DwellEventKind = Literal["warn", "violated", "resolved"]


@dataclass(frozen=True, slots=True)
class DwellEvent:
    """A dwell timer crossed its warning or its limit, or stopped."""

    kind: DwellEventKind
    shipment: str
    rule: str
    started_ns: int
    deadline_ns: int
    at_ns: int
    limit_s: float
    elapsed_s: float
    severity: SeverityName | None
    zone: str | None
    stopped_by: CustodyKind | None = None
    withdrawn: bool = False  # resolved in time by event time after firing on a late entry


@dataclass(slots=True)
class DwellTimer:
    """A running timer; ``warned``/``violated`` say which thresholds already fired."""

    shipment: str
    rule: str
    started_ns: int
    zone: str | None = None
    warned: bool = False
    violated: bool = False


class DwellTimers:
    """Every running dwell timer of the hub, driven by custody events and an injected clock."""

    def __init__(
        self,
        rules: Sequence[DwellRule] = DEFAULT_DWELL_RULES,
        zone_kinds: Mapping[str, str] | None = None,
    ) -> None:
        names = [r.rule for r in rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            msg = f"dwell rules: duplicate rule name(s) {', '.join(dup)}; set name on each"
            raise ValueError(msg)
        self.rules: dict[str, DwellRule] = {r.rule: r for r in rules}
        self.zone_kinds: dict[str, str] = dict(zone_kinds or {})
        self._timers: dict[tuple[str, str], DwellTimer] = {}

    @classmethod
    def rebuild(
        cls,
        ledger: CustodyLedger,
        rules: Sequence[DwellRule] = DEFAULT_DWELL_RULES,
        zone_kinds: Mapping[str, str] | None = None,
    ) -> DwellTimers:
        """Timers of the ledger's open shipments, replayed from their accepted events."""
        timers = cls(rules, zone_kinds)
        for state in ledger.open_shipments():
            for rec in ledger.history(state.shipment):
                assert rec.kind is not None and rec.ts_ns is not None
                timers.on_custody(state.shipment, CustodyKind(rec.kind), rec.ts_ns, rec.zone)
        for timer in timers._timers.values():
            timer.warned = timer.violated = False  # the next check re-emits what is due
        return timers

    def restore(self, timers: Iterable[DwellTimer]) -> None:
        """Add saved timers (e.g. from :meth:`running`) whose rule still exists."""
        for t in timers:
            if t.rule in self.rules:
                self._timers[(t.shipment, t.rule)] = DwellTimer(
                    t.shipment, t.rule, t.started_ns, t.zone, t.warned, t.violated
                )

    def running(self, shipment: str | None = None) -> list[DwellTimer]:
        """Copies of the running timers (all, or one shipment's), by start time."""
        out = [
            DwellTimer(t.shipment, t.rule, t.started_ns, t.zone, t.warned, t.violated)
            for t in self._timers.values()
            if shipment is None or t.shipment == shipment
        ]
        return sorted(out, key=lambda t: (t.started_ns, t.shipment, t.rule))

    def on_custody(
        self, shipment: str, kind: CustodyKind, ts_ns: int, zone: str | None = None
    ) -> list[DwellEvent]:
        """An accepted custody event: stop the timers it ends, start the ones it begins."""
        kind = CustodyKind(kind)
        events: list[DwellEvent] = []
        for key, timer in sorted(self._timers.items(), key=lambda kv: kv[1].started_ns):
            if timer.shipment != shipment:
                continue
            rule = self.rules[timer.rule]
            if kind in rule.to_kinds or kind is CustodyKind.HANDED_TO_CARRIER:
                events.extend(self._fire_due(timer, rule, ts_ns))
                del self._timers[key]
                resolved = self._event("resolved", timer, rule, max(ts_ns, timer.started_ns))
                # It fired on the clock, but the step happened in time: recorded late.
                late = (timer.violated and not self._due(timer, rule.limit_ns, ts_ns)) or (
                    timer.warned and not self._due(timer, rule.warn_ns, ts_ns)
                )
                events.append(replace(resolved, stopped_by=kind, withdrawn=late))
        zone_kind = self.zone_kinds.get(zone) if zone is not None else None
        for rule in self.rules.values():
            key = (shipment, rule.rule)
            # A repeated start does not reset a running clock: the wait began earlier.
            if rule.applies_to(kind, zone_kind) and key not in self._timers:
                self._timers[key] = DwellTimer(shipment, rule.rule, ts_ns, zone)
        return events

    def check(self, now_ns: int) -> list[DwellEvent]:
        """Fire every threshold reached by now_ns that has not fired yet, in time order."""
        events: list[DwellEvent] = []
        for timer in self._timers.values():
            events.extend(self._fire_due(timer, self.rules[timer.rule], now_ns))
        events.sort(key=lambda e: (e.at_ns, e.shipment, e.rule))
        return events

    def next_deadline_ns(self) -> int | None:
        """The earliest threshold still to fire, or None when nothing is pending."""
        pending: list[int] = []
        for timer in self._timers.values():
            rule = self.rules[timer.rule]
            if not timer.warned:
                pending.append(timer.started_ns + rule.warn_ns)
            elif not timer.violated:
                pending.append(timer.started_ns + rule.limit_ns)
        return min(pending, default=None)

    @staticmethod
    def _due(timer: DwellTimer, offset_ns: int, at_ns: int) -> bool:
        return reached(at_ns - timer.started_ns, offset_ns)

    def _fire_due(self, timer: DwellTimer, rule: DwellRule, now_ns: int) -> list[DwellEvent]:
        events: list[DwellEvent] = []
        if not timer.warned and self._due(timer, rule.warn_ns, now_ns):
            timer.warned = True
            events.append(self._event("warn", timer, rule, timer.started_ns + rule.warn_ns))
        if not timer.violated and self._due(timer, rule.limit_ns, now_ns):
            timer.violated = True
            events.append(self._event("violated", timer, rule, timer.started_ns + rule.limit_ns))
        return events

    @staticmethod
    def _event(kind: DwellEventKind, timer: DwellTimer, rule: DwellRule, at_ns: int) -> DwellEvent:
        severity: SeverityName | None = None
        if kind == "warn":
            severity = rule.severity_warn
        elif kind == "violated":
            severity = rule.severity_violate
        return DwellEvent(
            kind=kind,
            shipment=timer.shipment,
            rule=rule.rule,
            started_ns=timer.started_ns,
            deadline_ns=timer.started_ns + rule.limit_ns,
            at_ns=at_ns,
            limit_s=rule.limit_s,
            elapsed_s=(at_ns - timer.started_ns) / NS_PER_S,
            severity=severity,
            zone=timer.zone,
        )


ZoneSamples = Callable[[str, int, int | None], Iterable[tuple[int, float]]]
"""``(zone, start_ns, end_ns or None) -> [(ts_ns, zone value °C), ...]`` in time order."""


class ShipmentBudgets:
    """Cumulative time out of range per shipment, over its custody in tracked zones."""

    def __init__(
        self,
        profiles: Mapping[str, ProductProfile],
        tracked_zones: Collection[str] | None = None,
        default_profile: str | None = None,
        zone_profiles: Mapping[str, str] | None = None,
        zone_max_gaps: Mapping[str, int] | None = None,
    ) -> None:
        if default_profile is not None and default_profile not in profiles:
            msg = f"default_profile {default_profile!r} is not a known profile"
            raise ValueError(msg)
        self.profiles = dict(profiles)
        self.tracked_zones = None if tracked_zones is None else frozenset(tracked_zones)
        self.default_profile = default_profile
        # A shipment that names no profile takes the profile of the zone it arrives in.
        self.zone_profiles = dict(zone_profiles or {})
        # How long a zone value stands (gateway.sop.intervals); None: until the next one.
        self.zone_max_gaps = dict(zone_max_gaps or {})
        self._budgets: dict[str, CumulativeBudget] = {}
        self._zone: dict[str, str] = {}  # shipment -> zone while counting
        self._latest: dict[str, tuple[int, float]] = {}  # zone -> last value seen

    def _tracked(self, zone: str) -> bool:
        return self.tracked_zones is None or zone in self.tracked_zones

    def on_custody(
        self, state_before: ShipmentState | None, event: CustodyEvent
    ) -> list[BudgetEvent]:
        """An accepted custody event: pause, resume or move the shipment's budget."""
        shipment = event.shipment
        budget = self._budgets.get(shipment)
        if budget is None:
            name = event.profile or (state_before.profile if state_before else None)
            name = name or self.zone_profiles.get(event.zone) or self.default_profile
            profile = self.profiles.get(name) if name is not None else None
            if profile is None:
                return []
            budget = CumulativeBudget(profile, shipment, in_custody=False)
            self._budgets[shipment] = budget
        counting = event.kind is not CustodyKind.HANDED_TO_CARRIER and self._tracked(event.zone)
        events: list[BudgetEvent] = []
        if not counting or (budget.in_custody and self._zone.get(shipment) != event.zone):
            # The samples of the zone it left count up to the event; then the new zone's.
            events.extend(budget.pause(event.ts_ns))
            self._zone.pop(shipment, None)
        if counting and not budget.in_custody:
            latest = self._latest.get(event.zone)
            budget.resume(
                event.ts_ns,
                latest[1] if latest else None,
                value_ts_ns=latest[0] if latest else None,
                max_gap_ns=self.zone_max_gaps.get(event.zone),
            )
            self._zone[shipment] = event.zone
        return events

    def observe_zone(
        self,
        zone: str,
        ts_ns: int,
        value_c: float,
        shipments_in_zone: Iterable[str] | None = None,
    ) -> list[BudgetEvent]:
        """A zone value at ts_ns, fed to the budgets of the shipments counting in that zone.

        ``shipments_in_zone`` (e.g. ``ledger.in_zone(zone)``) narrows the set; shipments
        this object does not place in the zone are skipped either way.
        """
        self._latest[zone] = (ts_ns, value_c)
        candidates = (
            [s for s, z in self._zone.items() if z == zone]
            if shipments_in_zone is None
            else [s for s in shipments_in_zone if self._zone.get(s) == zone]
        )
        events: list[BudgetEvent] = []
        gap = self.zone_max_gaps.get(zone)
        for shipment in candidates:
            events.extend(self._budgets[shipment].observe(ts_ns, value_c, max_gap_ns=gap))
        return events

    def check(self, now_ns: int) -> list[BudgetEvent]:
        """Timer hook: budgets that run out by now_ns while their zone stays out of range."""
        events: list[BudgetEvent] = []
        for budget in self._budgets.values():
            events.extend(budget.check(now_ns))
        return sorted(events, key=lambda e: (e.at_ns, e.subject))

    def next_deadline_ns(self) -> int | None:
        """When the first budget would run out if nothing changes, or None."""
        deadlines = [b.violation_deadline_ns for b in self._budgets.values()]
        return min((d for d in deadlines if d is not None), default=None)

    def remaining(self, shipment: str) -> float | None:
        """Seconds of budget left, or None for a shipment without a profile."""
        budget = self._budgets.get(shipment)
        return None if budget is None else budget.remaining_s

    def budget(self, shipment: str) -> CumulativeBudget | None:
        """The shipment's budget object (status views and the trace)."""
        return self._budgets.get(shipment)

    def replay(self, ledger: CustodyLedger, zone_samples: ZoneSamples) -> list[BudgetEvent]:
        """Rebuild the open shipments' budgets after a restart from custody and zone values.

        For each custody interval the shipment spent in a tracked zone, ``zone_samples``
        yields that zone's values; the returned events are the thresholds crossed on the
        way (the alert store dedupes them against alerts already raised).
        """
        events: list[BudgetEvent] = []
        for state in ledger.open_shipments():
            records = ledger.history(state.shipment)
            before: ShipmentState | None = None
            for i, rec in enumerate(records):
                event = rec.to_event()
                events.extend(self.on_custody(before, event))
                before = _state_of(event, before, rec.id)
                end = records[i + 1].ts_ns if i + 1 < len(records) else None
                if self._zone.get(state.shipment) != event.zone:
                    continue
                for ts_ns, value in zone_samples(event.zone, event.ts_ns, end):
                    events.extend(self.observe_zone(event.zone, ts_ns, value, [state.shipment]))
        return events


def _state_of(event: CustodyEvent, before: ShipmentState | None, event_id: int) -> ShipmentState:
    return ShipmentState(
        shipment=event.shipment,
        zone=event.zone,
        kind=event.kind,
        since_ns=event.ts_ns,
        profile=event.profile or (before.profile if before else None),
        carrier=event.carrier or (before.carrier if before else None),
        first_ns=before.first_ns if before else event.ts_ns,
        event_id=event_id,
    )
