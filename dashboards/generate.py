"""Generate the cold-chain Grafana dashboards (``dashboards/json/*.json``) from code.

Run ``python dashboards/generate.py`` after changing this file; the test suite checks
that the committed JSON is what this module produces (``tests/dashboards``).

Plain dicts, no SDK: the dashboards are small, the JSON model is stable, and keeping the
queries next to the panel layout in one file is what keeps them consistent. Every query is
raw InfluxQL against the provisioned datasource ``coldchain-influxdb`` (InfluxDB 1.x API;
2.x/3.x through their v1-compatible ``/query``), see ``docs/dashboards.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.core.model import UNUSABLE_MASK

JSON = dict[str, Any]

OUT_DIR = Path(__file__).resolve().parent / "json"

DATASOURCE: JSON = {"type": "influxdb", "uid": "coldchain-influxdb"}
"""Every panel, variable and annotation uses the provisioned datasource by uid."""

SCHEMA_VERSION = 39
TAGS = ["coldchain"]

QUALITY_UNUSABLE = UNUSABLE_MASK
"""SENTINEL | IMPOSSIBLE | SPIKE (gateway.core.model.Quality): readings the views leave out."""

GOOD = f'("quality" & {QUALITY_UNUSABLE}) = 0'
HUB = '"hub" =~ /^$hub$/'
ZONE = '"zone" =~ /^$zone$/'
STALE_LOOKBACK = "7d"
"""How far back the staleness table looks for a sensor's last reading (any time range)."""

LOW_BATTERY_V = 3.3
"""Default ``[health] low_battery_v``: the battery panels draw it as a threshold line."""

LIMIT_MIN_OPTIONS = ["2", "0.5", "15", "-25", "-40"]
LIMIT_MAX_OPTIONS = ["8", "1.5", "5", "25", "-15", "-18"]
"""Lower/upper limit lines (°C); defaults are the chilled band 2..8 °C (DESIGN.md profiles:
chilled 2..8, flowers 0.5..1.5, cold holding <= 5, controlled room 15..25, frozen <= -18,
frozen transport <= -15; profiles without a lower limit use -25 or -40 as a floor line)."""

DWELL_RULES = r"/^(dwell\..*|budget)$/"
HEALTH_RULES = r"/^(sensor_.*|battery_low|checksum_rate|data_gap)$/"


# -- building blocks --------------------------------------------------------------------


def target(query: str, ref: str = "A", *, table: bool = False, alias: str | None = None) -> JSON:
    """One raw InfluxQL query of a panel."""
    t: JSON = {
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "refId": ref,
        "resultFormat": "table" if table else "time_series",
    }
    if alias is not None:
        t["alias"] = alias
    return t


def grid(x: int, y: int, w: int, h: int) -> JSON:
    """A panel's position on the 24-column grid."""
    return {"h": h, "w": w, "x": x, "y": y}


def _limit_overrides() -> list[JSON]:
    return [
        {
            "matcher": {"id": "byRegexp", "options": "^(min|max) limit$"},
            "properties": [
                {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                {"id": "custom.fillOpacity", "value": 0},
                {"id": "custom.lineWidth", "value": 2},
            ],
        }
    ]


def timeseries(
    title: str,
    targets: Sequence[JSON],
    pos: JSON,
    *,
    unit: str = "short",
    description: str = "",
    draw: str = "line",
    overrides: Sequence[JSON] = (),
    thresholds: Sequence[JSON] | None = None,
    extra: JSON | None = None,
) -> JSON:
    """A time series panel (line, bars or points)."""
    custom: JSON = {
        "drawStyle": draw,
        "fillOpacity": 60 if draw == "bars" else 10,
        "lineWidth": 1,
        "pointSize": 6,
        "showPoints": "always" if draw == "points" else "auto",
        "spanNulls": False,
    }
    defaults: JSON = {"custom": custom, "unit": unit}
    if thresholds is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
        defaults["thresholds"] = {"mode": "absolute", "steps": list(thresholds)}
    panel: JSON = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }
    if extra:
        panel.update(extra)
    return panel


def table(
    title: str,
    targets: Sequence[JSON],
    pos: JSON,
    *,
    description: str = "",
    overrides: Sequence[JSON] = (),
    transformations: Sequence[JSON] = (),
) -> JSON:
    """A table panel (queries return resultFormat table)."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": list(targets),
        "fieldConfig": {"defaults": {}, "overrides": list(overrides)},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": list(transformations),
    }


def stat(title: str, targets: Sequence[JSON], pos: JSON, *, unit: str = "short") -> JSON:
    """A stat panel showing the last value."""
    return {
        "type": "stat",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": list(targets),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        },
    }


def column_unit(name: str, unit: str) -> JSON:
    """Field override: a column's unit (e.g. a ms timestamp shown as a date)."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "unit", "value": unit}],
    }


