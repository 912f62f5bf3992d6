"""The circuit breaker's per-`workflow.name` medians stay bounded whatever names spans carry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
        breaker.finish(f"typical-{i}")  # its root span arrived
    # A flood of one-off names (client-chosen strings) with the busy name seen now and then.
    for i in range(MAX_WORKFLOW_NAMES + 500):
        observe(breaker, f"name-{i}", f"wf-{i}", 1_000_000)
        if i % 1000 == 0:
            observe(breaker, "triage", f"typical-{i % 5}", 1_000_000)
            breaker.finish(f"typical-{i % 5}")
    assert len(breaker._recent) == MAX_WORKFLOW_NAMES
    assert "name-0" not in breaker._recent  # the least recently seen went first
    # The busy name kept its samples: a workflow at 10x its median still trips.
    trips = observe(breaker, "triage", "runaway", 10_000_000)
    assert [kind for kind, _, _ in trips] == ["workflow_median"]


def _breaker() -> Breaker:
    metrics = budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget"))
    return Breaker(BreakerConfig(workflow_median_multiple=5.0, min_samples=5, workflow_idle=60), metrics)


def test_twenty_identical_workflows_in_progress_do_not_trip():
    """Each starts (one call), then each makes its other nine calls: a workflow's running total
    is 10 while the others are at 1 - which a median over running totals takes for a runaway."""
    breaker = _breaker()
    totals = dict.fromkeys((f"wf-{i}" for i in range(20)), 0)
    trips = []
    for workflow in totals:
        totals[workflow] += 1_000
        trips += observe(breaker, "research", workflow, totals[workflow])
    for workflow in totals:
        for _ in range(9):
            totals[workflow] += 1_000
            trips += observe(breaker, "research", workflow, totals[workflow])
        breaker.finish(workflow)  # its root span arrives last
    assert trips == []
    # Finished, they make the median: a workflow far over it still trips, one like them does not.
    assert observe(breaker, "research", "like-them", 10_000) == []
    assert [kind for kind, _, _ in observe(breaker, "research", "runaway", 60_000)] == ["workflow_median"]


def test_a_workflow_without_a_root_counts_as_finished_once_idle():
    breaker = _breaker()
    for i in range(5):
        observe(breaker, "research", f"wf-{i}", 1_000)
    assert observe(breaker, "research", "runaway", 60_000) == []  # nothing finished yet
    breaker.finish_idle(1_000.0 + 59)
    assert observe(breaker, "research", "runaway-2", 60_000) == []
    breaker.finish_idle(1_000.0 + 61)  # now idle for longer than workflow_idle
    assert [kind for kind, _, _ in observe(breaker, "research", "runaway-3", 60_000)] == ["workflow_median"]


def _state(breaker: Breaker) -> tuple:
    return ([(name, list(costs.by_workflow.items()), list(costs.ordered)) for name, costs in breaker._recent.items()],
            list(breaker._running.items()))


def _finish_one(breaker: Breaker, workflow_id: str) -> None:
    """`finish` as the breaker's own parts do it (finish_many inlines them)."""
    entry = breaker._running.pop(workflow_id, None)
    if entry is not None:
        breaker._recent_of(entry[0]).record(workflow_id, entry[1], breaker.config.median_window)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["note", "finish"]), st.integers(0, 7), st.integers(0, 3),
                          st.integers(0, 5_000_000)), max_size=60),
       st.integers(1, 4))
def test_finish_many_leaves_what_finish_one_by_one_leaves(ops, window):
    """The budget processor's batch of finished workflows (finish_many) against `finish` per
    workflow: the same medians' samples in the same order, the same names' recency, the same
    workflows still running, over repeats, unknown ids and a window that drops samples."""
    config = BreakerConfig(workflow_median_multiple=5.0, min_samples=1, median_window=window)
    metrics = budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget"))
    one, many = Breaker(config, metrics), Breaker(config, metrics)
    finished: list[str] = []
    for op, workflow, name, spent in ops:
        workflow_id = f"wf-{workflow}"
        if op == "finish":
            _finish_one(one, workflow_id)
            finished.append(workflow_id)
            continue
        many.finish_many(finished)
        finished = []
        for breaker in (one, many):
            breaker.note_running(Context(workflow_id, f"name-{name}"), spent, 1_000.0)
    many.finish_many(finished)
    assert _state(many) == _state(one)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["", "a", "b"]), st.integers(0, 5_000)),
                         max_size=8), max_size=12),
       st.booleans())
def test_note_running_many_leaves_what_note_running_one_by_one_leaves(batches, median):
    """The plain batch commit's running totals (note_running_many) against note_running per
    workflow, with the bound on running workflows passed (its oldest finished into the medians)
    and with the median rule off (nothing noted)."""
    import costctx.budget.breaker as breaker_module

    config = BreakerConfig(workflow_median_multiple=5.0 if median else None, min_samples=1, median_window=3)
    metrics = budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget"))
    one, many = Breaker(config, metrics), Breaker(config, metrics)
    bound = breaker_module.MAX_RUNNING
    breaker_module.MAX_RUNNING = 4
    try:
        for n, batch in enumerate(batches):
            spends = [(Context(f"wf-{w}" if w else "", name), spent) for w, name, spent in batch]
            for ctx, spent in spends:
                one.note_running(ctx, spent, float(n))
            many.note_running_many(spends, float(n))
            assert _state(many) == _state(one)
    finally:
        breaker_module.MAX_RUNNING = bound


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(0, 5_000)), max_size=30),
       st.lists(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["", "n0", "n1", "n2", "n5"])), max_size=10),
                max_size=6),
       st.integers(1, 3), st.booleans())
def test_typical_many_gives_what_typical_one_by_one_gives(finished, batches, min_samples, median):
    """The batch commit's medians (typical_many) against typical per Context: the same values,
    the same names made and recency order, with workflows among their name's finished ones and
    not, empty ids and names, the bound on names passed (a name forgotten and made again within
    one call) and the median rule off."""
    import costctx.budget.breaker as breaker_module

    config = BreakerConfig(workflow_median_multiple=5.0 if median else None, min_samples=min_samples,
                           median_window=4)
    metrics = budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget"))
    one, many = Breaker(config, metrics), Breaker(config, metrics)
    bound = breaker_module.MAX_WORKFLOW_NAMES
    breaker_module.MAX_WORKFLOW_NAMES = 3
    try:
        for workflow, name, spent in finished:
            for breaker in (one, many):
                breaker._recent_of(f"n{name}").record(f"wf-{workflow}", spent, 4)
        for batch in batches:
            ctxs = [Context(f"wf-{w}" if w else "", name) for w, name in batch]
            assert many.typical_many(ctxs) == [one.typical(ctx) for ctx in ctxs]
            assert _state(many) == _state(one)
    finally:
        breaker_module.MAX_WORKFLOW_NAMES = bound
