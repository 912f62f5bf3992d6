"""Write deploy/grafana/costctx-dashboard.json: the costctx Grafana dashboard, built with the
Grafana Foundation SDK (grafana-foundation-sdk, a test extra) rather than edited by hand.

`--check` exits 1 when the committed JSON differs from what this would write
(tests/deploy/test_dashboard.py runs it, and evaluates every panel query against a real Prometheus).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import prometheus as prom_model

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "grafana" / "costctx-dashboard.json"

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job=~"$job"'
# Outcomes that count as the field being there (ENVELOPE.md): as received, and after repair.
BEFORE_REPAIR = "present|renamed"
AFTER_REPAIR = "present|renamed|inherited|settled"
# The readiness verdict thresholds (envelope.yaml) as colours: red, amber from 90%, green from 99%.
SURVIVAL_STEPS = [model.Threshold(None, "red"), model.Threshold(0.9, "orange"), model.Threshold(0.99, "green")]


def query(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(prom_model.PromQueryFormat.TABLE)
    return q


def survival_ratio(outcomes: str, window: str) -> str:
    return (
        f'sum by (hop, field) (increase(costctx_field_outcomes_total{{{JOB}, outcome=~"{outcomes}"}}[{window}]))\n'
        f"  / on (hop) group_left\n"
        f"sum by (hop) (increase(costctx_hop_spans_total{{{JOB}}}[{window}]))"
    )


def survival_matrix(title: str, outcomes: str) -> table.Panel:
    """hop x field as a table coloured cell by cell: Grafana's heatmap of a matrix."""
    return (
        table.Panel()
        .title(title)
        .description("Share of spans carrying each field, per hop (columns) and field (rows), over the time range.")
        .with_target(query(survival_ratio(outcomes, "$__range"), instant=True))
        .with_transformation(model.DataTransformerConfig(
            id_val="groupingToMatrix",
            options={"columnField": "hop", "rowField": "field", "valueField": "Value", "emptyValue": "null"},
        ))
        .show_header(True)
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .max(1)
        .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(SURVIVAL_STEPS))
        # Every number cell coloured by the thresholds (the builder of this SDK version has no
        # cell-options setter; an override by field type is what Grafana's editor writes too).
        .override_by_field_type("number", [model.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"})])
        .height(10)
        .span(12)
    )


def survival_heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("Survival after repair over time (hop / field)")
        .description("Each row is one hop and field; colour is the share of spans carrying the field after repair.")
        .with_target(
            query(survival_ratio(AFTER_REPAIR, "$__rate_interval").replace("increase(", "rate("), "{{hop}} / {{field}}")
        )
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.UNKNOWN))
        .color(heatmap.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME).scheme("RdYlGn")
               .min(0).max(1).steps(64))
        .height(12)
        .span(24)
    )


def readiness_timeline() -> statetimeline.Panel:
    # 2 pass, 1 conditional, 0 fail; the worst pod's verdict per workflow.
    expr = (
        f'min by (workflow) (\n  2 * costctx_readiness_verdict{{{JOB}, verdict="pass"}}\n'
        f'  + ignoring (verdict) costctx_readiness_verdict{{{JOB}, verdict="conditional"}}\n)'
    )
    mapping = model.ValueMap(options={
        "0": model.ValueMappingResult(text="FAIL", color="red"),
        "1": model.ValueMappingResult(text="CONDITIONAL", color="orange"),
        "2": model.ValueMappingResult(text="PASS", color="green"),
    })
    return (
        statetimeline.Panel()
        .title("Readiness verdict per workflow")
        .description("The ten-field readiness verdict (worst pod) per workflow.name.")
        .with_target(query(expr, "{{workflow}}"))
        .mappings([mapping])
        .height(8)
        .span(16)
    )


def series(title: str, exprs: list[tuple[str, str]], unit: str = "short", span: int = 12,
           description: str = "") -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).height(8).span(span)
    if description:
        panel = panel.description(description)
    for index, (expr, legend) in enumerate(exprs):
        panel = panel.with_target(query(expr, legend, ref=chr(ord("A") + index)))
    return panel


def share(title: str, numerator: str, description: str) -> stat.Panel:
    expr = (
        f"({numerator} or vector(0))\n"
        f"  / sum(increase(costctx_spend_usd_total{{{JOB}}}[$__range]))"
    )
    return (
        stat.Panel().title(title).description(description).with_target(query(expr, instant=True))
        .unit("percentunit").decimals(1).height(4).span(6)
    )


def rate(metric: str, by: str, selector: str = "") -> str:
    labels = f"{JOB}, {selector}" if selector else JOB
    return f"sum by ({by}) (rate({metric}{{{labels}}}[$__rate_interval]))"


