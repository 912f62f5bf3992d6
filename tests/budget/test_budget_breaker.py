"""The circuit breaker's per-`workflow.name` medians stay bounded whatever names spans carry."""

from __future__ import annotations

from costctx.budget.breaker import MAX_WORKFLOW_NAMES, Breaker
from costctx.budget.policy import Context, SpanSpend
from costctx.budget.store import CommitResult
from costctx.processors.budget.config import BreakerConfig
from costctx.processors.budget.metrics import budget_metrics
from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics


def observe(breaker: Breaker, workflow_name: str, workflow_id: str, spent_micro: int) -> list:
    spend = SpanSpend(Context(workflow_id, workflow_name), spent_micro, 0, 1, 0, 1_000.0, None)
    return breaker.observe(spend, {"workflow.cost_usd": 0}, CommitResult(False, [spent_micro]), 1_000.0)


def test_workflow_names_are_bounded_and_a_busy_name_keeps_its_median():
    metrics = budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget"))
    breaker = Breaker(BreakerConfig(workflow_median_multiple=5.0, min_samples=5), metrics)
    for i in range(5):
        observe(breaker, "triage", f"typical-{i}", 1_000_000)
    # A flood of one-off names (client-chosen strings) with the busy name seen now and then.
    for i in range(MAX_WORKFLOW_NAMES + 500):
        observe(breaker, f"name-{i}", f"wf-{i}", 1_000_000)
        if i % 1000 == 0:
            observe(breaker, "triage", f"typical-{i % 5}", 1_000_000)
    assert len(breaker._recent) == MAX_WORKFLOW_NAMES
    assert "name-0" not in breaker._recent  # the least recently seen went first
    # The busy name kept its samples: a workflow at 10x its median still trips.
    trips = observe(breaker, "triage", "runaway", 10_000_000)
    assert [kind for kind, _, _ in trips] == ["workflow_median"]
