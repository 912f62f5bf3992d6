"""Reads of the native lazy list between edits: a span with pending `edit_attrs` changes is
read (spans_having, attr_values_at, the native readers' Reading) from its attrs as the view
would have them, kept between reads (SpanList's `edited` dicts: a later read applies only the
changes since), and its view, made later, has every change. Any interleaving of edits, reads,
views made and joins gives what the same steps give on a list of views made beforehand."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.pdata.codec.api import attr_values_at, edit_attrs, spans_having
from costctx.pdata.codec.native import AVAILABLE
from tests.pdata.codec.test_codec_native import bench_requests, keys_of

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


@pytest.fixture(scope="module")
def native():
    from costctx.pdata.codec.native import NativeCodec

    return NativeCodec()


def _steps(rng: random.Random, keys: list[str], n: int, count: int) -> list[tuple]:
    out = []
    for _ in range(count):
        kind = rng.choice(["rename", "delete", "set", "set", "having", "values", "make", "join"])
        picked = rng.sample(range(n), rng.randint(1, min(n, 12)))
        a, b = rng.choice(keys), rng.choice(keys + ["new.key"])
        out.append((kind, picked, a, b, rng.choice(["v", 3, 2.5, ["x", "y"], True])))
    return out


def _run(spans, steps: list[tuple], keys: tuple[str, ...], join) -> list:
    seen = []
    for kind, picked, a, b, value in steps:
        if kind == "rename":
            edit_attrs(spans, picked, ((a, b),), (), ())
        elif kind == "delete":
            edit_attrs(spans, picked, (), (a,), ())
        elif kind == "set":
            edit_attrs(spans, picked, (), (), ((b, value),))
        elif kind == "having":
            seen.append(spans_having(spans, picked, (a, b)))
        elif kind == "values":
            seen.append(attr_values_at(spans, picked, keys))
        elif kind == "make":
            seen.append([dict(spans[i].attrs) for i in picked[:2]])
        else:
            spans = join(spans)
    seen.append([dict(s.attrs) for s in spans])
    return seen


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), request=st.integers(0, 4))
def test_edits_and_reads_interleaved_as_on_views(native, seed, request):
    raw = bench_requests()[request]
    keys = sorted(keys_of(raw))[:12]
    watched = frozenset(keys) | {"new.key"}
    rng = random.Random(seed)
    n = len(native.scan(raw, watched).spans)
    steps = _steps(rng, keys, n, 14)
    other = native.scan(raw, watched)  # what a join appends (its spans after ours)

    def join_lazy(spans):
        spans.extend_with(native.scan(raw, watched).spans, 0, 0)
        return spans

    def join_views(spans):
        return spans + list(native.scan(raw, watched).spans.to_list())

    lazy = native.scan(raw, watched).spans
    views = native.scan(raw, watched).spans.to_list()
    assert _run(lazy, steps, tuple(keys) + ("new.key",), join_lazy) == \
        _run(views, steps, tuple(keys) + ("new.key",), join_views)
    assert other.spans.made_count() == 0


def test_a_read_between_edits_applies_only_the_later_ones(native):
    raw = bench_requests()[0]
    keys = sorted(keys_of(raw))
    spans = native.scan(raw, frozenset(keys) | {"k"}).spans
    edit_attrs(spans, [3], (), (), (("k", "one"),))
    assert attr_values_at(spans, [3], ("k",)) == [("one",)]
    edit_attrs(spans, [3], (("k", keys[0]),), (), ())  # renamed after the read
    assert attr_values_at(spans, [3], ("k", keys[0])) == [(None, "one")]
    assert spans_having(spans, [3], ("k",)) == [] and spans_having(spans, [3], (keys[0],)) == [3]
    assert spans.made_count() == 0
    assert spans[3].attrs[keys[0]] == "one" and "k" not in spans[3].attrs
