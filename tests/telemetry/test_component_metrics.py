"""Metrics built one way: each family once per registry, every instance bound to its id."""

from __future__ import annotations

import pytest
from prometheus_client import Counter, Gauge

from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics


def test_instances_share_families_and_keep_their_own_samples() -> None:
    metrics = SidecarMetrics()
    first = ComponentMetrics(metrics, "processor", "budget")
    second = ComponentMetrics(metrics, "processor", "budget/b")
    a = first.counter("costctx_x_decisions", "Decisions.", ["decision"])
    b = second.counter("costctx_x_decisions", "Decisions.", ["decision"])
    a.labels("allow").inc()
    b.labels("allow").inc(2)
    first.counter("costctx_x_plain", "No labels of its own.").inc(3)
    value = metrics.registry.get_sample_value
    assert value("costctx_x_decisions_total", {"processor": "budget", "decision": "allow"}) == 1
    assert value("costctx_x_decisions_total", {"processor": "budget/b", "decision": "allow"}) == 2
    assert value("costctx_x_plain_total", {"processor": "budget"}) == 3


def test_a_name_asked_for_with_another_shape_is_refused() -> None:
    metrics = SidecarMetrics()
    metrics.family(Counter, "costctx_x", "Doc.", ["processor"])
    with pytest.raises(ValueError, match="costctx_x registered as Counter"):
        metrics.family(Gauge, "costctx_x", "Doc.", ["processor"])
    with pytest.raises(ValueError, match="asked for as Counter\\('processor', 'kind'\\)"):
        metrics.family(Counter, "costctx_x", "Doc.", ["processor", "kind"])


def test_read_counters_are_read_at_scrape_time_one_sample_per_label_set() -> None:
    metrics = SidecarMetrics()
    table = {"evicted": 0}
    first = ComponentMetrics(metrics, "processor", "budget")
    first.read_counter("costctx_x_forgotten", "Forgotten.", ["table"], ("seen",), lambda: table["evicted"])
    ComponentMetrics(metrics, "processor", "budget/b").read_counter(
        "costctx_x_forgotten", "Forgotten.", ["table"], ("seen",), lambda: 7)
    value = metrics.registry.get_sample_value
    assert value("costctx_x_forgotten_total", {"processor": "budget", "table": "seen"}) == 0
    table["evicted"] = 3  # counted by the table itself; nothing else updated
    assert value("costctx_x_forgotten_total", {"processor": "budget", "table": "seen"}) == 3
    assert value("costctx_x_forgotten_total", {"processor": "budget/b", "table": "seen"}) == 7
    # A component built again under the same id replaces its reader (no duplicate sample).
    first.read_counter("costctx_x_forgotten", "Forgotten.", ["table"], ("seen",), lambda: 1)
    samples = [s for m in metrics.registry.collect() if m.name == "costctx_x_forgotten" for s in m.samples
               if s.labels["processor"] == "budget"]
    assert [s.value for s in samples] == [1]
    with pytest.raises(ValueError, match="takes labels"):
        first.read_counter("costctx_x_forgotten", "Forgotten.", ["table"], ("seen", "extra"), lambda: 0)
    with pytest.raises(ValueError, match="registered with labels"):
        first.read_counter("costctx_x_forgotten", "Forgotten.", ["kind"], ("seen",), lambda: 0)
