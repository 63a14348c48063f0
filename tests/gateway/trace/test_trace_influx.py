"""Scenario tests against a real InfluxDB: verdicts, the PDF, the CSV, the JSON and the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from gateway.alerts.store import Alert, AlertState, Severity
from gateway.apps.localservices import InfluxDB1
from gateway.config import GatewayConfig, load_config
from gateway.core.clock import iso_utc
from gateway.core.model import Reading
from gateway.custody.chain import GENESIS_HASH, HandoffRecord, record_hash
from gateway.influxql.client import InfluxQLClient
from gateway.outbox.lineprotocol import line, reading_line
from gateway.outbox.streams import alert_line, custody_line
from gateway.trace import build_trace
from gateway.trace.analysis import TraceResult
from gateway.trace.cli import main as trace_main
from gateway.trace.cli import write_outputs
from gateway.trace.query import InfluxSource, readings_query

pytestmark = pytest.mark.integration

S = 1_000_000_000
MIN = 60 * S
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "schemas" / "trace-summary.schema.json"
CHAIN_OK = SimpleNamespace(ok=True, first_bad_seq=None, reason="")
SENSORS = {"recv": ["s-recv"], "cold": ["s-cold-1", "s-cold-2"], "dock": ["s-dock"]}

CONFIG_TOML = """\
[hub]
id = "hub-a"
timezone = "Europe/Lisbon"

[journal]
path = "{journal}"

[[zones]]
id = "recv"
kind = "receiving"
profile = "chilled"

[[zones]]
id = "cold"
kind = "cold_storage"
profile = "chilled"

[[zones]]
id = "dock"
kind = "dock"
profile = "chilled"

[[sensors]]
id = "s-recv"
zone = "recv"
interval_s = 60
calibration_id = "CAL-2025-017"

[[sensors]]
id = "s-cold-1"
zone = "cold"
interval_s = 60
calibration_id = "CAL-2025-018"

[[sensors]]
id = "s-cold-2"
zone = "cold"
interval_s = 60
calibration_id = "CAL-2025-019"

[[sensors]]
id = "s-dock"
zone = "dock"
interval_s = 60

