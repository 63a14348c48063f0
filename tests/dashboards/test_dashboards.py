"""The Grafana dashboards: structure, freshness, and every query against a real InfluxDB.

The data comes from a real gateway run: a simulated serial board (pty) with a controllable
cold room that leaves its band (excursion), a step change (sensor_spike), a low battery
(battery_low), CRC faults (checksum drops), DS18B20 sentinels (unusable readings), custody
events in the past (dwell and budget alerts) and gateway_health snapshots. Every panel,
variable and annotation query then runs with its template variables substituted the way
Grafana's InfluxDB datasource does it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.board import SensorBoardSim
from firmware_sim.faults import FaultInjector, FaultRates
from firmware_sim.thermal import Probe
from gateway.apps.localservices import InfluxDB1
from tests.integration.harness import hub_config, running_gateway, wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
JSON_DIR = DASHBOARDS / "json"
DATASOURCE_YAML = DASHBOARDS / "provisioning" / "datasources" / "coldchain-influxdb.yaml"
PROVIDER_YAML = DASHBOARDS / "provisioning" / "dashboards" / "coldchain.yaml"

HUB = "hub-test"
MIN_NS = 60 * 1_000_000_000

# Grafana's built-in variables (InfluxDB datasource), and what the test puts in their place.
BUILTINS = {"timeFilter", "__interval", "__interval_ms", "interval", "__from", "__to"}
VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|{}\[\]/]")  # Grafana's escapeRegex


def dashboard_files() -> list[Path]:
    """The committed dashboard JSON files."""
    return sorted(JSON_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    """One dashboard."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def all_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables."""
    return list(dash["templating"]["list"])


