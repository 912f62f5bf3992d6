"""spans_having and attr_values_at: the native lazy list answers from the records (edit_attrs'
pending changes applied, made views read as they are now) exactly as the views would, making
no view."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from costctx.pdata.codec.api import attr_values_at, edit_attrs, spans_having
from costctx.pdata.codec.native import AVAILABLE
from tests.pdata.codec.test_codec_native import bench_requests, keys_of, requests_st

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


def edited_both_ways(raw: bytes, watched: frozenset[str], rng: random.Random):
    """The same request scanned twice: one lazy list (some views made, some edited, some
    not made), one plain list of views, both given the same edits in the same order."""
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    lazy = native.scan(raw, watched).spans
    views = native.scan(raw, watched).spans.to_list()
    n = len(views)
    keys = sorted(watched)
    for _ in range(4):
        indices = rng.sample(range(n), rng.randint(0, n)) if n else []
        old, new, gone, put = (rng.choice(keys) for _ in range(4))
        for i in rng.sample(range(n), n // 3) if n else []:
            lazy[i]  # made before the edit: the edit goes to its attrs
        edit_attrs(lazy, indices, [(old, new)], [gone], [(put, "v")])
        edit_attrs(views, indices, [(old, new)], [gone], [(put, "v")])
    return lazy, views


def check(raw: bytes, watched: frozenset[str], rng: random.Random) -> None:
    lazy, views = edited_both_ways(raw, watched, rng)
    made = lazy.made_count()
    keys = sorted(watched)
    for _ in range(6):
        wanted = frozenset(rng.sample(keys, rng.randint(1, min(3, len(keys)))))
        order = list(range(len(views)))
        rng.shuffle(order)
        assert spans_having(lazy, order, wanted) == spans_having(views, order, wanted)
        some = order[: len(order) // 2]
        asked = (*sorted(wanted), "not.watched")
        assert attr_values_at(lazy, some, asked) == attr_values_at(views, some, asked)
    assert lazy.made_count() == made  # answered without making a view
    assert lazy == views  # and the views made afterwards agree


def test_bench_workload_spans_having_agrees_with_the_views():
    rng = random.Random(5)
    for raw in bench_requests():
        check(raw, frozenset(sorted(keys_of(raw))[::2]) | {"service.name"}, rng)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st())
def test_generated_requests_spans_having_agrees_with_the_views(raw):
    keys = keys_of(raw) | {"service.name", "extra.key"}
    check(raw, frozenset(keys), random.Random(len(raw)))


def test_a_key_renamed_set_or_deleted_before_the_view_is_made():
    from costctx.pdata.codec.native import NativeCodec

    raw = bench_requests()[0]
    spans = NativeCodec().scan(raw, frozenset({"workflow.id", "owner.tenant"})).spans
    with_id = spans_having(spans, range(len(spans)), ("workflow.id",))
    assert with_id and spans.made_count() == 0
    edit_attrs(spans, with_id[:2], [("workflow.id", "w.moved")], [], [])
    edit_attrs(spans, with_id[2:4], [], ["workflow.id"], [])
    edit_attrs(spans, [with_id[4]], [], ["workflow.id"], [("workflow.id", "back")])
    assert spans_having(spans, range(len(spans)), ("workflow.id",)) == [with_id[4], *with_id[5:]]
    assert spans_having(spans, range(len(spans)), ("w.moved",)) == with_id[:2]
    assert spans.made_count() == 0
