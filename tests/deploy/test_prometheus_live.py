"""A real Prometheus server on loopback scrapes a real sidecar fed by the OpenTelemetry SDK:
spend by tenant, survival of a field at a hop and the readiness verdicts come back over its
HTTP API with the values sent; every dashboard panel query is valid PromQL over series the
sidecar exports; the alert rules load and evaluate without errors, over series it exports."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import yaml

from costctx.service.registry import DEFAULT_TRACE_PROCESSORS
from tests.support.ops_workload import SPEND_BY_TENANT, send_ops_workload
from tests.support.paths import REPO
from tests.support.prometheus_server import PrometheusServer
from tests.support.sink import PatientSink

ROOT = REPO

pytestmark = pytest.mark.e2e  # a real Prometheus scraping a real sidecar
DASHBOARD = ROOT / "deploy" / "grafana" / "costctx-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "costctx-rules.yaml"
# Every metric the rules read is exported (costctx_spend_pending_usd came with settlement, issue 14).
NOT_YET_EXPORTED: set[str] = set()
# Grafana's variables as the dashboard's queries use them, and values to evaluate them with.
GRAFANA_VARIABLES = {"$job": ".+", "$__rate_interval": "1m", "$__range": "5m"}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A sidecar with every processor, fed the ops workload, scraped by Prometheus as job checkout."""
    from tests.support.sidecar import sidecar_config, start_sidecar

    workdir = tmp_path_factory.mktemp("prometheus")
    with PatientSink(http_port=0) as sink:
        config = sidecar_config(sink.grpc_port, processors=["memory_limiter", *DEFAULT_TRACE_PROCESSORS],
                                processor_config={"memory_limiter": {"limit_mib": 4096}, "budget": {
                                    "policies": [{"id": "pol-1", "workflow": {"cost_usd": 0.8}}]}})
        runner = start_sidecar(config)
        try:
            send_ops_workload(runner.sidecar.grpc_port)
            admin = f"127.0.0.1:{runner.sidecar.admin_port}"
            with PrometheusServer(workdir, {"checkout": [admin]}, rule_files=[RULES]) as prometheus:
                # Every span processed and scraped: the spend total is final once it matches.
                deadline = time.monotonic() + 30
                while True:
                    total = prometheus.query('sum(costctx_spend_usd_total{job="checkout"})')
                    if total and float(total[0]["value"][1]) == pytest.approx(sum(SPEND_BY_TENANT.values())):
                        break
                    assert time.monotonic() < deadline, total
                    time.sleep(0.5)
                # A few more scrapes, so rate() and increase() have points: counted, not a fixed
                # 2.5 s (1 s scrapes fall behind on a loaded machine).
                while True:
                    samples = prometheus.query('min(count_over_time(costctx_spend_usd_total{job="checkout"}[1m]))')
                    if samples and float(samples[0]["value"][1]) >= 4:
                        break
                    assert time.monotonic() < deadline + 60, samples
                    time.sleep(0.5)
                yield prometheus, admin
        finally:
            runner.stop()


def values_by(result: list[dict], *labels: str) -> dict:
    return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result}


def test_spend_by_tenant_comes_back_as_sent(scraped):
    prometheus, _ = scraped
    spend = values_by(prometheus.query('sum by (tenant) (costctx_spend_usd_total{job="checkout"})'), "tenant")
    assert spend == {(tenant,): pytest.approx(usd) for tenant, usd in SPEND_BY_TENANT.items()}
    recovered = prometheus.query('sum(costctx_spend_recovered_usd_total{job="checkout"})')
    assert float(recovered[0]["value"][1]) == pytest.approx(0.5)  # the worker's call, tenant inherited


def test_survival_rate_of_a_field_at_a_hop(scraped):
    prometheus, _ = scraped
    template = (
        'sum by (hop, field) (costctx_field_outcomes_total{{job="checkout", outcome=~"{}"}})'
        ' / on (hop) group_left sum by (hop) (costctx_hop_spans_total{{job="checkout"}})'
    )
    after = values_by(prometheus.query(template.format("present|renamed|inherited")), "hop", "field")
    before = values_by(prometheus.query(template.format("present|renamed")), "hop", "field")
    assert after[("worker", "owner.tenant")] == 1.0 and before[("worker", "owner.tenant")] == 0.0
    assert after[("gateway", "owner.tenant")] == 1.0 and before[("gateway", "owner.tenant")] == 1.0
    assert after[("billing", "owner.tenant")] == 0.0
    assert after[("billing", "workflow.id")] == 1.0