[sinks.influx]
url = "{url}"
database = "{db}"
"""

Temp = Callable[[str, str, int], float | None]


def _steady(zone: str, sensor: str, t: int) -> float | None:
    return 4.5 if zone == "cold" else 5.5


def write_scenario(
    server: InfluxDB1,
    db: str,
    shipment: str,
    dock_minutes: int = 15,
    temp: Temp = _steady,
) -> int:
    """received -> put_away (20 min) -> staged (5 h) -> handed over; returns readings written."""
    handed = 320 + dock_minutes
    steps = [
        ("received", "recv", 0),
        ("put_away", "cold", 20),
        ("staged", "dock", 320),
        ("handed_to_carrier", "dock", handed),
    ]
    lines = custody_lines(shipment, steps)
    count = 0
    for zone, sensors in SENSORS.items():
        for j, sensor in enumerate(sensors):
            t = T0 - 30 * MIN + j * S
            while t < T0 + (handed + 30) * MIN:
                value = temp(zone, sensor, t)
                if value is not None:
                    lines.append(
                        reading_line("hub-a", Reading(sensor, t, t, value, "t", zone=zone))
                    )
                    count += 1
                t += MIN
    server.write(db, "\n".join(lines))
    return count


def custody_lines(shipment: str, steps: list[tuple[str, str, int]]) -> list[str]:
    """Hash-chained handoff records (gateway.custody.chain) as line protocol, seq from 1."""
    out = []
    prev = GENESIS_HASH
    for seq, (kind, zone, minute) in enumerate(steps, start=1):
        fields: dict[str, Any] = {
            "hub": "hub-a",
            "seq": seq,
            "shipment": shipment,
            "event": kind,
            "zone": zone,
            "actor": "ana",
            "carrier": "DHL" if kind == "handed_to_carrier" else None,
            "profile": "chilled",
            "note": None,
            "ts_ns": T0 + minute * MIN,
            "temp_c": None,
            "prev_hash": prev,
        }
        digest = record_hash(fields)
        out.append(custody_line(HandoffRecord(**fields, hash=digest)))
        prev = digest
    return out


def config_file(tmp_path: Path, server: InfluxDB1, db: str) -> Path:
    path = tmp_path / "gateway.toml"
    text = CONFIG_TOML.format(journal=tmp_path / "journal.db", url=server.url, db=db)
    path.write_text(text, encoding="utf-8")
    return path


def trace_of(tmp_path: Path, server: InfluxDB1, db: str, shipment: str) -> TraceResult:
    config: GatewayConfig = load_config(config_file(tmp_path, server, db))
    return build_trace(
        InfluxSource(InfluxQLClient(server.url, db), "hub-a"),
        config,
        shipment,
        as_of_ns=T0 + 2 * 24 * 60 * MIN,
        chain=CHAIN_OK,
    )


def test_a_clean_shipment_is_accepted(influx_db: tuple[InfluxDB1, str], tmp_path: Path) -> None:
    server, db = influx_db
    write_scenario(server, db, "SH-CLEAN")
    result = trace_of(tmp_path, server, db, "SH-CLEAN")
    assert result.verdict == "accept", result.reasons
    assert [h.kind for h in result.timeline] == [
        "received",
        "put_away",
        "staged",
        "handed_to_carrier",
    ]
    assert result.stats.max is not None and result.stats.max.temp_c == 5.5
    assert result.stats.mkt_c is not None and 4.5 <= result.stats.mkt_c <= 5.5
    assert result.timeline[-1].carrier == "DHL"


def test_a_warm_dock_past_the_budget_is_rejected(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path
) -> None:
    server, db = influx_db

    def warm_dock(zone: str, sensor: str, t: int) -> float:
        return 14.0 if zone == "dock" else 4.5

    write_scenario(server, db, "SH-WARM", dock_minutes=75, temp=warm_dock)
    result = trace_of(tmp_path, server, db, "SH-WARM")
    assert result.verdict == "reject"
    reason = next(r for r in result.reasons if r.code == "budget_spent")
    assert reason.level == "reject"
    assert "reached the chilled budget of 60.0 min" in reason.text
    assert result.budget.violated_at_ns == T0 + 380 * MIN
    assert any(d.status == "violated" and d.from_kind == "staged" for d in result.dwell)


def test_a_stale_zone_sensor_means_review_with_the_gap_times(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path
) -> None:
    server, db = influx_db

    def stale_dock(zone: str, sensor: str, t: int) -> float | None:
        # the dock probe stops 5 minutes after the shipment arrived there
        if zone == "dock" and t >= T0 + 325 * MIN:
            return None
        return 5.0

    write_scenario(server, db, "SH-STALE", temp=stale_dock)
    result = trace_of(tmp_path, server, db, "SH-STALE")
    assert result.verdict == "review"
    (gap,) = result.gaps
    # the last value (T0 + 324 min) stands for the max gap of 3 x 60 s; then unknown
    assert (gap.zone, gap.start_ns, gap.end_ns) == ("dock", T0 + 327 * MIN, T0 + 335 * MIN)
    reason = next(r for r in result.reasons if r.code == "data_gap")
    assert f"from {iso_utc(T0 + 327 * MIN)} to {iso_utc(T0 + 335 * MIN)}" in reason.text


def test_alarms_come_with_their_acknowledgement(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path
) -> None:
    server, db = influx_db
    write_scenario(server, db, "SH-ALARM")
    alert = Alert(
        id="excursion.single-0123456789abcdef",
        hub="hub-a",
        rule="excursion.single",
        subject="cold",
        severity=Severity.CRITICAL,
        state=AlertState.RAISED,
        started_ns=T0 + 60 * MIN,
        raised_ns=T0 + 75 * MIN,
        value=9.0,
        limit=8.0,
    )
    server.write(
        db,
        "\n".join(
            [
                alert_line(alert, T0 + 75 * MIN),
                alert_line(
                    Alert(
                        id=alert.id,
                        hub="hub-a",
                        rule=alert.rule,
                        subject="cold",
                        severity=Severity.CRITICAL,
                        state=AlertState.ACKNOWLEDGED,
                        started_ns=alert.started_ns,
                        raised_ns=alert.raised_ns,
                        acknowledged_by="dana",
                    ),
                    T0 + 80 * MIN,
                ),
            ]
        ),
    )
    result = trace_of(tmp_path, server, db, "SH-ALARM")
    (alarm,) = result.alarms
    assert (alarm.alert_id, alarm.acknowledged_ns, alarm.state, alarm.acknowledged_by) == (
        alert.id,
        T0 + 80 * MIN,
        "acknowledged",
        "dana",
    )
    assert result.verdict == "accept"


def test_outputs_pdf_csv_and_json(influx_db: tuple[InfluxDB1, str], tmp_path: Path) -> None:
    server, db = influx_db

    def warm_dock(zone: str, sensor: str, t: int) -> float:
        return 14.0 if zone == "dock" else 4.5

    written = write_scenario(server, db, "SH-OUT", dock_minutes=75, temp=warm_dock)
    result = trace_of(tmp_path, server, db, "SH-OUT")
    paths = write_outputs(result, tmp_path / "out")

    # CSV: one row per reading in the trace window (15 min of context around each interval)
    with paths["csv"].open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.points)
    assert server.count(db, "reading") == written  # the window is a part of what is stored
    assert len(rows) < written
    expected = sum(
        1
        for zone, sensors in SENSORS.items()
        for j, _ in enumerate(sensors)
        for m in range(-30, 395 + 30)
        if any(
            z == zone and a - 15 * MIN <= T0 + m * MIN + j * S < b + 15 * MIN
            for z, a, b in (
                ("recv", T0, T0 + 20 * MIN),
                ("cold", T0 + 20 * MIN, T0 + 320 * MIN),
                ("dock", T0 + 320 * MIN, T0 + 395 * MIN),
            )
        )
    )
    assert len(rows) == expected
    assert rows[0]["time_utc"].endswith("Z")
    assert {r["in_custody_interval"] for r in rows} == {"0", "1"}
    assert sum(r["in_custody_interval"] == "1" for r in rows) == sum(result.in_custody)

    # JSON: valid against its schema, same verdict
    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA.read_text(encoding="utf-8")),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(summary)
    assert summary["verdict"] == "reject"
    assert summary["readings"]["in_window"] == len(rows)
    assert summary["stats"]["mkt"]["dh_kj_per_mol"] == pytest.approx(83.144)

    # PDF: renders to non-empty pages; the text holds the shipment id and the verdict
    subprocess.run(
        ["pdftoppm", "-png", "-r", "40", str(paths["pdf"]), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    assert all(p.stat().st_size > 1000 for p in pages)
    text = subprocess.run(
        ["pdftotext", str(paths["pdf"]), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "SH-OUT" in text
    assert "VERDICT: REJECT" in text
    assert "CAL-2025-018" in text
    assert "Europe/Lisbon" in text


def test_the_cli_writes_the_three_files(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, db = influx_db
    write_scenario(server, db, "SH-CLI")
    cfg = config_file(tmp_path, server, db)
    out = tmp_path / "out"
    argv = ["SH-CLI", "--config", str(cfg), "--out", str(out), "--as-of", "2026-01-03T00:00:00Z"]
    assert trace_main([*argv, "--quiet"]) == 0
    summary = json.loads((out / "trace-SH-CLI.json").read_text(encoding="utf-8"))
    assert summary["shipment"] == "SH-CLI"
    assert (out / "trace-SH-CLI.pdf").stat().st_size > 0
    assert (out / "trace-SH-CLI.csv").stat().st_size > 0
    assert summary["chain"]["status"] == "verified"
    verdict = summary["verdict"]
    assert verdict == "accept", summary["reasons"]
    assert (
        trace_main([*argv, "--verdict-exit", "--quiet"])
        == {
            "accept": 0,
            "review": 4,
            "reject": 5,
        }[verdict]
    )
    capsys.readouterr()
    assert trace_main([*argv]) == 0
    assert verdict.upper() in capsys.readouterr().out


def test_a_tampered_custody_point_makes_the_cli_reject_naming_it(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path
) -> None:
    server, db = influx_db
    write_scenario(server, db, "SH-TAMPER")
    # overwrite the put_away point (same series and time) with another actor
    server.write(
        db,
        line(
            "custody",
            {"hub": "hub-a", "shipment": "SH-TAMPER", "event": "put_away", "zone": "cold"},
            {"actor": "mallory"},
            T0 + 20 * MIN,
        ),
    )
    cfg = config_file(tmp_path, server, db)
    out = tmp_path / "out"
    args = ["SH-TAMPER", "--config", str(cfg), "--out", str(out), "--quiet", "--verdict-exit"]
    assert trace_main(args) == 5
    summary = json.loads((out / "trace-SH-TAMPER.json").read_text(encoding="utf-8"))
    assert summary["chain"]["status"] == "broken"
    assert summary["chain"]["first_bad_seq"] == 2
    assert any(
        r["code"] == "chain_broken" and r["level"] == "reject" and "seq 2" in r["text"]
        for r in summary["reasons"]
    )


def test_the_cli_names_an_unknown_shipment_and_exits_2(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, db = influx_db
    cfg = config_file(tmp_path, server, db)
    assert trace_main(["SH-X", "--config", str(cfg), "--out", str(tmp_path), "--quiet"]) == 2
    assert "unknown shipment SH-X: no custody events" in capsys.readouterr().err
    assert trace_main(["SH-1' OR '1'='1", "--config", str(cfg), "--quiet"]) == 2
    assert "invalid shipment id" in capsys.readouterr().err


def test_the_cli_reports_an_unreachable_influxdb_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    text = CONFIG_TOML.format(journal=tmp_path / "j.db", url="http://127.0.0.1:9", db="x")
    path.write_text(text, encoding="utf-8")
    assert trace_main(["SH-1", "--config", str(path), "--quiet"]) == 3
    assert "unreachable" in capsys.readouterr().err


def test_6_readings_past_the_servers_row_limit_are_paged_not_dropped(
    tmp_path: Path,
) -> None:
    """Issue 13: InfluxDB's max-row-limit truncation is never silent in a claim report."""
    with InfluxDB1(tmp_path / "influx-limited", max_row_limit=50) as server:
        server.create_database("lim")
        write_scenario(server, "lim", "SH-LIM")
        result = trace_of(tmp_path, server, "lim", "SH-LIM")
        # 20 min in recv (1 probe), 300 in cold (2 probes), 15 on the dock, 1 per minute,
        # fetched through a server that cuts every answer at 50 rows: all of them there
        assert [s.readings for s in result.spans] == [20, 600, 15]
        assert result.verdict == "accept", result.reasons
        source = InfluxSource(InfluxQLClient(server.url, "lim"), "hub-a")
        _, partial = source.run_checked(readings_query("hub-a", "cold", T0, T0 + 300 * MIN))
        assert partial, "the server does truncate one query for the window"
        points = source.readings("cold", T0, T0 + 300 * MIN)
        assert len(points) == 2 * 300


def test_6_an_alert_raised_days_before_arrival_and_still_active_is_on_the_log(
    influx_db: tuple[InfluxDB1, str], tmp_path: Path
) -> None:
    """Issue 13: the alarm log looked back one day; an older active alert was missed."""
    server, db = influx_db
    write_scenario(server, db, "SH-OLD")
    started = T0 - 3 * 24 * 60 * MIN  # a stale-sensor alert on the cold room, 3 days old
    old = Alert(
        id="sensor_stale-00000000000000aa",
        hub="hub-a",
        rule="sensor_stale",
        subject="s-cold-2",
        severity=Severity.WARNING,
        state=AlertState.RAISED,
        started_ns=started,
        raised_ns=started,
    )
    server.write(db, alert_line(old, started))
    result = trace_of(tmp_path, server, db, "SH-OLD")
    assert [a.alert_id for a in result.alarms] == [old.id]
