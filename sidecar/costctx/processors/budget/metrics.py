"""The budget's counters, on the sidecar's Prometheus registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BudgetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "costctx_budget_decisions",
            "Budget checks answered, by policy and decision (allow, degrade, block).",
            ["policy", "decision"],
            registry=registry,
        )
        self.reservations = Counter(
            "costctx_budget_reservations",
            "Reservations by outcome: reserved, committed (replaced by a priced span), released, expired.",
            ["outcome"],
            registry=registry,
        )
        self.store_errors = Counter(
            "costctx_budget_store_errors",
            "Budget store (Redis) unreachable, by operation and what was done (fail_open, fail_closed, "
            "unstamped: spans forwarded without their spend counted).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.breaker_trips = Counter(
            "costctx_budget_breaker_trips",
            "Circuit breaker trips, by kind (tenant_velocity, workflow_median).",
            ["kind"],
            registry=registry,
        )
        self.committed_spans = Counter(
            "costctx_budget_committed_spans",
            "Model-call spans whose actual cost and tokens were added to the budget counters.",
            registry=registry,
        )
        self.duplicate_spans = Counter(
            "costctx_budget_duplicate_spans",
            "Model-call spans received again (a resent batch) and not counted twice.",
            registry=registry,
        )
