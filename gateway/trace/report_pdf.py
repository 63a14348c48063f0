"""The claim report as a PDF (reportlab): verdict, chart and tables.

Page 1: shipment, verdict and reasons, profile and hub; the chart of the zone temperature
over the custody span with the profile's limit lines, a vertical marker and label at each
custody step, excursions shaded red and data gaps shaded grey. Then the tables: custody
timeline, time per zone, statistics (MKT with dH and window), excursions, budget, dwell,
alarm log, data gaps and sensor faults, sensors with calibration ids, chain verification.
Times are UTC; the hub's time zone is stated in the header.

The chart downsamples to a min/max pair per bucket, so a 14-day shipment at 1-minute
readings draws as fast as a short one and keeps every peak.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    LayoutError,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from gateway.core.clock import NS_PER_S, iso_utc
from gateway.core.files import SHARED, write_atomic
from gateway.core.text import printable
from gateway.trace.analysis import TraceResult

CHART_BUCKETS = 600
_VERDICT_COLOURS = {
    "accept": colors.HexColor("#1b7a2f"),
    "review": colors.HexColor("#b26a00"),
    "reject": colors.HexColor("#b00020"),
}
_ZONE_COLOURS = [
    colors.HexColor(c)
    for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
]


def _t(ns: int | None, timezone: str | None = None) -> str:
    """UTC, and the hub's local time beside it (a claims handler reads local times)."""
    if ns is None:
        return "-"
    text = iso_utc(ns).replace("T", " ")
    if timezone:
        try:
            local = dt.datetime.fromtimestamp(ns / NS_PER_S, tz=ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            return text
        text += f" ({local:%H:%M:%S} {local.tzname()})"
    return text


def _c(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} °C"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


def downsample(
    series: Sequence[tuple[int, float, str]], buckets: int = CHART_BUCKETS
) -> list[tuple[int, float, str]]:
    """At most two points per time bucket (the lowest and the highest), order kept."""
    if len(series) <= 2 * buckets:
        return list(series)
    t0, t1 = series[0][0], series[-1][0]
    width = max(1, (t1 - t0) // buckets + 1)
    out: list[tuple[int, float, str]] = []
    bucket: list[tuple[int, float, str]] = []
    current = -1
    for point in series:
        b = (point[0] - t0) // width
        if b != current and bucket:
            out.extend(_extremes(bucket))
            bucket = []
        current = b
        bucket.append(point)
    if bucket:
        out.extend(_extremes(bucket))
    return out


def _extremes(bucket: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    lo = min(bucket, key=lambda p: p[1])
    hi = max(bucket, key=lambda p: p[1])
    if lo is hi:
        return [lo]
    return [lo, hi] if lo[0] <= hi[0] else [hi, lo]


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(1, target)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50):
        if step >= raw:
            return step
    return 100.0


def _band(x0: float, x1: float, bottom: float, top: float, fill: colors.Color) -> Rect:
    band = Rect(x0, bottom, max(0.5, x1 - x0), top - bottom)
    band.fillColor = fill
    band.strokeColor = None
    return band


def chart(result: TraceResult, width: float = 180 * mm, height: float = 85 * mm) -> Drawing:
    """Temperature vs time with limits, custody markers, excursions and gaps."""
    d = Drawing(width, height)
    left, right, bottom, top = 34.0, width - 8, 28.0, height - 16
    t0, t1 = result.window_start_ns, max(result.window_end_ns, result.window_start_ns + 1)
    temps = [t for _, t, _ in result.series]
    p = result.profile
    limits = [v for v in (p.min_c, p.max_c) if v is not None]
    lo = min([*temps, *limits]) - 1.0
    hi = max([*temps, *limits]) + 1.0

    def x(ns: int) -> float:
        return left + (ns - t0) / (t1 - t0) * (right - left)

    def y(temp: float) -> float:
        return bottom + (temp - lo) / (hi - lo) * (top - bottom)

    for g in result.gaps:
        d.add(_band(x(g.start_ns), x(g.end_ns), bottom, top, colors.HexColor("#d0d0d0")))
    for e in result.excursions:
        d.add(_band(x(e.start_ns), x(e.end_ns), bottom, top, colors.HexColor("#f8c8c8")))
    frame = Rect(left, bottom, right - left, top - bottom)
    frame.fillColor = None
    frame.strokeWidth = 0.5
    d.add(frame)

    step = _nice_step(hi - lo)
    tick = step * int(lo / step)
    while tick <= hi:
        if tick >= lo:
            d.add(Line(left - 3, y(tick), left, y(tick), strokeWidth=0.5))
            d.add(String(left - 4, y(tick) - 3, f"{tick:g}", fontSize=7, textAnchor="end"))
        tick += step
    d.add(String(2, top + 6, "°C", fontSize=7))
    for i in range(5):
        ns = t0 + (t1 - t0) * i // 4
        d.add(Line(x(ns), bottom, x(ns), bottom - 3, strokeWidth=0.5))
        label = iso_utc(ns)[5:16].replace("T", " ")
        d.add(String(x(ns), bottom - 11, label, fontSize=6.5, textAnchor="middle"))
    d.add(String(right, 2, "time (UTC)", fontSize=7, textAnchor="end"))

    for limit in limits:
        d.add(
            Line(
                left,
                y(limit),
                right,
                y(limit),
                strokeColor=colors.red,
                strokeWidth=0.8,
                strokeDashArray=[4, 2],
            )
        )
        d.add(String(right - 2, y(limit) + 2, f"{limit:g} °C", fontSize=6.5, textAnchor="end"))

    zones = list(dict.fromkeys(s.zone for s in result.spans))
    colour = {z: _ZONE_COLOURS[i % len(_ZONE_COLOURS)] for i, z in enumerate(zones)}
    points = downsample(result.series)
    run: list[float] = []
    run_zone = None
    for ts, temp, zone in points:
        if zone != run_zone and run:
            d.add(PolyLine(run, strokeColor=colour[run_zone or zone], strokeWidth=0.8))
            run = run[-2:]
        run_zone = zone
        run.extend((x(ts), y(temp)))
    if len(run) >= 4 and run_zone is not None:
        d.add(PolyLine(run, strokeColor=colour[run_zone], strokeWidth=0.8))

    for i, h in enumerate(result.timeline):
        xm = x(h.ts_ns)
        d.add(Line(xm, bottom, xm, top, strokeColor=colors.HexColor("#555555"), strokeWidth=0.4))
        label = f"{h.kind} @ {h.zone}"
        near_right = xm > left + 0.8 * (right - left)
        d.add(
            String(
                xm - 1.5 if near_right else xm + 1.5,
                top + 2 + 7 * (i % 2),
                label,
                fontSize=5.5,
                textAnchor="end" if near_right else "start",
            )
        )
    return d


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float]) -> Table:
    style = ParagraphStyle("cell", fontName="Helvetica", fontSize=7, leading=8.5)
    head = ParagraphStyle("head", parent=style, fontName="Helvetica-Bold")
    data = [[Paragraph(escape(h), head) for h in header]]
    data += [[Paragraph(_cell(c), style) for c in row] for row in rows]
    if not rows:
        data.append([Paragraph("none", style)] + [Paragraph("", style)] * (len(header) - 1))
    t = Table(data, colWidths=[w * mm for w in widths], repeatRows=1)
    t.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return t


