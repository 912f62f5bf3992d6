"""The /survival document: the field-survival matrix, readiness verdicts and spend.

Built from a SurvivalSnapshot on request; plain JSON types only, so the CLI, the demo and
scripts read the same document.
"""

from __future__ import annotations

from typing import Any

from costctx.envelope import ENVELOPE
from costctx.pricing.money import to_usd_float
from costctx.survival.recorder import OUTCOMES, SurvivalSnapshot, dimension_label

# The gap a cell names: its most severe non-present outcome (contract: ENVELOPE.md).
GAP_PRIORITY = ("missing", "conflict", "inherited", "renamed")
VERDICTS = ("pass", "conditional", "fail")


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def hop_order(snapshot: SurvivalSnapshot) -> list[str]:
    """Hops by the smallest workflow.hop_depth seen (no depth known: last), then by name."""
    far = 1 << 30
    return sorted(snapshot.hop_spans, key=lambda hop: (snapshot.hop_depth.get(hop, far), hop))


def cell_gap(counts: dict[str, int]) -> str:
    for outcome in GAP_PRIORITY:
        if counts.get(outcome):
            return ENVELOPE.outcomes[outcome]
    return ENVELOPE.outcomes["present"]


def matrix(snapshot: SurvivalSnapshot) -> dict[str, Any]:
    hops = hop_order(snapshot)
    rows = []
    for key in snapshot.fields:
        cells = {}
        for hop in hops:
            spans = snapshot.hop_spans[hop]
            counts = {o: snapshot.counts.get((hop, key, o), 0) for o in OUTCOMES}
            before = counts["present"] + counts["renamed"]
            after = before + counts["inherited"]
            cells[hop] = {
                "spans": spans,
                **counts,
                "rate_before_repair": _rate(before, spans),
                "rate_after_repair": _rate(after, spans),
                "gap": cell_gap(counts),
            }
        rows.append({"field": key, "hops": cells})
    return {
        "hops": [{"hop": h, "depth": snapshot.hop_depth.get(h), "spans": snapshot.hop_spans[h]} for h in hops],
        "fields": rows,
    }


def verdict_for(rates: list[float], thresholds: dict[str, float]) -> str:
    worst = min(rates, default=0.0)
    if worst >= thresholds["pass"]:
        return "pass"
    if worst >= thresholds["conditional"]:
        return "conditional"
    return "fail"


def readiness(snapshot: SurvivalSnapshot) -> list[dict[str, Any]]:
    thresholds = snapshot.thresholds
    out = []
    for workflow in sorted(snapshot.readiness):
        row = snapshot.readiness[workflow]
        n = row.llm_spans
        checks = []
        failing: list[str] = []
        for check in snapshot.checks:
            after = row.passed_after.get(check.id, 0) / n
            before = row.passed_before.get(check.id, 0) / n
            keys = (*check.all_of, *check.any_of)
            entry: dict[str, Any] = {
                "id": check.id,
                "name": check.name,
                "fields": list(keys) or [f"otlp:{check.otlp}"],
                "rate_before_repair": before,
                "rate_after_repair": after,
                "passed": after >= thresholds["pass"],
            }
            if not entry["passed"]:
                if check.any_of and not check.all_of:
                    named = [" or ".join(check.any_of)]
                elif keys:
                    # Name the keys that are themselves below the bar (all_of checks).
                    named = [k for k in check.all_of if row.absent.get(k, 0) / n > 1 - thresholds["pass"]]
                    named = named or list(check.all_of)
                else:
                    named = [check.name]
                entry["failing_fields"] = named
                failing.extend(f for f in named if f not in failing)
            checks.append(entry)
        out.append(
            {
                "workflow": workflow,
                "llm_spans": n,
                "verdict": verdict_for([c["rate_after_repair"] for c in checks], thresholds),
                "verdict_before_repair": verdict_for([c["rate_before_repair"] for c in checks], thresholds),
                "failing_fields": failing,
                # why a failing field is missing, where the sidecar knows (no policy configured)
                "why": {f: snapshot.unstamped[f] for f in failing if f in snapshot.unstamped},
                "checks": checks,
            }
        )
    return out


def spend(snapshot: SurvivalSnapshot) -> dict[str, Any]:
    dims = snapshot.spend_dimensions
    by_workflow: dict[str, list[int]] = {}
    by_dims: dict[tuple[str, ...], list[int]] = {}
    by_workflow_tenant: dict[tuple[str, str], list[int]] = {}
    tenant_index = dims.index("owner.tenant") if "owner.tenant" in dims else None
    total = recovered = unknown = settled = 0
    for (workflow, values), row in snapshot.spend.items():
        if not row.spans and not row.total:
            continue  # every span of the row was settled onto another
        settled += row.settled
        for table, key in ((by_workflow, workflow), (by_dims, values)):
            acc = table.setdefault(key, [0, 0])
            acc[0] += row.total
            acc[1] += row.recovered
        if tenant_index is not None:
            acc = by_workflow_tenant.setdefault((workflow, values[tenant_index]), [0, 0])
            acc[0] += row.total
            acc[1] += row.recovered
            if values[tenant_index] == "unknown":
                unknown += row.total
        total += row.total
        recovered += row.recovered

    def share(part: int) -> float | None:
        return part / total if total else None

    return {
        "dimensions": list(dims),
        "total_usd": to_usd_float(total),
        "unknown_tenant_usd": to_usd_float(unknown),
        "unknown_tenant_share": share(unknown),
        # Spend whose owner.tenant was filled by repair: it would have been unknown without it.
        "recovered_by_repair_usd": to_usd_float(recovered),
        "unknown_without_repair_share": share(unknown + recovered),
        # Spend forwarded without its context and attributed later (the attribution record),
        # and the part still waiting for it (within the attribution window).
        "settled_usd": to_usd_float(settled),
        "pending_usd": to_usd_float(snapshot.pending_spend),
        "pending_share": share(snapshot.pending_spend),
        "by_workflow": [
            {"workflow": w, "usd": to_usd_float(t), "recovered_by_repair_usd": to_usd_float(r)}
            for w, (t, r) in sorted(by_workflow.items(), key=lambda item: -item[1][0])
        ],
        "by_workflow_tenant": [
            {"workflow": w, "tenant": tenant, "usd": to_usd_float(t), "recovered_by_repair_usd": to_usd_float(r)}
            for (w, tenant), (t, r) in sorted(by_workflow_tenant.items(), key=lambda item: -item[1][0])
        ],
        "by_dimensions": [
            {**{dimension_label(d): v for d, v in zip(dims, values, strict=True)}, "usd": to_usd_float(t),
             "recovered_by_repair_usd": to_usd_float(r)}
            for values, (t, r) in sorted(by_dims.items(), key=lambda item: -item[1][0])
        ],
    }


def survival_report(snapshot: SurvivalSnapshot) -> dict[str, Any]:
    return {
        "schema": ENVELOPE.schema_version,
        "outcomes": dict(ENVELOPE.outcomes),
        "matrix": matrix(snapshot),
        "readiness": {
            "thresholds": dict(snapshot.thresholds),
            "window_seconds": snapshot.readiness_window,
            "workflows": readiness(snapshot),
        },
        "spend": spend(snapshot),
    }
