"""The budget processor on the native codec's lazy span list (what it meets in the pipeline,
being `columnar`) against a list of views made beforehand: model calls found by spans_having,
finished workflows from columns, and spans an earlier processor edited (a view made and set,
or a group edit with edit_attrs on a span whose view is not made) read alike: the same output,
counters, resend keys, breaker state and metrics, batch after batch, with resends."""

from __future__ import annotations

import random
import time

import pytest

from costctx.pdata.codec.api import SpanEdits, edit_attrs
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.view_batch import ViewBatch
from tests.processors.budget.test_budget_spend_read import CONFIGS, _request, _samples, _spans, _state
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


def _edited(batch: ViewBatch, rng: random.Random) -> None:
    """An earlier processor's edits: a few spans set through their views, a few by a group edit
    kept in step with edit_attrs (their views not made on the lazy list)."""
    n = len(batch.view.spans)
    for index in rng.sample(range(n), min(2, n)):
        batch.set(index, "cost.usd", 0.004)
    group = rng.sample(range(n), min(3, n))
    sets = [("cost.usd", 0.002), ("owner.tenant", "acme")]
    batch.edits.add_group(SpanEdits(sets=sets), group)
    edit_attrs(batch.view.spans, group, (), (), sets)


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(3))
def test_the_lazy_list_gives_what_the_views_give(config, seed, monkeypatch):
    codec = next(c for c in available_codecs() if c.name == "native")
    lazy = standalone_processor("budget", **CONFIGS[config])
    views = standalone_processor("budget", **CONFIGS[config])
    for processor in (lazy, views):
        processor.engine.store.reservations.clear()
    rng = random.Random(seed)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    sent: list[list[dict]] = []
    made = []
    made_here = []  # views the budget processor made on the lazy list (read_spend reads records)
    by_segment: list[bool] = []
    read_by_segment = lazy._process_by_segment

    def spy(batch):
        by_segment.append(read_by_segment(batch))
        return by_segment[-1]

    monkeypatch.setattr(lazy, "_process_by_segment", spy)
    for serial in range(1, 10):
        if sent and rng.random() < 0.3:
            spans = rng.choice(sent)  # a resend
        else:
            spans = _spans(rng, rng.choice([1, 7, 40]), now, serial + 100 * seed)
            sent.append(spans)
        edit_seed = rng.random()
        outputs = []
        for processor, columnar in ((lazy, True), (views, False)):
            batch = ViewBatch(codec, _request(spans), processor.watched_keys())
            batch.lazy_spans = True  # the earlier processor: columnar
            _edited(batch, random.Random(edit_seed))
            batch.lazy_spans = columnar
            made_count = getattr(batch.view.spans, "made_count", None)  # a plain list: every view made
            before = made_count() if columnar and made_count is not None else None
            by_segment.clear()
            assert processor.process_view(batch) is batch
            if before is not None:
                made.append((made_count(), len(batch.view.spans)))
                if by_segment == [True]:  # no span needed the per-span path (which reads views)
                    made_here.append(made_count() - before)
            outputs.append(batch.payload())
        assert outputs[0] == outputs[1]
        assert _state(lazy) == _state(views)
        assert _samples(lazy) == _samples(views)
    assert any(count < total for count, total in made)  # views were left unmade
    assert made_here and not any(made_here), made_here  # none on the path by segment


def test_native_read_roots_reads_the_lazy_list_as_the_views():
    from costctx.pdata.codec.api import edit_attrs
    from costctx.processors.budget.spend_read import native_read_roots, read_roots

    codec = next(c for c in available_codecs() if c.name == "native")
    rng = random.Random(7)
    now = time.time()
    for serial in range(6):
        raw = _request(_spans(rng, 40, now, serial))
        lazy = codec.scan(raw, frozenset({"workflow.id", "cost.usd"})).spans
        views = codec.scan(raw, frozenset({"workflow.id", "cost.usd"})).spans.to_list()
        for index in rng.sample(range(40), 5):  # an earlier processor's edits, views made or not
            if index % 2:
                lazy[index].attrs["workflow.id"] = views[index].attrs["workflow.id"] = "set"
            else:
                edit_attrs(lazy, [index], [], ["workflow.id"], [])
                edit_attrs(views, [index], [], ["workflow.id"], [])
        made = lazy.made_count()
        order = list(range(40))
        rng.shuffle(order)
        want = read_roots(views, order, "workflow.id")
        assert native_read_roots(lazy, order, "workflow.id") == want
        assert native_read_roots(views, order, "workflow.id") == want
        assert lazy.made_count() == made
