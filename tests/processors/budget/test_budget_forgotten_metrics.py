"""The budget's bounded tables (the commit-once set, the memory store) report what they forget
on /metrics, read from the tables themselves at scrape time."""

from __future__ import annotations

from tests.support.processors import standalone_processor


def test_commit_once_and_store_evictions_are_exported() -> None:
    budget = standalone_processor("budget/b")
    value = budget.host.metrics.registry.get_sample_value

    def forgotten(table: str, reason: str) -> float | None:
        return value("costctx_table_forgotten_total", {"processor": "budget/b", "table": table, "reason": reason})

    assert forgotten("budget_commit_once", "evicted") == 0
    assert forgotten("budget_store", "evicted") == 0
    # The tables' own counts (their bounds are 172,714 spans and 50,000 counters: too many to fill here).
    budget._committed.evicted, budget._committed.expired = 5, 2
    budget.engine.store.evicted_total = 9
    assert forgotten("budget_commit_once", "evicted") == 5
    assert forgotten("budget_commit_once", "expired") == 2
    assert forgotten("budget_store", "evicted") == 9
