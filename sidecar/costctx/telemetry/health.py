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
    return rows


def budget_decisions(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Per budget policy: checks answered allow / degrade / block. A policy that answered
    `degrade` has a budget past its soft threshold; `block`, one at its hard limit or tripped."""
    per_policy: dict[str, dict[str, float]] = defaultdict(lambda: {"allow": 0.0, "degrade": 0.0, "block": 0.0})
    for labels, value in _samples(registry).get("costctx_budget_decisions_total", []):
        # Summed: one series per budget processor (`processor` label) may name the same policy.
        per_policy[labels.get("policy", "")][labels.get("decision", "")] += value
    rows = []
    for policy, counts in sorted(per_policy.items()):
        state = "over limit" if counts.get("block") else "near limit" if counts.get("degrade") else "ok"
        rows.append({"policy": policy, **counts, "state": state})
    # Budgets closest to their limits first.
    order = {"over limit": 0, "near limit": 1, "ok": 2}
    return sorted(rows, key=lambda row: order[row["state"]])