def build() -> db.Dashboard:
    return (
        db.Dashboard("costctx: cost context, spend and pipeline")
        .uid("costctx")
        .description("Field survival, readiness, spend, budgets and pipeline health of costctx sidecars. "
                     "Generated by scripts/gen_dashboard.py.")
        .tags(["costctx", "opentelemetry"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone(common.TimeZoneBrowser)
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            db.QueryVariable("job").label("job").datasource(DATASOURCE)
            .query("label_values(costctx_hop_spans_total, job)")
            .multi(True).include_all(True).all_value(".+")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_row(db.Row("Field survival (hop x field)"))
        .with_panel(survival_matrix("Survival matrix before repair (as received)", BEFORE_REPAIR))
        .with_panel(survival_matrix("Survival matrix after repair", AFTER_REPAIR))
        .with_panel(survival_heatmap())
        .with_row(db.Row("Readiness"))
        .with_panel(readiness_timeline())
        .with_panel(series("LLM spans in the readiness window", [
            (f"sum by (workflow) (costctx_readiness_llm_spans{{{JOB}}})", "{{workflow}}")], span=8))
        .with_row(db.Row("Spend"))
        .with_panel(share(
            "Unknown tenant share",
            f'sum(increase(costctx_spend_usd_total{{{JOB}, tenant="unknown"}}[$__range]))',
            "Spend with no owner.tenant, even after repair, over the time range.",
        ))
        .with_panel(share(
            "Recovered by repair",
            f"sum(increase(costctx_spend_recovered_usd_total{{{JOB}}}[$__range]))",
            "Spend whose owner.tenant was inherited from an ancestor: unknown without repair.",
        ))
        .with_panel(share(
            "Unknown without repair",
            f'sum(increase(costctx_spend_usd_total{{{JOB}, tenant="unknown"}}[$__range]))'
            f" + sum(increase(costctx_spend_recovered_usd_total{{{JOB}}}[$__range]))",
            "What the unknown share would be if costctx did not repair owner.tenant.",
        ))
        .with_panel(
            stat.Panel().title("Spend in range").unit("currencyUSD").decimals(2).height(4).span(6)
            .with_target(query(f"sum(increase(costctx_spend_usd_total{{{JOB}}}[$__range]))", instant=True))
        )
        .with_panel(series("Spend by tenant (USD/h)", [
            (f"3600 * {rate('costctx_spend_usd_total', 'tenant')}", "{{tenant}}")], unit="currencyUSD"))
        .with_panel(series("Spend by feature (USD/h)", [
            (f"3600 * {rate('costctx_spend_usd_total', 'feature')}", "{{feature}}")], unit="currencyUSD"))
        .with_panel(series("Unpriced model calls", [
            (rate("costctx_price_misses_total", "model, reason"), "{{model}} ({{reason}})")], unit="ops",
            description="Spans with a model or tokens that could not be priced."))
        .with_panel(series("Unknown and recovered spend (USD/h)", [
            ("3600 * " + rate("costctx_spend_usd_total", "job", 'tenant="unknown"'), "unknown tenant"),
            (f"3600 * {rate('costctx_spend_recovered_usd_total', 'job')}", "recovered by repair"),
        ], unit="currencyUSD"))
        .with_row(db.Row("Budgets"))
        .with_panel(series("Budget decisions", [
            (rate("costctx_budget_decisions_total", "policy, decision"), "{{policy}} {{decision}}")], unit="ops",
            span=8))
        .with_panel(series("Budget states of committed spans", [
            (rate("costctx_budget_span_states_total", "policy, state"), "{{policy}} {{state}}")], unit="ops",
            span=8, description="Model-call spans by the budget.state after them: soft, hard and tripped are "
                                "budgets near or at their limits."))
        .with_panel(series("Reservations", [
            (rate("costctx_budget_reservations_total", "outcome"), "{{outcome}}")], unit="ops", span=8))
        .with_panel(series("Budget store errors and breaker trips", [
            (rate("costctx_budget_store_errors_total", "operation, outcome"), "store {{operation}} {{outcome}}"),
            (f"sum by (kind) (increase(costctx_budget_breaker_trips_total{{{JOB}}}[$__rate_interval]))",
             "trip {{kind}}"),
        ], span=8))
        .with_row(db.Row("Pipeline health"))
        .with_panel(series("Accepted and refused items", [
            (rate("costctx_receiver_accepted_items_total", "signal"), "accepted {{signal}}"),
            (rate("costctx_receiver_refused_items_total", "signal, reason"), "refused {{signal}} {{reason}}"),
        ], unit="ops", span=8))
        .with_panel(series("Sent and failed items", [
            (rate("costctx_exporter_sent_items_total", "exporter"), "sent {{exporter}}"),
            (rate("costctx_exporter_send_failed_items_total", "exporter"), "failed {{exporter}}"),
            (rate("costctx_exporter_retries_total", "exporter"), "retries {{exporter}}"),
        ], unit="ops", span=8))
        .with_panel(series("Sending queue", [
            (f"sum by (exporter) (costctx_exporter_queue_size{{{JOB}}})", "size {{exporter}}"),
            (f"sum by (exporter) (costctx_exporter_queue_capacity{{{JOB}}})", "capacity {{exporter}}"),
        ], span=8))
        .with_panel(series("Held spans (inherit) and memory limiter", [
            (f"sum(costctx_inherit_hold_spans{{{JOB}}})", "held spans"),
            (f"sum(costctx_memory_limiter_refusing{{{JOB}}})", "pods refusing (memory)"),
        ], span=8))
        .with_panel(series("Pipeline latency", [
            (f"histogram_quantile({q}, sum by (le) (rate(costctx_pipeline_duration_seconds_bucket{{{JOB}}}"
             f"[$__rate_interval])))", f"p{int(q * 100)}")
            for q in (0.5, 0.99)
        ], unit="s", span=8, description="Time to run a request through the processors and enqueue it."))
        .with_panel(series("Processor errors", [
            (rate("costctx_processor_errors_total", "processor"), "{{processor}}")], unit="ops", span=8))
    )


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def panel_queries(dashboard_json: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard_json["panels"]
        for target in panel.get("targets", [])
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not current")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default {OUTPUT.relative_to(ROOT)}")
    args = parser.parse_args()
    text = render()
    json.loads(text)
    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            print(f"{args.output} is stale: run python scripts/gen_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
