"""Pipeline health and budget decisions, read back from the sidecar's own Prometheus registry.

The status page shows what /metrics serves, so the two never disagree; reading the registry
costs one collect per page view, not a second set of counters on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry

# (status page row, sample name, label that splits the row or None)
HEALTH_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("accepted items", "costctx_receiver_accepted_items_total", "signal"),
    ("refused items", "costctx_receiver_refused_items_total", "reason"),
    ("sent items", "costctx_exporter_sent_items_total", "exporter"),
    ("send failed items", "costctx_exporter_send_failed_items_total", "exporter"),
    ("retries", "costctx_exporter_retries_total", "reason"),
    ("queue size (batches)", "costctx_exporter_queue_size", "exporter"),
    ("queue capacity (batches)", "costctx_exporter_queue_capacity", "exporter"),
    ("held spans now", "costctx_inherit_hold_spans", None),
    ("memory limiter refusing", "costctx_memory_limiter_refusing", None),
    ("processor errors", "costctx_processor_errors_total", "processor"),
)


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in registry.collect():
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def pipeline_health(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """One row per HEALTH_ROWS entry: its total and its split. Counters with no sample yet are 0
    (a labelled counter has no series until its first increment)."""
    samples = _samples(registry)
    rows = []
    for title, name, split in HEALTH_ROWS:
        if name not in samples and not name.endswith("_total"):
            continue  # a gauge of a component this pipeline does not have (memory_limiter, inherit)
        parts: dict[str, float] = defaultdict(float)
        for labels, value in samples.get(name, []):
            parts[labels.get(split, "") if split else ""] += value
        rows.append(
            {
                "name": title,
                "metric": name,
                "total": sum(parts.values()),
                "by": {k: v for k, v in sorted(parts.items()) if k} if split else {},
            }
        )
    rows.append(_mean_latency(samples))
    return rows


def _mean_latency(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, Any]:
    """Mean pipeline latency per request (ms), from the histogram's _sum and _count, by signal."""
    sums = {labels.get("signal", ""): v for labels, v in samples.get("costctx_pipeline_duration_seconds_sum", [])}
    counts = {labels.get("signal", ""): v for labels, v in samples.get("costctx_pipeline_duration_seconds_count", [])}
    total = sum(counts.values())
    by = {signal: 1000 * sums.get(signal, 0.0) / n for signal, n in sorted(counts.items()) if n}
    return {
        "name": "mean pipeline latency (ms)",
        "metric": "costctx_pipeline_duration_seconds",
        "total": 1000 * sum(sums.values()) / total if total else 0.0,
        "by": by,
    }


BUDGET_STATES = ("ok", "soft", "hard", "tripped")
BUDGET_DECISIONS = ("allow", "degrade", "block")


def budget_summary(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Per budget policy, since the sidecar started: committed spans by the budget state after
    them (ok, soft, hard, tripped) and checks answered (allow, degrade, block), nearest their
    limits first. Soft spans or degrade answers: near the limit; hard, tripped or block: over."""
    samples = _samples(registry)
    per_policy: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(BUDGET_STATES + BUDGET_DECISIONS, 0.0))
    for name, label in (("costctx_budget_span_states_total", "state"), ("costctx_budget_decisions_total", "decision")):
        for labels, value in samples.get(name, []):
            # Summed: several budget processors (budget, budget/b) may share a policy id.
            row, key = per_policy[labels.get("policy", "")], labels.get(label, "")
            row[key] = row.get(key, 0.0) + value
    rows = []
    for policy, counts in per_policy.items():
        if counts["hard"] or counts["tripped"] or counts["block"]:
            state = "over limit"
        elif counts["soft"] or counts["degrade"]:
            state = "near limit"
        else:
            state = "ok"
        rows.append({"policy": policy, **counts, "state": state})
    order = {"over limit": 0, "near limit": 1, "ok": 2}
    return sorted(rows, key=lambda row: (order[row["state"]], row["policy"]))
