"""The Grafana dashboard (deploy/grafana/costctx-dashboard.json) is generated from
scripts/gen_dashboard.py with the Grafana Foundation SDK: regenerating it gives the committed
file, and it has the panels the operators need. Its queries are evaluated against a real
Prometheus in tests/deploy/test_prometheus_live.py."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import REPO

ROOT = REPO
DASHBOARD = ROOT / "deploy" / "grafana" / "costctx-dashboard.json"
GENERATOR = ROOT / "scripts" / "gen_dashboard.py"


def test_regenerating_the_dashboard_gives_the_committed_json():
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_hand_edit(tmp_path):
    edited = tmp_path / "costctx-dashboard.json"
    edited.write_text(DASHBOARD.read_text().replace('"refresh": "30s"', '"refresh": "5s"'))
    result = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output", str(edited)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "stale" in result.stderr


def panels() -> dict[str, dict]:
    return {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"}


def test_survival_matrix_before_and_after_repair_as_hop_by_field_grids():
    by_title = panels()
    for title, outcomes in (("Survival matrix before repair (as received)", '"present|renamed"'),
                            ("Survival matrix after repair", '"present|renamed|inherited|settled"')):
        panel = by_title[title]
        assert panel["type"] == "table"
        assert panel["transformations"][0] == {
            "id": "groupingToMatrix",
            "options": {"columnField": "hop", "rowField": "field", "valueField": "Value", "emptyValue": "null"},
        }
        assert f"outcome=~{outcomes}" in panel["targets"][0]["expr"]
        assert panel["targets"][0]["instant"] is True
        cell = panel["fieldConfig"]["overrides"][0]["properties"][0]
        assert cell == {"id": "custom.cellOptions", "value": {"mode": "basic", "type": "color-background"}}
    heatmap = by_title["Survival after repair over time (hop / field)"]
    assert heatmap["type"] == "heatmap" and heatmap["options"]["calculate"] is False
    assert heatmap["targets"][0]["legendFormat"] == "{{hop}} / {{field}}"


def test_readiness_spend_budget_and_pipeline_panels():
    by_title = panels()
    assert by_title["Readiness verdict per workflow"]["type"] == "state-timeline"
    mapping = by_title["Readiness verdict per workflow"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in mapping.items()} == {"0": "FAIL", "1": "CONDITIONAL", "2": "PASS"}
    for title in ("Spend by tenant (USD/h)", "Spend by feature (USD/h)", "Unknown tenant share",
                  "Recovered by repair", "Budget decisions", "Budget states of committed spans",
                  "Reservations", "Accepted and refused items",
                  "Sent and failed items", "Sending queue", "Held spans (inherit) and memory limiter",
                  "Pipeline latency"):
        assert title in by_title, title
    latency = " ".join(t["expr"] for t in by_title["Pipeline latency"]["targets"])
    assert "costctx_pipeline_duration_seconds_bucket" in latency