def merge_series() -> JSON:
    """Transformation: one table out of the per-tag series InfluxDB returns."""
    return {"id": "merge", "options": {}}


def hub_variable() -> JSON:
    """``hub``: the hubs that have readings."""
    return query_variable("hub", "Hub", 'SHOW TAG VALUES FROM "reading" WITH KEY = "hub"')


def zone_variable() -> JSON:
    """``zone`` (multi, All): the zones of the selected hub."""
    return query_variable(
        "zone",
        "Zone",
        f'SHOW TAG VALUES FROM "reading" WITH KEY = "zone" WHERE {HUB}',
        multi=True,
    )


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False, hide: int = 0
) -> JSON:
    """A template variable filled by an InfluxQL SHOW query."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [],
        "hide": hide,
        "regex": "",
    }


def custom_variable(name: str, label: str, options: Sequence[str], description: str) -> JSON:
    """A custom variable (a fixed list of values, the first one current)."""
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "description": description,
        "query": ",".join(options),
        "current": {"selected": True, "text": options[0], "value": options[0]},
        "options": [{"selected": i == 0, "text": o, "value": o} for i, o in enumerate(options)],
        "multi": False,
        "includeAll": False,
        "hide": 0,
    }


def limit_variables() -> list[JSON]:
    """``limit_min``/``limit_max``: the band the zone temperature panels draw (°C)."""
    return [
        custom_variable(
            "limit_min", "Lower limit °C", LIMIT_MIN_OPTIONS, "Lower limit line (profile min)"
        ),
        custom_variable(
            "limit_max", "Upper limit °C", LIMIT_MAX_OPTIONS, "Upper limit line (profile max)"
        ),
    ]


def custody_annotation(where: str) -> JSON:
    """Custody events as annotations (text: event at zone by actor)."""
    query = (
        f'SELECT "actor", "event", "zone", "shipment" FROM "custody" WHERE {where} AND $timeFilter'
    )
    return {
        "name": "Custody events",
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "purple",
        "query": query,
        "textColumn": "actor",
        "tagsColumn": "shipment,event,zone",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[JSON],
    variables: Sequence[JSON],
    annotations: Sequence[JSON] = (),
    time_from: str = "now-6h",
) -> JSON:
    """A dashboard; panel ids are assigned in order (1, 2, ...)."""
    numbered = [{"id": i, **p} for i, p in enumerate(panels, start=1)]
    builtin: JSON = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "title": "Cold chain",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": [builtin, *annotations]},
        "templating": {"list": list(variables)},
        "panels": numbered,
    }


# -- shared queries ---------------------------------------------------------------------


def zone_temperature_targets(zone_filter: str) -> list[JSON]:
    """Mean temperature per zone per interval (usable readings only) plus the limit lines."""
    where = f"{HUB} AND {zone_filter} AND {GOOD} AND $timeFilter"
    return [
        target(
            f'SELECT mean("temp_c") FROM "reading" WHERE {where} '
            'GROUP BY time($__interval), "zone" fill(none)',
            "A",
            alias="$tag_zone",
        ),
        target(
            f'SELECT mean("temp_c") * 0 + $limit_min AS "min limit" FROM "reading" '
            f"WHERE {where} GROUP BY time($__interval) fill(previous)",
            "B",
            alias="min limit",
        ),
        target(
            f'SELECT mean("temp_c") * 0 + $limit_max AS "max limit" FROM "reading" '
            f"WHERE {where} GROUP BY time($__interval) fill(previous)",
            "C",
            alias="max limit",
        ),
    ]


def latest_alerts_query(rule_filter: str, subject_filter: str = "") -> str:
    """Latest state per (rule, subject), cleared ones left out: the active alerts.

    One alert is active per rule and subject (gateway.alerts.store), so the newest point of a
    (rule, subject) series is its alert's current state. No time filter: an alert raised
    before the dashboard's time range is still active.
    """
    where = f"{HUB} AND {rule_filter}" + (f" AND {subject_filter}" if subject_filter else "")
    inner = (
        'SELECT last("state") AS "state", "severity", "alert_id", "value", "limit", '
        f'"started_at" FROM "alert" WHERE {where} GROUP BY "rule", "subject"'
    )
    return (
        'SELECT "state", "severity", "alert_id", "value", "limit", '
        f'"started_at" / 1000000 AS "started" FROM ({inner}) '
        'WHERE "state" != \'cleared\' GROUP BY "rule", "subject"'
    )


def alerts_table(
    title: str, query: str, pos: JSON, description: str, value_unit: str | None = None
) -> JSON:
    """A table of alert rows with the start time readable (and value/limit units)."""
    overrides = [column_unit("started", "dateTimeAsIso"), column_unit("Time", "dateTimeAsIso")]
    if value_unit is not None:
        overrides += [column_unit("value", value_unit), column_unit("limit", value_unit)]
    return table(
        title,
        [target(query, table=True)],
        pos,
        description=description,
        overrides=overrides,
        transformations=[merge_series()],
    )


# -- the dashboards ---------------------------------------------------------------------


def hub_overview() -> JSON:
    """Zones against their band, active alerts, excursions, dwell timers, custody."""
    panels = [
        timeseries(
            "Zone temperatures",
            zone_temperature_targets(ZONE),
            grid(0, 0, 24, 9),
            unit="celsius",
            description=(
                "Mean temperature per zone per interval, usable readings only "
                f"(quality & {QUALITY_UNUSABLE} = 0). Red dashed lines: $limit_min and "
                "$limit_max (variables, default chilled 2..8 °C)."
            ),
            overrides=_limit_overrides(),
        ),
        timeseries(
            "$zone",
            zone_temperature_targets('"zone" =~ /^$zone$/'),
            grid(0, 9, 8, 7),
            unit="celsius",
            description="One panel per selected zone (repeated over $zone).",
            overrides=_limit_overrides(),
            extra={"repeat": "zone", "repeatDirection": "h", "maxPerRow": 3},
        ),
        alerts_table(
            "Active alerts",
            latest_alerts_query('"rule" =~ /.+/'),
            grid(0, 16, 24, 8),
            "Latest state of every alert (per rule and subject) that is not cleared.",
        ),
        timeseries(
            "Excursions raised",
            [
                target(
                    'SELECT count("alert_id") FROM "alert" WHERE '
                    f'{HUB} AND "rule" = \'excursion\' AND "subject" =~ /^$zone$/ AND '
                    "\"state\" = 'raised' AND $timeFilter "
                    'GROUP BY time($__interval), "subject" fill(none)',
                    alias="$tag_subject",
                )
            ],
            grid(0, 24, 12, 8),
            draw="bars",
            description="Excursion alerts raised per interval, by zone.",
        ),
        timeseries(
            "Excursion alert points",
            [
                target(
                    'SELECT "value" FROM "alert" WHERE '
                    f'{HUB} AND "rule" = \'excursion\' AND "subject" =~ /^$zone$/ AND '
                    '$timeFilter GROUP BY "subject", "severity"',
                    alias="$tag_subject ($tag_severity)",
                )
            ],
            grid(12, 24, 12, 8),
            unit="celsius",
            draw="points",
            description="Temperature at each excursion state change (raised, escalated, cleared).",
        ),
        alerts_table(
            "Dwell timers and budgets (shipments on site)",
            latest_alerts_query(f'"rule" =~ {DWELL_RULES}'),
            grid(0, 32, 24, 8),
            "Active dwell (dwell.<from>.<to>) and cumulative budget alerts per shipment: "
            "value is the time waited or spent (s), limit the allowed time (s).",
            value_unit="s",
        ),
    ]
    return dashboard(
        "coldchain-hub-overview",
        "Cold chain: hub overview",
        "Zone temperatures against their band, active alerts, excursions and dwell timers.",
        panels,
        [hub_variable(), zone_variable(), *limit_variables()],
        [custody_annotation(HUB)],
    )


def sensor_health() -> JSON:
    """Staleness, battery, checksum errors and health alerts."""
    panels = [
        table(
            "Last reading per sensor (staleness)",
            [
                target(
                    'SELECT last("temp_c") AS "temp_c", "battery_v", "quality" FROM "reading" '
                    f"WHERE {HUB} AND {ZONE} AND time > now() - {STALE_LOOKBACK} "
                    'GROUP BY "sensor", "zone"',
                    table=True,
                )
            ],
            grid(0, 0, 12, 10),
            description=(
                f"Newest reading of every sensor in the last {STALE_LOOKBACK} (independent of "
                "the time picker); 'Time' shows how long ago it arrived."
            ),
            overrides=[column_unit("Time", "dateTimeFromNow")],
            transformations=[merge_series()],
        ),
        alerts_table(
            "Active sensor health alerts",
            latest_alerts_query(f'"rule" =~ {HEALTH_RULES}'),
            grid(12, 0, 12, 10),
            "sensor_stale/fault/spike/frozen, battery_low (subject = sensor), checksum_rate "
            "(subject = driver), data_gap (subject = zone).",
        ),
        timeseries(
            "Battery",
            [
                target(
                    f'SELECT mean("battery_v") FROM "reading" WHERE {HUB} AND {ZONE} AND '
                    '$timeFilter GROUP BY time($__interval), "sensor" fill(none)',
                    alias="$tag_sensor",
                )
            ],
            grid(0, 10, 12, 8),
            unit="volt",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "green", "value": LOW_BATTERY_V},
            ],
            description=f"Battery voltage per sensor; line at {LOW_BATTERY_V} V (low_battery_v).",
        ),
        timeseries(
            "Checksum errors (cumulative per driver)",
            [
                target(
                    'SELECT last(/^dropped_.*_checksum$/) FROM "gateway_health" WHERE '
                    f"{HUB} AND $timeFilter GROUP BY time($__interval) fill(none)",
                )
            ],
            grid(12, 10, 12, 8),
            description=(
                "Serial lines rejected for a bad CRC, per driver "
                "(gateway_health dropped_<driver>_checksum; counts since the gateway started)."
            ),
        ),
        timeseries(
            "Unusable readings (sentinel, impossible)",
            [
                target(
                    'SELECT count("quality") FROM "reading" WHERE '
                    f'{HUB} AND {ZONE} AND ("quality" & {QUALITY_UNUSABLE}) != 0 AND '
                    '$timeFilter GROUP BY time($__interval), "sensor" fill(none)',
                    alias="$tag_sensor",
                )
            ],
            grid(0, 18, 12, 8),
            draw="bars",
            description=(
                f"Readings flagged quality & {QUALITY_UNUSABLE} (SENTINEL, IMPOSSIBLE, SPIKE) "
                "per sensor per interval; these are left out of the temperature panels."
            ),
        ),
        table(
            "Health alert history",
            [
                target(
                    'SELECT "state", "severity", "alert_id", "value", "limit" FROM "alert" '
                    f'WHERE {HUB} AND "rule" =~ {HEALTH_RULES} AND $timeFilter '
                    'GROUP BY "rule", "subject"',
                    table=True,
                )
            ],
            grid(12, 18, 12, 8),
            description="Every health alert state change in the time range.",
            overrides=[column_unit("Time", "dateTimeAsIso")],
            transformations=[merge_series()],
        ),
    ]
    return dashboard(
        "coldchain-sensor-health",
        "Cold chain: sensor health",
        "Staleness, battery, checksum errors and sensor health alerts.",
        panels,
        [hub_variable(), zone_variable()],
    )


def gateway_health() -> JSON:
    """The gateway's own metrics (measurement gateway_health)."""

    def health(title: str, select: str, pos: JSON, unit: str = "short", desc: str = "") -> JSON:
        return timeseries(
            title,
            [
                target(
                    f'SELECT {select} FROM "gateway_health" WHERE {HUB} AND $timeFilter '
                    "GROUP BY time($__interval) fill(none)"
                )
            ],
            pos,
            unit=unit,
            description=desc,
        )

    def last_stat(title: str, field: str, pos: JSON, unit: str = "short") -> JSON:
        query = f'SELECT last("{field}") FROM "gateway_health" WHERE {HUB} AND $timeFilter'
        return stat(title, [target(query)], pos, unit=unit)

    panels = [
        last_stat("Readings/s", "readings_per_s", grid(0, 0, 6, 4)),
        last_stat("Active alerts", "active_alerts", grid(6, 0, 6, 4)),
        last_stat("Uptime", "uptime_s", grid(12, 0, 6, 4), unit="s"),
        last_stat("Dead-lettered", "dead_lettered", grid(18, 0, 6, 4)),
        health(
            "Backlog per sink",
            "last(/^backlog_/)",
            grid(0, 4, 12, 8),
            desc="Records waiting in the journal per sink (backlog_<sink>).",
        ),
        health(
            "Oldest unsent record age",
            "last(/^oldest_unsent_age_s_/)",
            grid(12, 4, 12, 8),
            unit="s",
            desc="Age of the oldest undelivered record per sink (oldest_unsent_age_s_<sink>).",
        ),
        health(
            "Readings/s",
            'mean("readings_per_s")',
            grid(0, 12, 12, 8),
            unit="reqps",
            desc="Readings committed to the journal per second.",
        ),
        health("Active alerts", 'last("active_alerts")', grid(12, 12, 12, 8)),
        health(
            "Drops by reason",
            "last(/^dropped_/)",
            grid(0, 20, 12, 8),
            desc="Dropped input per driver and reason (dropped_<driver>_<reason>), "
            "cumulative since the gateway started.",
        ),
        health(
            "Reconnects",
            'last("reconnects")',
            grid(12, 20, 6, 8),
            desc="Driver and sink reconnects since the gateway started.",
        ),
        health(
            "Drivers connected",
            "last(/^connected_/)",
            grid(18, 20, 6, 8),
            desc="1 = connected, 0 = disconnected (connected_<driver>).",
        ),
        health(
            "Received, committed, dropped",
            'last("received") AS "received", last("committed") AS "committed", '
            'last("dropped") AS "dropped"',
            grid(0, 28, 24, 8),
            desc="Cumulative counters since the gateway started.",
        ),
    ]
    return dashboard(
        "coldchain-gateway-health",
        "Cold chain: gateway health",
        "Backlog per sink, oldest unsent age, reconnects, drops by reason, throughput.",
        panels,
        [hub_variable()],
        time_from="now-24h",
    )


