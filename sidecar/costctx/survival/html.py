"""The status page: the /survival document, pipeline health and budgets as one HTML page.

Server-rendered, self-contained (inline CSS, no scripts, no external assets: it must work in
an air-gapped cluster) and refreshed by the browser with a meta refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any

from costctx.survival.render import pct, usd

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}
.meta,.legend{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
thead th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cell{min-width:6.5em}
.cell .after{font-weight:600;font-size:1.05em}
.cell .before{display:block;font-size:.8em;color:#333}
.cell .gap{display:block;font-size:.8em;color:#333}
.pass{background:#c8efc8}.conditional{background:#ffe9a8}.fail{background:#f7b9b3}.none{background:#eee}
.repaired{outline:2px dashed #1f5fbf;outline-offset:-4px}
.mark{display:inline-block;font-size:.75em;color:#fff;background:#1f5fbf;border-radius:3px;
  padding:0 .3em;margin-left:.3em}
.verdict{font-weight:700;text-transform:uppercase}
.badge{padding:0 .4em;border-radius:3px}
"""


def _level(rate: float | None, thresholds: dict[str, float]) -> str:
    if rate is None:
        return "none"
    if rate >= thresholds["pass"]:
        return "pass"
    if rate >= thresholds["conditional"]:
        return "conditional"
    return "fail"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def _table(header: Iterable[str], rows: Iterable[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def matrix_cell(hop: str, field: str, cell: dict[str, Any], thresholds: dict[str, float]) -> str:
    before, after = cell["rate_before_repair"], cell["rate_after_repair"]
    repaired = cell.get("inherited", 0) > 0
    classes = ["cell", _level(after, thresholds)] + (["repaired"] if repaired else [])
    title = (
        f"{field} at {hop}: {cell['spans']} spans; present {cell['present']}, renamed {cell['renamed']}, "
        f"inherited {cell['inherited']}, missing {cell['missing']}, conflict {cell['conflict']}"
    )
    parts = [f'<span class="after">{pct(after)}</span>']
    if repaired:
        parts.append(f'<span class="mark">repaired {cell["inherited"]}</span>')
    parts.append(f'<span class="before">before repair {pct(before)}</span>')
    if cell["gap"] != "none":
        parts.append(f'<span class="gap">{escape(cell["gap"])}</span>')
    return (
        f'<td class="{" ".join(classes)}" data-hop="{escape(hop)}" data-field="{escape(field)}" '
        f'data-before="{pct(before)}" data-after="{pct(after)}" data-repaired="{str(repaired).lower()}" '
        f'title="{escape(title)}">{"".join(parts)}</td>'
    )


def render_matrix(report: dict[str, Any]) -> str:
    hops = report["matrix"]["hops"]
    thresholds = report["readiness"]["thresholds"]
    if not hops:
        return "<h2>Field survival by hop</h2><p>No spans yet.</p>"
    head = '<th>field</th>' + "".join(
        f'<th data-hop="{escape(h["hop"])}">{escape(h["hop"])}<br><small>depth '
        f'{"?" if h["depth"] is None else h["depth"]} &middot; {h["spans"]} spans</small></th>'
        for h in hops
    )
    rows = []
    for row in report["matrix"]["fields"]:
        field = row["field"]
        cells = "".join(matrix_cell(h["hop"], field, row["hops"][h["hop"]], thresholds) for h in hops)
        rows.append(f'<tr data-field="{escape(field)}"><th>{escape(field)}</th>{cells}</tr>')
    legend = (
        f'<p class="legend">Share of spans carrying the field after repair (colour: '
        f'<span class="badge pass">&ge; {pct(thresholds["pass"])}</span> '
        f'<span class="badge conditional">&ge; {pct(thresholds["conditional"])}</span> '
        f'<span class="badge fail">below</span>), and as received (before repair). '
        f'<span class="mark">repaired</span> cells, outlined, had the field filled from an ancestor.</p>'
    )
    return (
        f'<h2>Field survival by hop</h2>{legend}<table id="survival-matrix"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def render_readiness(report: dict[str, Any]) -> str:
    workflows = report["readiness"]["workflows"]
    if not workflows:
        return "<h2>Readiness per workflow</h2><p>No LLM spans yet.</p>"
    rows = []
    for wf in workflows:
        failing = ", ".join(
            f"{name} {pct(c['rate_after_repair'])}"
            for c in wf["checks"]
            if not c["passed"]
            for name in c.get("failing_fields", [])
        )
        rows.append(
            f'<tr data-workflow="{escape(wf["workflow"])}"><td>{escape(wf["workflow"])}</td>'
            f'<td class="num">{wf["llm_spans"]}</td>'
            f'<td class="verdict {wf["verdict"]}">{wf["verdict"]}</td>'
            f'<td class="verdict {wf["verdict_before_repair"]}">{wf["verdict_before_repair"]}</td>'
            f"<td>{escape(failing) or '-'}</td></tr>"
        )
    window = report["readiness"]["window_seconds"]
    return (
        f"<h2>Readiness per workflow</h2><p class=\"legend\">Ten checks over the LLM spans of the last "
        f"{window:.0f} s.</p>"
        + _table(["workflow", "LLM spans", "verdict", "before repair", "failing"], rows, "readiness")
    )


def render_spend(report: dict[str, Any]) -> str:
    spend = report["spend"]
    summary = (
        f'<p id="spend-summary">Total {usd(spend["total_usd"])}; unknown tenant '
        f'{pct(spend["unknown_tenant_share"])}; recovered by repair {usd(spend["recovered_by_repair_usd"])} '
        f'(unknown without repair: {pct(spend["unknown_without_repair_share"])}).</p>'
    )
    if not spend["by_dimensions"]:
        return f"<h2>Spend</h2>{summary}"
    dims = [k for k in spend["by_dimensions"][0] if k not in ("usd", "recovered_by_repair_usd")]
    rows = [
        "<tr>" + "".join(f"<td>{escape(str(row[d]))}</td>" for d in dims)
        + f'<td class="num">{usd(row["usd"])}</td><td class="num">{usd(row["recovered_by_repair_usd"])}</td></tr>'
        for row in spend["by_dimensions"]
    ]
    by_workflow = [
        f'<tr><td>{escape(row["workflow"])}</td><td>{escape(row["tenant"])}</td>'
        f'<td class="num">{usd(row["usd"])}</td><td class="num">{usd(row["recovered_by_repair_usd"])}</td></tr>'
        for row in spend["by_workflow_tenant"]
    ]
    return (
        f"<h2>Spend</h2>{summary}"
        + _table([*dims, "spend", "recovered by repair"], rows, "spend-by-dimensions")
        + _table(["workflow", "tenant", "spend", "recovered by repair"], by_workflow, "spend-by-workflow")
    )


def render_budgets(budgets: list[dict[str, Any]]) -> str:
    if not budgets:
        return "<h2>Budgets</h2><p>No budget policy has matched a span or a check yet.</p>"
    level = {"over limit": "fail", "near limit": "conditional", "ok": "pass"}
    columns = ("ok", "soft", "hard", "tripped", "allow", "degrade", "block")
    rows = [
        f'<tr data-policy="{escape(b["policy"])}" data-state="{b["state"]}">'
        f'<td>{escape(b["policy"]) or "(no policy)"}</td>'
        f'<td class="{level[b["state"]]}">{b["state"]}</td>'
        + "".join(f'<td class="num">{_num(b[c])}</td>' for c in columns)
        + "</tr>"
        for b in budgets
    ]
    return (
        '<h2>Budgets</h2><p class="legend">Per policy since start, nearest their limits first: model-call '
        "spans by the budget state after them (soft: past the soft threshold; hard: at the limit; "
        "tripped: a breaker open), and budget checks answered.</p>"
        + _table(["policy", "state", "spans ok", "soft", "hard", "tripped", "checks allow", "degrade", "block"],
                 rows, "budgets")
    )


def render_health(health: list[dict[str, Any]]) -> str:
    rows = []
    for row in health:
        split = ", ".join(f"{escape(k)} {_num(v)}" for k, v in row["by"].items())
        bad = row["total"] > 0 and row["metric"] in (
            "costctx_exporter_send_failed_items_total", "costctx_memory_limiter_refusing",
            "costctx_processor_errors_total", "costctx_receiver_refused_items_total",
        )
        rows.append(
            f'<tr data-metric="{row["metric"]}"><td>{escape(row["name"])}</td>'
            f'<td class="num{" fail" if bad else ""}">{_num(row["total"])}</td><td>{split or "-"}</td></tr>'
        )
    return "<h2>Pipeline health</h2>" + _table(["", "total", "by"], rows, "health")


def render_status_page(
    report: dict[str, Any],
    health: list[dict[str, Any]],
    budgets: list[dict[str, Any]],
    refresh_seconds: int = 5,
    now: datetime | None = None,
) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "".join(
        (
            render_matrix(report),
            render_readiness(report),
            render_spend(report),
            render_budgets(budgets),
            render_health(health),
        )
    )
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="refresh" content="{refresh_seconds}">'
        f"<title>costctx status</title><style>{STYLE}</style></head><body>"
        f'<h1>costctx status</h1><p class="meta">Envelope schema {escape(str(report["schema"]))} &middot; '
        f"{stamp} &middot; this page reloads every {refresh_seconds} s &middot; "
        '<a href="/survival">/survival</a> (JSON) &middot; <a href="/metrics">/metrics</a></p>'
        f"{body}</body></html>\n"
    )
