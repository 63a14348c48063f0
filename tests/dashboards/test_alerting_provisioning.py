"""The Grafana alert rule "hub sends no data": its provisioning file and its query.

No Grafana runs here; what can be checked without it is checked for real: the file is
Grafana's alerting file-provisioning shape, refers to the provisioned datasource and
defines every variable it uses, and its InfluxQL, run against a real InfluxDB holding a
live hub and one that went quiet half an hour ago, gives the live hub a non-zero newest
bucket and the quiet one a zero (what the rule's reduce-last and threshold act on).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.apps.localservices import InfluxDB1

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards/provisioning/alerting/coldchain-hub-silent.yaml"
DATASOURCE = ROOT / "dashboards/provisioning/datasources/coldchain-influxdb.yaml"
ENV = ROOT / "dashboards/coldchain-grafana.env"


def _rule() -> dict[str, Any]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (group,) = doc["groups"]
    assert group["orgId"] == 1 and group["folder"] and re.fullmatch(r"\d+[smh]", group["interval"])
    (rule,) = group["rules"]
    return dict(rule)


def test_rule_file_has_grafana_provisioning_shape() -> None:
    rule = _rule()
    assert rule["uid"] and rule["title"]
    refs = {q["refId"]: q for q in rule["data"]}
    assert rule["condition"] in refs
    datasource = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]
    (query,) = [q for q in rule["data"] if q["datasourceUid"] != "__expr__"]
    assert query["datasourceUid"] == datasource["uid"]
    assert query["model"]["rawQuery"] is True
    for expr in (q for q in rule["data"] if q["datasourceUid"] == "__expr__"):
        assert expr["model"]["expression"] in refs, "expressions chain A -> B -> C"
    assert refs["C"]["model"]["type"] == "threshold"
    assert rule["noDataState"] == "Alerting", "a hub whose series vanished must alert"
    assert rule["execErrState"] == "Alerting"
    assert re.fullmatch(r"\d+m", rule["for"]) and int(rule["for"][:-1]) >= 5
    assert rule["labels"]["severity"] == "critical"
    assert "{{ $labels.hub }}" in rule["annotations"]["summary"]


def test_every_environment_variable_is_defined_in_the_env_file() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", RULES.read_text(encoding="utf-8")))
    defined = {
        line.split("=", 1)[0]
        for line in ENV.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert used and used <= defined


def test_query_sees_the_quiet_hub_and_not_the_live_one(influx_db: tuple[InfluxDB1, str]) -> None:
    influx, db = influx_db
    now_s = time.time_ns() // 1_000_000_000
    lines = []
    for t in range(now_s - 2 * 3600, now_s, 10):  # gateway_health every 10 s, as the daemon
        lines.append(f"gateway_health,hub=hub-live uptime_s={t - now_s + 7200}i {t}")
        if t < now_s - 1800:  # hub-quiet stopped half an hour ago
            lines.append(f"gateway_health,hub=hub-quiet uptime_s={t - now_s + 7200}i {t}")
    influx.write(db, "\n".join(lines), precision="s")
    model = _rule()["data"][0]["model"]
    query = model["query"].replace("$timeFilter", "time > now() - 24h")
    result = influx.query(query, db)["results"][0]
    newest: dict[str, int] = {}
    for series in result["series"]:
        values = [row for row in series["values"] if row[0] <= now_s * 1_000_000_000]
        newest[series["tags"]["hub"]] = int(values[-1][1])
    # The newest 5-minute bucket may have just begun: the live hub still has a snapshot
    # in it or in the bucket before (the rule's "for: 10m" rides over a fresh bucket).
    assert newest["hub-quiet"] == 0
    assert set(newest) == {"hub-live", "hub-quiet"}, "the quiet hub keeps its series"
    live = [
        int(r[1])
        for r in next(s for s in result["series"] if s["tags"]["hub"] == "hub-live")["values"]
    ]
    assert max(live[-2:]) >= 1
