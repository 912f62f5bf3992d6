"""The `budget` processor's metrics, labelled `processor=<id>` (families shared by every instance)."""

from __future__ import annotations

from costctx.budget.metrics import BudgetMetrics
from costctx.telemetry.metrics import ComponentMetrics


def budget_metrics(m: ComponentMetrics) -> BudgetMetrics:
    return BudgetMetrics(
        decisions=m.counter(
            "costctx_budget_decisions",
            "Budget checks answered, by policy and decision (allow, degrade, block).",
            ["policy", "decision"],
        ),
        reservations=m.counter(
            "costctx_budget_reservations",
            "Reservations by outcome: reserved, committed (replaced by a priced span), released, expired, "
            "refused (named by a span of another workflow or tenant).",
            ["outcome"],
        ),
        store_errors=m.counter(
            "costctx_budget_store_errors",
            "Budget store (Redis) unreachable, by operation and what was done (fail_open, fail_closed, "
            "unstamped: spans forwarded without their spend counted).",
            ["operation", "outcome"],
        ),
        breaker_trips=m.counter(
            "costctx_budget_breaker_trips",
            "Circuit breaker trips, by kind (tenant_velocity, workflow_median).",
            ["kind"],
        ),
        span_states=m.counter(
            "costctx_budget_span_states",
            "Committed model-call spans by policy and the budget state after them (ok, soft, hard, "
            "tripped): how close each policy's budgets run to their limits.",
            ["policy", "state"],
        ),
        committed_spans=m.counter(
            "costctx_budget_committed_spans",
            "Model-call spans whose actual cost and tokens were added to the budget counters.",
        ),
        duplicate_spans=m.counter(
            "costctx_budget_duplicate_spans",
            "Model-call spans received again (a resent batch) and not counted twice.",
        ),
        untrusted_spans=m.counter(
            "costctx_budget_untrusted_spans",
            "Model-call spans whose data was not taken as sent, by reason: clock_skew (end time moved "
            "to the sidecar's clock), cost_capped (cost over max_call_usd, recomputed from tokens), "
            "bad_reservation_id (ignored).",
            ["reason"],
        ),
    )
