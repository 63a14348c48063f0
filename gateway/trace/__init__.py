"""Shipment trace: the claim report of one shipment (``coldchain trace SHIPMENT``).

::

    source (InfluxSource | JournalSource)      gateway/trace/query.py   safe InfluxQL
        custody steps, zone readings, alerts
            -> analyze()                       gateway/trace/analysis.py  pure
                -> TraceResult -> PDF, CSV, JSON   report_pdf.py, outputs.py

:func:`build_trace` is the whole pipeline short of writing files; the CLI
(gateway/trace/cli.py) adds progress, the terminal summary and the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.config import GatewayConfig
from gateway.core.clock import NS_PER_S, iso_utc
from gateway.sop.profiles import ProductProfile
from gateway.sop.zones import zone_max_gaps
from gateway.trace.analysis import TraceResult, analyze, custody_spans
from gateway.trace.query import (
    CustodyStep,
    Progress,
    TraceInputError,
    TraceSource,
    validate_id,
)

DEFAULT_CONTEXT_S = 15 * 60.0

__all__ = [
    "DEFAULT_CONTEXT_S",
    "TraceInputError",
    "TraceResult",
    "build_trace",
    "reading_windows",
    "resolve_profile",
]


def reading_windows(
    spans: Sequence[tuple[str, int, int, bool]], context_ns: int
) -> list[tuple[str, int, int]]:
    """Per zone, the custody intervals widened by the context margin, overlaps merged."""
    by_zone: dict[str, list[tuple[int, int]]] = {}
    for zone, start, end, _ in spans:
        by_zone.setdefault(zone, []).append((start - context_ns, end + context_ns))
    out: list[tuple[str, int, int]] = []
    for zone, windows in by_zone.items():
        windows.sort()
        merged = [windows[0]]
        for a, b in windows[1:]:
            if a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out.extend((zone, a, b) for a, b in merged)
    return sorted(out, key=lambda w: (w[1], w[0]))


def resolve_profile(
    config: GatewayConfig, steps: Sequence[CustodyStep], name: str | None = None
) -> ProductProfile:
    """The profile named, else the shipment's (first step naming one), else its first zone's."""
    profiles = config.all_profiles()
    if name is None:
        name = next((s.profile for s in steps if s.profile), None)
    if name is None and steps:
        zone = next((z for z in config.zones if z.id == steps[0].zone), None)
        name = zone.profile if zone is not None else None
    if name is None:
        msg = "the shipment names no product profile and neither does its first zone; use --profile"
        raise TraceInputError(msg)
    if name not in profiles:
        msg = f"unknown profile {name!r} (known: {', '.join(sorted(profiles))})"
        raise TraceInputError(msg)
    return profiles[name]


def build_trace(
    source: TraceSource,
    config: GatewayConfig,
    shipment: str,
    *,
    as_of_ns: int,
    profile: str | None = None,
    chain: Any | None = None,
    context_s: float = DEFAULT_CONTEXT_S,
    progress: Progress | None = None,
) -> TraceResult:
    """Fetch a shipment's data from the source and analyse it (no files written).

    TraceInputError for an invalid id, an unknown shipment ("unknown shipment X: no custody
    events") or an unresolvable profile; the source's TraceSourceError when it fails.
    """
    validate_id(shipment, "shipment id")
    steps = source.custody_events(shipment)
    if not steps:
        msg = f"unknown shipment {shipment}: no custody events"
        raise TraceInputError(msg)
    steps = [s for s in steps if s.ts_ns <= as_of_ns]  # nothing after --as-of is read
    if not steps:
        msg = f"unknown shipment {shipment}: no custody events up to {iso_utc(as_of_ns)}"
        raise TraceInputError(msg)
    chosen = resolve_profile(config, steps, profile)
    spans = custody_spans(steps, as_of_ns)
    # The context must reach back to the value standing at each arrival (its max gap).
    gaps = zone_max_gaps(config.zones, config.sensors, config.all_profiles())
    context_ns = max([round(context_s * NS_PER_S), *gaps.values()])
    windows = [
        (zone, a, min(b, as_of_ns))
        for zone, a, b in reading_windows(spans, context_ns)
        if a < min(b, as_of_ns)
    ]
    points = source.readings_many(windows, progress=progress)
    zones = {z for z, _, _, _ in spans}
    sensors = {s.id for s in config.sensors if s.zone in zones}
    start = min((s[1] for s in spans), default=steps[0].ts_ns)
    end = max((s[2] for s in spans), default=steps[-1].ts_ns)
    alerts = source.alerts({shipment} | zones | sensors, start, end, as_of_ns=as_of_ns)
    return analyze(
        shipment,
        source.hub,
        steps,
        points,
        alerts,
        chosen,
        config.sensors,
        config.zones,
        as_of_ns=as_of_ns,
        chain=chain,
        dwell_rules=config.dwell_rules,
        timezone=config.hub.timezone,
        profiles=config.all_profiles(),
        gap_modes={
            z.id: config.health.data_gap_zones.get(z.id, config.health.data_gap)
            for z in config.zones
        },
    )
