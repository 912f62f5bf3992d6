"""Terminal rendering of the /survival document: the matrix (hops as columns), verdicts, spend."""

from __future__ import annotations

from typing import Any


def pct(rate: float | None) -> str:
    if rate is None:
        return "-"
    if rate >= 1.0:
        return "100%"
    if rate <= 0.0:
        return "0%"
    return f"{rate * 100:.1f}%"


def cell_text(cell: dict[str, Any]) -> str:
    """The survival rate (before -> after repair when repair changed it) and the gap it names."""
    before, after = cell["rate_before_repair"], cell["rate_after_repair"]
    rate = pct(after) if before == after else f"{pct(before)}->{pct(after)}"
    gap = cell["gap"]
    return rate if gap == "none" else f"{rate} {gap}"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip() for row in rows]


def render_matrix(report: dict[str, Any]) -> list[str]:
    hops = report["matrix"]["hops"]
    if not hops:
        return ["Field survival: no spans yet"]
    rows = [
        ["field"] + [h["hop"] for h in hops],
        ["  hop depth"] + ["?" if h["depth"] is None else str(h["depth"]) for h in hops],
        ["  spans"] + [str(h["spans"]) for h in hops],
    ]
    for row in report["matrix"]["fields"]:
        rows.append([row["field"]] + [cell_text(row["hops"][h["hop"]]) for h in hops])
    lines = ["Field survival by hop (hops ordered by hop depth; rate before->after repair, and the gap):"]
    return lines + _table(rows)


def render_verdicts(report: dict[str, Any]) -> list[str]:
    readiness = report["readiness"]
    t = readiness["thresholds"]
    lines = [
        f"Readiness per workflow.name (ten checks over LLM spans after repair; "
        f"pass >= {pct(t['pass'])}, conditional >= {pct(t['conditional'])}):"
    ]
    if not readiness["workflows"]:
        return lines + ["  no LLM spans yet"]
    rows = [["workflow.name", "LLM spans", "verdict", "before repair", "failing"]]
    for wf in readiness["workflows"]:
        failing = [
            f"{name} {pct(c['rate_after_repair'])}"
            for c in wf["checks"]
            if not c["passed"]
            for name in c.get("failing_fields", [])
        ]
        rows.append([wf["workflow"], str(wf["llm_spans"]), wf["verdict"].upper(),
                     wf["verdict_before_repair"].upper(), ", ".join(failing) or "-"])
    why = {name: text for wf in readiness["workflows"] for name, text in wf.get("why", {}).items()}
    return lines + _table(rows) + [f"  {name}: {text}" for name, text in sorted(why.items())]


def usd(amount: float) -> str:
    return f"${amount:,.6f}"


def render_spend(report: dict[str, Any]) -> list[str]:
    spend = report["spend"]
    lines = ["Spend by workflow and tenant (cost.usd of forwarded spans):"]
    if not spend["by_workflow_tenant"]:
        return lines + ["  no priced spans yet"]
    rows = [["workflow.name", "tenant", "spend", "tenant filled by repair"]]
    for row in spend["by_workflow_tenant"]:
        rows.append([row["workflow"], row["tenant"], usd(row["usd"]), usd(row["recovered_by_repair_usd"])])
    lines += _table(rows)
    lines.append(
        f"  total {usd(spend['total_usd'])}; unknown tenant {pct(spend['unknown_tenant_share'])}; "
        f"would have been unknown without repair {pct(spend['unknown_without_repair_share'])}"
    )
    lines.append(f"  settled late (context arrived after the span left) {usd(spend.get('settled_usd', 0.0))}; "
                 f"still pending {pct(spend.get('pending_share'))}")
    return lines


def render_report(report: dict[str, Any], include_spend: bool = False) -> str:
    sections = [render_matrix(report), render_verdicts(report)]
    if include_spend:
        sections.append(render_spend(report))
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