class NumberedCanvas(Canvas):
    """A canvas that knows the page count: footers say "page x of y" (one pass)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()  # type: ignore[attr-defined]

    def drawString(self, x: float, y: float, text: str, *args: Any, **kwargs: Any) -> None:
        # The footer's total is unknown until the end: mark it, replace it on save.
        if "{total}" in text:
            self._footers = [*getattr(self, "_footers", []), (len(self._pages), x, y, text)]
            return
        super().drawString(x, y, text, *args, **kwargs)

    def save(self) -> None:
        total = len(self._pages)
        footers = getattr(self, "_footers", [])
        for index, state in enumerate(self._pages):
            self.__dict__.update(state)
            for page, x, y, text in footers:
                if page == index:
                    self.setFont("Helvetica", 7)
                    super().drawString(x, y, text.replace("{total}", str(total)))
            super().showPage()
        super().save()


CELL_LIMIT = 300
"""Characters of one table value (a note, an actor) before it is cut with a marker."""
FALLBACK_CELL_LIMIT = 60
_cell_limit: ContextVar[int] = ContextVar("cell_limit", default=CELL_LIMIT)


def _cell(value: str) -> str:
    """A table value as Paragraph markup: controls escaped, cut with a visible marker.

    Values come from outside (an actor, a note, an acknowledgement): a 70 KB one made
    one table row taller than a page, and reportlab refused the whole report.
    """
    limit = _cell_limit.get()
    text = printable(value)
    if len(text) > limit:
        text = f"{text[:limit]} [... {len(text) - limit} more characters in the JSON summary]"
    return escape(text)


def write_pdf(
    result: TraceResult,
    path: str | Path,
    evidence: Sequence[tuple[str, str]] | None = None,
) -> None:
    """Render the claim report to ``path``; ``evidence``: the report's identity rows.

    Whole or not at all, never through a symlink (gateway.core.files). Long values are
    cut with a marker; if the layout still fails (a value reportlab cannot place), the
    report is rendered again with every value cut short and says so, so a claim always
    gets its report.
    """
    buffer = io.BytesIO()
    try:
        _render(result, buffer, evidence, shortened=False)
    except LayoutError:
        buffer = io.BytesIO()
        token = _cell_limit.set(FALLBACK_CELL_LIMIT)
        try:
            _render(result, buffer, evidence, shortened=True)
        finally:
            _cell_limit.reset(token)
    write_atomic(path, buffer.getvalue(), SHARED)


def _render(
    result: TraceResult,
    out: io.BytesIO,
    evidence: Sequence[tuple[str, str]] | None,
    *,
    shortened: bool,
) -> None:
    """Lay the report out into ``out``; LayoutError when a flowable cannot be placed."""

    def t(ns: int | None) -> str:
        return _t(ns, result.timezone)

    styles = getSampleStyleSheet()
    h1, body = styles["Title"], styles["BodyText"]
    # A heading never ends a page: it moves to the next one with what it introduces.
    h2 = ParagraphStyle("heading-kept", parent=styles["Heading2"], keepWithNext=1)
    p = result.profile
    verdict_style = ParagraphStyle(
        "verdict",
        parent=styles["Heading1"],
        textColor=_VERDICT_COLOURS[result.verdict],
    )
    limits = " to ".join(f"{v:g} °C" for v in (p.min_c, p.max_c) if v is not None)
    if p.min_c is None:
        limits = f"at most {p.max_c:g} °C"
    elif p.max_c is None:
        limits = f"at least {p.min_c:g} °C"
    story: list[Flowable] = [
        Paragraph(f"Shipment trace: {escape(result.shipment)}", h1),
        Paragraph(f"VERDICT: {result.verdict.upper()}", verdict_style),
    ]
    if shortened:
        story.append(
            Paragraph(
                "Some values were too long to lay out and are shortened here; the JSON"
                " summary has them in full.",
                body,
            )
        )
    for r in result.reasons:
        story.append(Paragraph(f"<b>{r.level}</b>: {_cell(r.text)}", body))
    story += [
        Spacer(1, 3 * mm),
        Paragraph(
            f"Hub <b>{escape(result.hub)}</b> (time zone {escape(result.timezone)}; times are"
            f" UTC with the hub's local time in brackets). Profile <b>{escape(p.name)}</b>:"
            f" {limits}, alarm delay"
            f" {_dur(p.alarm_delay_s)}, time-out-of-range budget {_dur(p.budget_s)}"
            f" (warn at {p.budget_warn_fraction:.0%}), hysteresis {p.hysteresis_c:g} °C."
            f" Custody from {t(result.window_start_ns)} to {t(result.window_end_ns)}"
            f"{' (still open)' if result.custody_open else ''}. Trace made {t(result.as_of_ns)}.",
            body,
        ),
        Spacer(1, 2 * mm),
        chart(result),
        Paragraph(
            "Zone temperature (worst sensor) while in custody; dashed red: profile limits;"
            " vertical lines: custody steps; red band: excursion; grey band: data gap"
            " (temperature unknown).",
            ParagraphStyle("caption", parent=body, fontSize=7, leading=8),
        ),
    ]

    s = result.stats
    story += [
        Paragraph("Custody timeline", h2),
        _table(
            ["time (UTC)", "event", "zone", "who", "carrier", "temp at handoff", "time to next"],
            [
                [
                    t(h.ts_ns),
                    h.kind,
                    f"{h.zone} ({h.zone_kind or '?'})",
                    h.actor + (f" - note: {h.note}" if h.note else ""),
                    h.carrier or "",
                    _c(h.temp_c) + ("" if h.temp_source != "readings" else " (readings)"),
                    _dur(h.until_next_s),
                ]
                for h in result.timeline
            ],
            [30, 24, 32, 24, 20, 26, 20],
        ),
        Paragraph("Time per zone", h2),
        _table(
            ["zone", "from", "to", "time", "sensors", "readings", "min / max"],
            [
                [
                    f"{sp.zone} ({sp.zone_kind or '?'})",
                    t(sp.start_ns),
                    t(sp.end_ns) + (" (open)" if sp.open else ""),
                    _dur(sp.duration_s),
                    ", ".join(sp.sensors),
                    f"{sp.usable_readings} usable of {sp.readings}",
                    f"{_c(sp.min_c)} / {_c(sp.max_c)}",
                ]
                for sp in result.spans
            ],
            [28, 28, 30, 16, 28, 22, 26],
        ),
        Paragraph("Statistics", h2),
        _table(
            ["measure", "value"],
            [
                [
                    "minimum",
                    "unknown"
                    if s.min is None
                    else f"{_c(s.min.temp_c)} at {t(s.min.ts_ns)} ({s.min.zone}, {s.min.sensor})",
                ],
                [
                    "maximum",
                    "unknown"
                    if s.max is None
                    else f"{_c(s.max.temp_c)} at {t(s.max.ts_ns)} ({s.max.zone}, {s.max.sensor})",
                ],
                ["time-weighted average", _c(s.average_c)],
                [
                    "mean kinetic temperature",
                    f"{_c(s.mkt_c)} (dH = {s.dh_kj_per_mol:g} kJ/mol, dH/R = {s.dh_over_r_k:.0f}"
                    f" K; window: the custody span {t(s.window_start_ns)} to"
                    f" {t(s.window_end_ns)}, {_dur(s.covered_s)} with data)",
                ],
                [
                    f"MKT, worst {s.mkt_window_s / 3600:g} h rolling window",
                    "custody shorter than half the window"
                    if s.mkt_rolling_c is None
                    else f"{_c(s.mkt_rolling_c)} (window ending {t(s.mkt_rolling_end_ns)})",
                ],
                [
                    "time out of range",
                    f"{_dur(result.budget.spent_s)} of {_dur(result.budget.budget_s)} budget"
                    f" ({result.budget.state}; remaining {_dur(result.budget.remaining_s)})",
                ],
            ],
            [45, 135],
        ),
        Paragraph("Excursions", h2),
        _table(
            ["direction", "start", "end", "duration", "peak", "zones", "alarm"],
            [
                [
                    x.direction,
                    t(x.start_ns),
                    t(x.end_ns) + (" (open)" if x.open else ""),
                    _dur(x.duration_s),
                    _c(x.peak_c),
                    ", ".join(x.zones),
                    "yes" if x.alarmed else "no (under delay)",
                ]
                for x in result.excursions
            ],
            [18, 30, 32, 18, 20, 36, 26],
        ),
        Paragraph("Dwell", h2),
        _table(
            ["rule", "from", "to", "time", "limit", "status"],
            [
                [
                    d.rule,
                    f"{d.from_kind} {t(d.from_ns)}",
                    "-" if d.to_kind is None else f"{d.to_kind} {t(d.to_ns)}",
                    _dur(d.duration_s),
                    _dur(d.limit_s),
                    d.status,
                ]
                for d in result.dwell
            ],
            [40, 42, 42, 18, 18, 20],
        ),
        Paragraph("Alarm log", h2),
        _table(
            ["alert", "severity", "subject", "started", "acknowledged", "cleared", "state"],
            [
                [
                    f"{a.rule} ({a.alert_id})",
                    a.severity,
                    a.subject,
                    t(a.started_ns),
                    "no"
                    if a.acknowledged_ns is None and a.acknowledged_by is None
                    else f"{t(a.acknowledged_ns)} by {a.acknowledged_by or '(not recorded)'}"
                    + (f': "{a.ack_note}"' if a.ack_note else ""),
                    t(a.cleared_ns),
                    a.state,
                ]
                for a in result.alarms
            ],
            [40, 16, 20, 28, 36, 26, 14],
        ),
        Paragraph("Notifications: who was told, on which channel, when, and the result", h2),
        _table(
            ["alert", "when", "contact", "channel", "what", "result"],
            [
                [
                    a.alert_id,
                    t(n.at_ns),
                    n.contact or "-",
                    n.channel or "-",
                    f"{n.kind} L{n.level}" if n.level else n.kind,
                    f"{n.result}: {n.detail}",
                ]
                for a in result.alarms
                for n in a.notifications
            ],
            [40, 28, 20, 16, 22, 54],
        ),
        Paragraph("Data gaps (temperature unknown) and sensor faults", h2),
        _table(
            ["what", "zone / sensor", "from", "to", "duration", "detail"],
            [
                ["data gap", g.zone, t(g.start_ns), t(g.end_ns), _dur(g.duration_s), g.reason]
                for g in result.gaps
            ]
            + [
                [
                    f"sensor {f.kind}",
                    f"{f.zone} / {f.sensor}",
                    t(f.start_ns),
                    t(f.end_ns),
                    _dur((f.end_ns - f.start_ns) / NS_PER_S),
                    f.detail,
                ]
                for f in result.faults
            ],
            [18, 28, 30, 30, 16, 58],
        ),
        Paragraph("Sensors", h2),
        _table(
            [
                "sensor",
                "zone",
                "model / serial",
                "accuracy",
                "calibration (due)",
                "interval",
                "readings",
                "flagged",
            ],
            [
                [
                    u.sensor + ("" if u.configured else " (not in config)"),
                    u.zone,
                    " / ".join(x for x in (u.model, u.serial) if x) or "-",
                    f"±{u.accuracy_c:g} °C" if u.accuracy_c is not None else "-",
                    (u.calibration_id or "none recorded")
                    + (f" (due {u.calibration_due})" if u.calibration_due else ""),
                    f"{u.interval_s:g} s",
                    str(u.readings),
                    str(u.flagged),
                ]
                for u in result.sensors
            ],
            [28, 24, 28, 16, 38, 14, 16, 16],
        ),
        Paragraph("Custody record chain", h2),
        _table(
            ["status", "first bad record (seq)", "detail"],
            [
                [
                    result.chain.status.replace("_", " "),
                    "-" if result.chain.first_bad_seq is None else str(result.chain.first_bad_seq),
                    result.chain.reason,
                ]
            ],
            [30, 36, 114],
        ),
    ]
    if evidence:
        story += [
            Paragraph("Report evidence", h2),
            _table(["item", "value"], [[k, v] for k, v in evidence], [40, 140]),
            Paragraph(
                "Check with <b>coldchain verify-report</b> and the hub's published public key;"
                " any PAdES validator shows the signature.",
                body,
            ),
        ]

    def footer(canvas: object, doc: SimpleDocTemplate) -> None:
        c = canvas
        c.saveState()  # type: ignore[attr-defined]
        c.setFont("Helvetica", 7)  # type: ignore[attr-defined]
        c.drawString(  # type: ignore[attr-defined]
            15 * mm,
            8 * mm,
            f"{result.shipment} - {result.verdict.upper()} - hub {result.hub} - page {doc.page}"
            + " of {total}",  # NumberedCanvas fills in the total
        )
        c.restoreState()  # type: ignore[attr-defined]

    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=f"Shipment trace {result.shipment}",
        author=f"coldchain gateway, hub {result.hub}",
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer, canvasmaker=NumberedCanvas)
