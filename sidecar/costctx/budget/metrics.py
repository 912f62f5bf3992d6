"""The counters the budget engine and breaker report into. Their names, help texts and labels are
the `budget` processor's (processors/budget/metrics.py builds them); the engine only counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BudgetMetrics:
    # `.labels(...)` families: decisions(policy, decision), reservations(outcome),
    # store_errors(operation, outcome), breaker_trips(kind), span_states(policy, state),
    # untrusted_spans(reason)
    decisions: Any
    reservations: Any
    store_errors: Any
    breaker_trips: Any
    span_states: Any
    # plain counters: `.inc(n)`
    committed_spans: Any
    duplicate_spans: Any
    untrusted_spans: Any = None
