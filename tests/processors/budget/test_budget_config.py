"""Budget config validation, and estimates from the price processor's price book."""

from __future__ import annotations

import pytest

from costctx.client.budget import BudgetClient
from costctx.pricing.book import builtin_book
from costctx.service.config.loader import ConfigError, build_config
from tests.support.sidecar import sidecar_config, start_sidecar


def config_with(sink_port: int, budget: dict, processors=("budget",)) -> dict:
    config = sidecar_config(sink_port, processors=list(processors))
    config["processors"]["budget"] = budget
    return config


@pytest.mark.parametrize(("budget", "message"), [
    ({"policies": [{"id": "p", "workflow": {"cost_usd": -1}}]}, "processors.budget.policies.0.workflow.cost_usd"),
    ({"policies": [{"id": "p", "soft_threshold": 0.9, "hard_threshold": 0.5}]}, "soft_threshold must not exceed"),
    ({"policies": [{"id": "p"}, {"id": "p"}]}, "duplicate policy ids: p"),
    ({"default_policy": "nope", "policies": []}, "default_policy 'nope'"),
    ({"backend": "etcd"}, "processors.budget.backend"),
    ({"policies": [{"id": "p", "workflow": {"wall_clock": "soon"}}]}, "invalid duration"),
    ({"policies": [{"id": "p", "budgets": {}}]}, "unknown key"),
])
def test_bad_budget_config_names_the_key(budget, message):
    with pytest.raises(ConfigError) as info:
        build_config(config_with(4317, budget), environ={})
    assert message in str(info.value)


def test_token_estimates_are_priced_from_the_price_book(sink):
    budget = {"policies": [{"id": "p", "workflow": {"cost_usd": 0.05},
                            "downgrade": {"gpt-4o": "gpt-4o-mini"}}]}
    runner = start_sidecar(config_with(sink.grpc_port, budget, processors=("price", "budget")))
    try:
        client = BudgetClient(f"127.0.0.1:{runner.sidecar.grpc_port}")
        book = runner.sidecar.host.price_book
        expected = book.estimate("gpt-4o", 2000, 500).usd
        d = client.check(model="gpt-4o", input_tokens=2000, output_tokens=500, workflow_id="wf-a", policy_id="p")
        assert d.decision == "ALLOW" and d.response.reserved_cost_usd == pytest.approx(expected, abs=1e-6)
        # Past the soft threshold: the cheaper model is re-priced from the same tokens.
        d = client.check(model="gpt-4o", input_tokens=15000, output_tokens=500, workflow_id="wf-b", policy_id="p")
        cheaper = book.estimate("gpt-4o-mini", 15000, 500).usd
        assert d.decision == "DEGRADE" and d.model == "gpt-4o-mini"
        assert d.response.reserved_cost_usd == pytest.approx(cheaper, abs=1e-6)
        # A dollar estimate above the book's wins (the larger of the two).
        d = client.check(model="gpt-4o", estimated_cost_usd=0.02, input_tokens=10, output_tokens=10,
                         workflow_id="wf-c", policy_id="p")
        assert d.response.reserved_cost_usd == pytest.approx(0.02)
        client.close()
    finally:
        runner.stop()


def test_token_estimates_without_a_price_processor_use_the_builtin_table(sink):
    """The host owns the price book: a pipeline with `budget` and no `price` still prices a check's
    tokens (from the table shipped in the package), instead of silently reserving nothing."""
    budget = {"policies": [{"id": "p", "workflow": {"cost_usd": 0.05}}]}
    runner = start_sidecar(config_with(sink.grpc_port, budget, processors=("budget",)))
    try:
        client = BudgetClient(f"127.0.0.1:{runner.sidecar.grpc_port}")
        expected = builtin_book().estimate("gpt-4o", 2000, 500)
        assert expected is not None and expected.usd > 0
        d = client.check(model="gpt-4o", input_tokens=2000, output_tokens=500, workflow_id="wf-a", policy_id="p")
        assert d.decision == "ALLOW" and d.response.reserved_cost_usd == pytest.approx(expected.usd, abs=1e-6)
        client.close()
    finally:
        runner.stop()