def test_readiness_verdicts(scraped):
    prometheus, _ = scraped
    verdicts = prometheus.query('costctx_readiness_verdict{job="checkout"} == 1')
    assert {r["metric"]["workflow"]: r["metric"]["verdict"] for r in verdicts} == {"answer": "pass",
                                                                                 "invoice": "fail"}
    spans = values_by(prometheus.query('costctx_readiness_llm_spans{job="checkout"}'), "workflow")
    assert spans == {("answer",): 2.0, ("invoice",): 1.0}


def test_budget_states_of_committed_spans(scraped):
    """wf-1 spends 0.25 then 0.5 of its 0.8 budget: one span ok, one past the soft threshold."""
    prometheus, _ = scraped
    states = values_by(prometheus.query('costctx_budget_span_states_total{job="checkout"}'), "policy", "state")
    assert states == {("pol-1", "ok"): 1.0, ("pol-1", "soft"): 1.0}


def test_pipeline_latency_histogram_counts_every_request(scraped):
    prometheus, _ = scraped
    accepted = prometheus.query('sum(costctx_receiver_requests_total{job="checkout", signal="traces", '
                                'result="accepted"})')
    observed = prometheus.query('sum(costctx_pipeline_duration_seconds_count{job="checkout", signal="traces"})')
    assert float(observed[0]["value"][1]) == float(accepted[0]["value"][1]) >= 1


def exported_metric_names(admin: str) -> set[str]:
    """Every sample name the sidecar can export (from # TYPE lines: labelled counters that have
    not counted yet have no samples but do have their family)."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            # The text format names counters with their _total already; histograms by family.
            suffixes = {"histogram": ["_bucket", "_count", "_sum"]}.get(kind, [""])
            names.update(family + s for s in suffixes)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bcostctx_[a-z_]+\b", expr))


def test_every_dashboard_query_is_valid_promql_over_exported_series(scraped):
    prometheus, admin = scraped
    exported = exported_metric_names(admin)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(queries) >= 20
    with_data = 0
    for title, expr in queries:
        promql = expr
        for variable, value in GRAFANA_VARIABLES.items():
            promql = promql.replace(variable, value)
        assert "$" not in promql, f"{title}: an unsubstituted variable in {promql}"
        answer = prometheus.api("query", query=promql)
        assert answer["status"] == "success", f"{title}: {promql}: {answer.get('error')}"
        names = metric_names(expr)
        assert names and names <= exported, f"{title}: not exported: {names - exported}"
        with_data += bool(answer["data"]["result"])
    # Most panels show data for this workload (budget and error panels may rightly be empty).
    assert with_data >= len(queries) // 2, with_data
    # And the variable's own query.
    job = next(v for v in dashboard["templating"]["list"] if v["name"] == "job")
    assert prometheus.api("series", **{"match[]": "costctx_hop_spans_total"})["data"][0]["job"] == "checkout"
    assert metric_names(job["query"]) <= exported


def test_every_metric_the_alert_rules_read_is_exported(scraped):
    _, admin = scraped
    exported = exported_metric_names(admin)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    used = set().union(*(metric_names(rule["expr"]) for group in groups for rule in group["rules"]))
    assert used - exported == NOT_YET_EXPORTED, used - exported


def test_the_alert_rules_evaluate_without_errors_on_real_series(scraped):
    prometheus, _ = scraped
    deadline = time.monotonic() + 60
    while True:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in rules} == {
        rule["name"]: ("ok", "") for rule in rules}
    # Nothing pages on a healthy sidecar this young (every rule has a `for:` or a long window,
    # and the invoice workflow's FAIL is over fewer than 10 LLM spans).
    assert [rule["name"] for rule in rules if rule["state"] == "firing"] == []
