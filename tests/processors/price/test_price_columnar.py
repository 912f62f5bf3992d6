"""The price processor on the native codec's lazy span list (what it meets in the pipeline when
the processors before it read columns) against a list of views made beforehand: the native
price_calls reads model calls from their records and keeps its stamps for the views not made
(SpanList.set_attrs), so the output bytes, the spans' attrs once made, the counters and the
ledger are the same, and no view is made for a span the inline path prices. Spans an earlier
processor edited (a view made and set, or a group edit kept in step with edit_attrs) read alike."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.pdata.codec.api import SpanEdits, edit_attrs
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.price.calls import native_price_calls
from costctx.processors.price.processor import COMPUTED, REPORTED
from tests.processors.price.test_price_inline import NATIVE_CODECS, SHAPES, build
from tests.support.processors import standalone_processor

pytestmark = pytest.mark.skipif(not NATIVE_CODECS or native_price_calls is None, reason="costctx_native not built")


def _edited(batch: ViewBatch, seed: int) -> None:
    """An earlier processor's edits: a span set through its view, a group edit kept in step
    with edit_attrs (views not made), one renaming a reported cost onto the key price reads."""
    rng = random.Random(seed)
    n = len(batch.view.spans)
    if not n:
        return
    batch.set(rng.randrange(n), "workflow.id", "wf-set")
    group = rng.sample(range(n), min(3, n))
    sets = [("workflow.id", "wf-group")]
    batch.edits.add_group(SpanEdits(sets=sets), group)
    edit_attrs(batch.view.spans, group, (), (), sets)
    renamed = rng.sample(range(n), min(2, n))
    edit_attrs(batch.view.spans, renamed, (("llm.cost.total", "gen_ai.usage.cost"),), (), ())


def _priced(raw: bytes, lazy: bool, seed: int | None, native: bool = True):
    from costctx.processors.price import processor as module

    processor = standalone_processor("price", start_time_tolerance="2000000h")
    batch = ViewBatch(NATIVE_CODECS[0], raw, processor.watched_keys())
    batch.lazy_spans = True  # the processors before: columnar
    if seed is not None:
        _edited(batch, seed)
    batch.lazy_spans = lazy
    with pytest.MonkeyPatch.context() as patch:
        if not native:
            patch.setattr(module, "native_price_calls", None)
            patch.setattr(module, "native_stamp_totals", None)
        assert processor.process_view(batch) is batch
    spans = batch.view.spans
    made = spans.made_count() if type(spans) is not list else len(spans)
    out = batch.payload()
    counts = [processor.metrics.priced.labels(o)._value.get() for o in (COMPUTED, REPORTED)]
    attrs = repr([s.attrs for s in batch.view.spans])  # every view made now, pending stamps applied
    return (out, attrs, counts, processor.metrics.untracked._value.get(), processor.ledger.totals(),
            processor.metrics.drift_usd._value.get()), made


@settings(max_examples=60, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 6)), max_size=30),
       seed=st.none() | st.integers(0, 1000))
def test_the_lazy_list_prices_as_the_views(picks, seed):
    raw = build([(span_no.to_bytes(8, "big"), *SHAPES[shape]) for shape, span_no in picks])
    lazy, _ = _priced(raw, True, seed)
    assert lazy == _priced(raw, False, seed)[0]  # the native pass on views
    assert lazy == _priced(raw, False, seed, native=False)[0]  # the Python twin, the oracle


def test_the_lazy_list_on_the_bench_workload_makes_no_view_for_inline_calls():
    from bench.workload import WorkloadSpec, build_requests

    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=4)):
        lazy, made = _priced(raw, True, None)
        assert lazy == _priced(raw, False, None, native=False)[0]
        assert lazy[2][0] > 0
        # views only for the general path's spans (reported costs under other keys: normalize is off)
        assert made < lazy[2][0]


def test_inline_calls_make_no_view():
    raw = build([(i.to_bytes(8, "big"), *SHAPES[i % 3]) for i in range(1, 30)])
    (_, _, counts, *_), made = _priced(raw, True, None)
    assert counts[0] == 29 and made == 0


def test_price_then_budget_on_the_lazy_list_as_on_views(monkeypatch):
    """price keeps the attrs it read (Reading::span_kept) and writes its stamps after them;
    budget reads those attrs with the stamps applied, not the record: the same commits and
    output as on views, and no view made by either on the bench workload's inline calls."""
    from bench.workload import WorkloadSpec, build_requests

    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)  # commit times the same in both runs
    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=3)):
        out = []
        for lazy in (True, False):
            price = standalone_processor("price", start_time_tolerance="2000000h")
            budget = standalone_processor("budget")
            batch = ViewBatch(NATIVE_CODECS[0], raw, price.watched_keys() | budget.watched_keys())
            batch.lazy_spans = lazy
            made = []
            for processor in (price, budget):
                before = batch.view.spans.made_count() if lazy else 0
                assert processor.process_view(batch) is batch
                made.append(batch.view.spans.made_count() - before if lazy else 0)
            if lazy:
                assert made[1] == 0  # budget read price's spans without their views
            out.append((batch.payload(), repr([s.attrs for s in batch.view.spans]),
                        budget.engine.store.hashes))
        assert out[0] == out[1]


@settings(max_examples=40, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, 6)), min_size=1, max_size=20),
       seed=st.none() | st.integers(0, 1000), after=st.integers(0, 1000))
def test_edits_after_the_stamps_apply_in_order(picks, seed, after):
    """price writes its stamps straight into the attrs it kept (SpanList.set_attrs on a span
    read by Reading::span_kept), not as a change applied by the next reader: later edits of
    the spans not made (a rename of a stamp, a set over one, a delete) still apply after them,
    when the views are made and in the output, as on views made before price ran."""
    raw = build([(span_no.to_bytes(8, "big"), *SHAPES[shape]) for shape, span_no in picks])
    out = []
    for lazy in (True, False):
        processor = standalone_processor("price", start_time_tolerance="2000000h")
        batch = ViewBatch(NATIVE_CODECS[0], raw, processor.watched_keys())
        batch.lazy_spans = True
        if seed is not None:
            _edited(batch, seed)
        batch.lazy_spans = lazy
        assert processor.process_view(batch) is batch
        rng = random.Random(after)
        n = len(batch.view.spans)
        group = sorted(rng.sample(range(n), rng.randint(1, n)))
        renames = (("cost.usd", "cost.usd.renamed"),) if rng.random() < 0.5 else ()
        deletes = ("cost.origin",) if rng.random() < 0.5 else ()
        sets = [("cost.price_source", "later"), ("workflow.spend_total_usd", 1.5)]
        batch.edits.add_group(SpanEdits(list(renames), list(deletes), sets), group)
        edit_attrs(batch.view.spans, group, renames, deletes, sets)
        out.append((batch.payload(), repr([s.attrs for s in batch.view.spans])))
    assert out[0] == out[1]