def annotation_queries(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Annotation queries, Grafana's built-in one left out."""
    return [a for a in dash["annotations"]["list"] if not a.get("builtIn")]


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) of every panel target and annotation of a dashboard."""
    out = [
        (f"panel {p['id']} {p['title']!r} {t['refId']}", t["query"])
        for p in all_panels(dash)
        for t in p.get("targets", [])
    ]
    out += [(f"annotation {a['name']!r}", a["query"]) for a in annotation_queries(dash)]
    return out


def used_variables(text: str) -> set[str]:
    """Names of the ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]`` in a text."""
    return {next(g for g in (m[0], m[2], m[3]) if g) for m in VAR_RE.findall(text)}


def provisioned_uid() -> str:
    """The uid of the provisioned datasource (no YAML dependency: one key, one line)."""
    text = DATASOURCE_YAML.read_text(encoding="utf-8")
    match = re.search(r"^\s+uid:\s*(\S+)\s*$", text, re.MULTILINE)
    assert match, "the datasource provisioning file names no uid"
    assert re.search(r"^\s+type:\s*influxdb\s*$", text, re.MULTILINE)
    return match.group(1)


# -- structure ----------------------------------------------------------------------------


def test_the_four_dashboards_exist_and_parse() -> None:
    names = {p.stem for p in dashboard_files()}
    assert names == {"hub-overview", "sensor-health", "gateway-health", "shipment-trace"}
    uids = [load(p)["uid"] for p in dashboard_files()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_panel_ids_are_unique(path: Path) -> None:
    ids = [p["id"] for p in all_panels(load(path))]
    assert len(ids) == len(set(ids)), ids
    assert all(isinstance(i, int) and i > 0 for i in ids)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_every_datasource_reference_resolves_to_the_provisioned_one(path: Path) -> None:
    dash = load(path)
    expected = {"type": "influxdb", "uid": provisioned_uid()}
    refs: list[tuple[str, Any]] = []
    for p in all_panels(dash):
        refs.append((f"panel {p['id']}", p.get("datasource")))
        refs += [(f"panel {p['id']} {t['refId']}", t.get("datasource")) for t in p["targets"]]
    refs += [
        (f"variable {v['name']}", v["datasource"]) for v in variables(dash) if "datasource" in v
    ]
    refs += [(f"annotation {a['name']}", a.get("datasource")) for a in annotation_queries(dash)]
    wrong = [(where, ref) for where, ref in refs if ref != expected]
    assert wrong == []
    assert all(p["targets"] for p in all_panels(dash) if p["type"] != "row")


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_every_variable_used_is_defined(path: Path) -> None:
    dash = load(path)
    defined = {v["name"] for v in variables(dash)}
    texts = [q for _, q in queries(dash)]
    texts += [v["query"] for v in variables(dash) if v["type"] == "query"]
    texts += [p["title"] for p in all_panels(dash)]
    texts += [p["repeat"] for p in all_panels(dash) if "repeat" in p]
    undefined = set().union(*(used_variables(t) for t in texts)) - defined - BUILTINS
    assert undefined == set()
    for p in all_panels(dash):
        if "repeat" in p:
            assert p["repeat"] in defined


def test_hub_and_zone_variables_are_everywhere_the_issue_wants_them() -> None:
    for path in dashboard_files():
        names = [v["name"] for v in variables(load(path))]
        assert names[0] == "hub", path.name
    for name in ("hub-overview", "sensor-health"):
        zone = next(v for v in variables(load(JSON_DIR / f"{name}.json")) if v["name"] == "zone")
        assert zone["multi"] and zone["includeAll"]
    trace = load(JSON_DIR / "shipment-trace.json")
    assert "shipment" in [v["name"] for v in variables(trace)]
    assert annotation_queries(trace), "custody events as annotations"


def test_dashboard_provider_points_at_a_directory() -> None:
    text = PROVIDER_YAML.read_text(encoding="utf-8")
    assert re.search(r"^\s+type:\s*file\s*$", text, re.MULTILINE)
    assert re.search(r"^\s+path:\s*/\S+\s*$", text, re.MULTILINE)


def test_generated_json_is_current(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DASHBOARDS / "generate.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in dashboard_files()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], "run: python dashboards/generate.py"


# -- every query against a real InfluxDB ----------------------------------------------------


class SetRoom:
    """A zone model whose temperature the test sets."""

    def __init__(self, temp_c: float) -> None:
        self.temperature_c = temp_c

    def step(self, dt_s: float) -> None:
        """Nothing moves unless the test says so."""


def _custody(shipment: str, event: str, zone: str, ts_ns: int, **extra: Any) -> dict[str, Any]:
    return {"shipment": shipment, "event": event, "zone": zone, "actor": "ana", "ts_ns": ts_ns,
            **extra}  # fmt: skip


async def fill(tmp_path: Path, influx: InfluxDB1, db: str) -> tuple[int, int]:
    """Run the gateway against a simulated board; return the (start, end) ns of the data."""
    cold, inbound = SetRoom(4.0), SetRoom(6.0)
    start_ms = time.time_ns() // 1_000_000 - 10 * 60_000
    now = time.time_ns()
    custody = [
        # SH-1 sits in the cold room during its excursion: the cumulative budget runs out.
        _custody("SH-1", "received", "inbound", now - 15 * MIN_NS, profile="fast"),
        _custody("SH-1", "put_away", "cold-room-1", now - 14 * MIN_NS),
        # SH-2 was received 40 min ago and never put away: the 30 min dwell rule fires.
        _custody("SH-2", "received", "inbound", now - 40 * MIN_NS, note="pallet 3"),
    ]
    with SensorBoardSim(
        {
            "1": Probe(cold, noise_c=0.0, resolution_c=0.0),
            "2": Probe(inbound, noise_c=0.1, seed=2),
        },
        board="A1",
        start_ms=start_ms,
        battery_v=3.2,  # below low_battery_v 3.3: battery_low
        faults=FaultInjector(FaultRates(checksum=0.05, sentinel=0.03), seed=3),
        link_dir=tmp_path,
    ) as board:
        config = hub_config(
            tmp_path,
            profiles={"fast": {"min_c": 2, "max_c": 8, "alarm_delay_s": 5,
                               "hysteresis_c": 0.5, "budget_s": 5}},
            zones=[{"id": "cold-room-1", "kind": "cold_storage", "profile": "fast"},
                   {"id": "inbound", "kind": "receiving"}],
            sensors=[{"id": "cr1-a", "zone": "cold-room-1", "interval_s": 1},
                     {"id": "in-a", "zone": "inbound", "interval_s": 1}],
            drivers={"serial": [{"name": "board-a", "port": str(board.link_path), "board": "A1",
                                 "probes": {"1": "cr1-a", "2": "in-a"}}]},
            sinks={"influx": {"api": "v1", "url": influx.url, "database": db,
                              "max_backoff_s": 1}},
        )  # fmt: skip
        async with running_gateway(config) as gw:
            await wait_for(lambda: gw.counters.connected.get("board-a"), 5, "port opened")
            for body in custody:
                await gw.engine.apply_custody(json.dumps(body).encode(), "test")
            await board.send_lines(2 * 10)  # 10 s inside the band
            cold.temperature_c = 9.5  # step: excursion after 5 s, and a sensor spike
            await board.send_lines(2 * 15)
            await wait_for(
                lambda: any(a.rule == "excursion" for a in gw.alerts.active()), what="excursion"
            )
            cold.temperature_c = 5.0
            await board.send_lines(2 * 10)
            await wait_for(
                lambda: not any(a.rule == "excursion" for a in gw.alerts.active()),
                what="excursion cleared",
            )
            await gw.engine.tick()  # dwell and budget deadlines

            def rules() -> set[str]:
                return {a.rule for a in gw.alerts.active()}

            await wait_for(lambda: {"budget", "battery_low"} <= rules(), what="budget alert")
            await wait_for(lambda: any(r.startswith("dwell.") for r in rules()), what="dwell")
            await wait_for(
                lambda: gw.counters.dropped.get("board-a:checksum"), what="checksum drops"
            )
            await gw.status.refresh()
            await wait_for(lambda: influx.count(db, "alert") >= 6, what="alerts in InfluxDB")
            checksum_health = 'SELECT last(/^dropped_.*_checksum$/) FROM "gateway_health"'
            await wait_for(lambda: influx.rows(checksum_health, db), what="checksum drops")
            # custody records reach InfluxDB through the gateway's custody stream
            await wait_for(lambda: influx.count(db, "custody") == 3, what="custody points")
    return now - 60 * MIN_NS, time.time_ns() + MIN_NS


def format_value(var: dict[str, Any], values: list[str]) -> str:
    """A variable's value as Grafana's InfluxDB datasource interpolates it into a regex."""
    if var.get("multi") or var.get("includeAll"):
        escaped = [REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return values[0]


def interpolate(text: str, scope: dict[str, str]) -> str:
    """Substitute every variable of scope into text; KeyError on an unknown one."""

    def sub(m: re.Match[str]) -> str:
        name = next(g for g in (m.group(1), m.group(3), m.group(4)) if g)
        return scope[name]

    return VAR_RE.sub(sub, text)


def resolve_variables(
    dash: dict[str, Any], influx: InfluxDB1, db: str, builtins: dict[str, str]
) -> dict[str, str]:
    """Run the variables' queries in order (each sees the ones before), pick values."""
    scope = dict(builtins)
    for var in variables(dash):
        if var["type"] == "custom":
            values = [var["current"]["value"]]
        else:
            result = influx.query(interpolate(var["query"], scope), db)["results"][0]
            values = [row[1] for s in result.get("series", []) for row in s["values"]]
            assert values, f"variable {var['name']}: {var['query']!r} found nothing"
            if var["name"] == "shipment":
                assert set(values) >= {"SH-1", "SH-2"}
                values = ["SH-1"]  # the one with an excursion in its cold room
            elif not (var.get("multi") or var.get("includeAll")):
                values = values[:1]
        scope[var["name"]] = format_value(var, values)
    return scope