def shipment_trace() -> JSON:
    """One shipment: its custody events, the zones it passed through, its alerts."""
    shipment = '"shipment" =~ /^$shipment$/'
    zones = '"zone" =~ /^$shipment_zone$/'
    panels = [
        timeseries(
            "Temperature of the zones the shipment passed through",
            zone_temperature_targets(zones),
            grid(0, 0, 24, 10),
            unit="celsius",
            description=(
                "Mean temperature of every zone with a custody event of $shipment. Set the "
                "time range to the shipment's stay (custody table below); the purple markers "
                "are its custody events."
            ),
            overrides=_limit_overrides(),
        ),
        table(
            "Custody events",
            [
                target(
                    'SELECT "event", "zone", "actor", "carrier", "temp_c", "profile", "note", '
                    f'"seq", "hash" FROM "custody" WHERE {HUB} AND {shipment}',
                    table=True,
                )
            ],
            grid(0, 10, 24, 8),
            description="Every handoff of the shipment (whole history, not only the range).",
            overrides=[column_unit("Time", "dateTimeAsIso"), column_unit("temp_c", "celsius")],
        ),
        table(
            "Shipment alerts (dwell, budget)",
            [
                target(
                    'SELECT "state", "severity", "alert_id", "value", "limit" FROM "alert" '
                    f'WHERE {HUB} AND "subject" =~ /^$shipment$/ GROUP BY "rule"',
                    table=True,
                )
            ],
            grid(0, 18, 12, 8),
            description="Every state change of the shipment's own alerts (whole history).",
            overrides=[column_unit("Time", "dateTimeAsIso")],
            transformations=[merge_series()],
        ),
        table(
            "Excursions in those zones",
            [
                target(
                    'SELECT "state", "severity", "value", "limit", "started_at" / 1000000 AS '
                    f'"started" FROM "alert" WHERE {HUB} AND "rule" = \'excursion\' AND '
                    '"subject" =~ /^$shipment_zone$/ AND $timeFilter GROUP BY "subject"',
                    table=True,
                )
            ],
            grid(12, 18, 12, 8),
            description="Excursion alert state changes of those zones in the time range.",
            overrides=[
                column_unit("Time", "dateTimeAsIso"),
                column_unit("started", "dateTimeAsIso"),
            ],
            transformations=[merge_series()],
        ),
    ]
    variables = [
        hub_variable(),
        query_variable(
            "shipment",
            "Shipment",
            f'SHOW TAG VALUES FROM "custody" WITH KEY = "shipment" WHERE {HUB}',
        ),
        query_variable(
            "shipment_zone",
            "Zones of the shipment",
            f'SHOW TAG VALUES FROM "custody" WITH KEY = "zone" WHERE {HUB} AND {shipment}',
            multi=True,
            hide=2,
        ),
        *limit_variables(),
    ]
    return dashboard(
        "coldchain-shipment-trace",
        "Cold chain: shipment trace",
        "One shipment's custody events and the temperatures of the zones it passed through.",
        panels,
        variables,
        [custody_annotation(f"{HUB} AND {shipment}")],
        time_from="now-7d",
    )


DASHBOARDS = {
    "hub-overview": hub_overview,
    "sensor-health": sensor_health,
    "gateway-health": gateway_health,
    "shipment-trace": shipment_trace,
}


def render(dash: JSON) -> str:
    """The file text of one dashboard (stable: sorted keys, 2-space indent, final newline)."""
    return json.dumps(dash, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every dashboard as ``<name>.json`` into out_dir; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in DASHBOARDS.items():
        path = out_dir / f"{name}.json"
        path.write_text(render(build()), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python dashboards/generate.py [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