def has_data(result: dict[str, Any]) -> bool:
    """True if some series has a row with a non-null value besides time."""
    return any(
        any(v is not None for v in row[1:])
        for series in result.get("series", [])
        for row in series["values"]
    )


async def test_every_query_returns_data_from_a_gateway_run(
    tmp_path: Path, influx_db: tuple[InfluxDB1, str]
) -> None:
    influx, db = influx_db
    start_ns, end_ns = await fill(tmp_path, influx, db)
    builtins = {
        "timeFilter": f"time >= {start_ns // 1_000_000}ms and time <= {end_ns // 1_000_000}ms",
        "__interval": "1m",
        "interval": "1m",
        "__interval_ms": "60000",
        "__from": str(start_ns // 1_000_000),
        "__to": str(end_ns // 1_000_000),
    }
    empty: list[str] = []
    ran = 0
    for path in dashboard_files():
        dash = load(path)
        scope = resolve_variables(dash, influx, db, builtins)
        assert scope["hub"] == HUB
        for where, query in queries(dash):
            result = influx.query(interpolate(query, scope), db)["results"][0]
            ran += 1
            if not has_data(result):
                empty.append(f"{path.stem}: {where}: {interpolate(query, scope)}")
    assert empty == [], "\n".join(empty)
    assert ran >= 30
