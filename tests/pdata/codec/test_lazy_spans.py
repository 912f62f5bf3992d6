"""The native view's lazy span list (costctx_native.SpanList): a SpanView is made only for a
span something asks for, equal to the one the eager scan makes; columns read the records;
a list joined to another shifts the other's resource and scope indices; ViewBatch makes
every view in one call for a processor that is not `columnar`."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from costctx.pdata.codec.api import (
    KvList,
    ResourceView,
    ScopeView,
    SpanView,
    attr_values,
    bytes_column,
    edit_attrs,
    span_column,
)
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.codec.python import PythonCodec
from costctx.pdata.view_batch import ViewBatch
from tests.pdata.codec.test_codec_native import bench_requests, keys_of, requests_st, view_rows

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")

COLUMNS = ("resource", "scope", "size", "attr_count", "event_count", "start", "end", "kind")
ID_COLUMNS = ("trace_id", "span_id", "parent_span_id")


def values_of(spans, keys: tuple[str, ...]) -> list[tuple]:
    return [tuple(map(s.attrs.get, keys)) for s in spans]


@pytest.fixture(scope="module")
def native():
    from costctx.pdata.codec.native import NativeCodec

    return NativeCodec()


def eager_spans(native, raw: bytes, watched: frozenset[str]) -> list[SpanView]:
    return native._core.scan(raw, watched)[2]  # every view made at once (the former scan)


def check_lazy(native, raw: bytes, watched: frozenset[str], rng: random.Random) -> None:
    eager = eager_spans(native, raw, watched)
    view = native.scan(raw, watched)
    spans = view.spans
    assert spans.made_count() == 0 and len(spans) == len(eager)
    for name in COLUMNS:  # read from the records: no view made
        assert span_column(spans, name) == [getattr(s, name) for s in eager], name
    for name in ID_COLUMNS:
        assert bytes_column(spans, name) == [getattr(s, name) for s in eager], name
    keys = (*sorted(watched), "never.watched")
    assert attr_values(spans, keys) == values_of(eager, keys)
    assert attr_values(spans, ()) == [()] * len(eager)
    assert spans.made_count() == 0
    order = list(range(len(eager)))
    rng.shuffle(order)
    for i in order[: len(order) // 2]:  # some made one by one, in any order; the same object again
        made = spans[i]
        assert made == eager[i] and made.kinds == eager[i].kinds
        assert spans[i] is made and spans[i - len(eager)] is made
    assert spans.made_count() == len(order) // 2
    # Made views are read as they are now (a processor may have changed one).
    if order:
        spans[order[0]].attrs[keys[0]] = eager[order[0]].attrs[keys[0]] = "changed"
        spans[order[0]].span_id = eager[order[0]].span_id = b"\x01" * 8
    assert attr_values(spans, keys) == values_of(eager, keys)
    assert bytes_column(spans, "span_id") == [s.span_id for s in eager]
    assert list(spans) == eager and [s.kinds for s in spans] == [s.kinds for s in eager]
    assert spans == eager and spans[1:3] == eager[1:3]


def test_bench_workload_views_made_lazily_equal_the_eager_ones(native):
    rng = random.Random(3)
    for raw in bench_requests():
        keys = sorted(keys_of(raw))
        check_lazy(native, raw, frozenset(keys[::2]) | {"service.name"}, rng)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st())
def test_generated_requests_views_made_lazily_equal_the_eager_ones(raw):
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    check_lazy(native, raw, frozenset(keys_of(raw)) | {"service.name"}, random.Random(len(raw)))


def test_a_column_reads_a_made_views_current_value(native):
    raw = bench_requests()[0]
    spans = native.scan(raw, frozenset({"workflow.id"})).spans
    spans[2].size = 7  # as ViewBatch.replace keeps the record of a re-encoded span
    assert span_column(spans, "size")[2] == 7
    assert span_column(spans, "size")[3] == eager_spans(native, raw, frozenset({"workflow.id"}))[3].size
    with pytest.raises(ValueError):
        spans.column("attrs")
    with pytest.raises(ValueError):
        spans.bytes_column("size")
    with pytest.raises(TypeError):
        spans.attr_values((b"not a str",))
    with pytest.raises(IndexError):
        spans[len(spans)]


def test_joined_lists_shift_the_appended_indices_and_keep_made_views(native):
    first, second = bench_requests()[:2]
    watched = frozenset({"workflow.id", "gen_ai.request.model"})
    view = native.scan(first, watched)
    kept = view.spans[1]  # made before the join: the same object after it
    tail = native.scan(second, watched)
    made_before = tail.spans[0]
    count = len(view.spans)
    joined = native.appended(view, second, watched)  # `view` spent: its span list extended in place
    assert joined.spans[1] is kept and len(joined.spans) == count + len(tail.spans)
    assert joined.spans is view.spans
    reference = PythonCodec().scan(first + second, watched)  # concatenated requests are one request
    assert view_rows(joined) == view_rows(reference)
    assert span_column(joined.spans, "resource") == [s.resource for s in reference.spans]
    # A view of the appended list made before the join is shifted by it (and shared).
    view = native.scan(first, watched)
    together = view.spans
    together.extend_with(tail.spans, len(view.resources), len(view.scopes))
    assert together[count] is made_before and made_before.resource == reference.spans[count].resource
    assert made_before.scope == reference.spans[count].scope and together[count + 1] == reference.spans[count + 1]
    keys = tuple(sorted(watched))
    assert attr_values(joined.spans, keys) == values_of(reference.spans, keys)
    assert bytes_column(joined.spans, "trace_id") == [s.trace_id for s in reference.spans]
    with pytest.raises(ValueError):
        view.spans.extend_with(view.spans, 0, 0)


def test_a_batch_makes_every_view_at_once_unless_its_reader_is_columnar(native):
    raw = bench_requests()[0]
    watched = frozenset({"workflow.id"})
    lazy = ViewBatch(native, raw, watched)
    lazy.lazy_spans = True  # a columnar processor reads it
    assert type(lazy.view.spans) is not list and lazy.view.spans.made_count() == 0
    lazy.set(4, "k", "v")  # an edit makes no view: kept for it (edit_attrs), as the view will show
    assert lazy.view.spans.made_count() == 0
    lazy.lazy_spans = False  # the next processor reads every span
    spans = lazy.view.spans
    assert type(spans) is list and spans[4].attrs["k"] == "v" and spans == eager_spans(native, raw, watched)[:4] + \
        [spans[4]] + eager_spans(native, raw, watched)[5:]
    plain = ViewBatch(native, raw, watched)  # not in a pipeline: made on first read, as before
    assert type(plain.view.spans) is list


def test_view_classes_are_the_api_ones(native):
    view = native.scan(bench_requests()[-1], frozenset({"x", "n"}))
    assert type(view.resources[0]) is ResourceView and type(view.scopes[0]) is ScopeView
    assert all(type(s) is SpanView for s in view.spans)
    assert any(isinstance(v, list) for s in view.spans for v in s.attrs.values())
    assert not any(isinstance(v, KvList) for s in view.spans for v in s.attrs.values())


BY_VALUE = frozenset({"gen_ai.system", "llm.vendor", "gen_ai.request.model", "k"})


def test_bench_workload_group_keys_agree_with_the_oracle(native):
    oracle = PythonCodec()
    for raw in bench_requests():
        watched = frozenset(keys_of(raw)) | {"service.name"}
        view = native.scan(raw, watched)
        assert native.keyed_groups(view, BY_VALUE) == oracle.keyed_groups(oracle.scan(raw, watched), BY_VALUE)
        assert view.spans.made_count() == 0  # keyed from the records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st())
def test_generated_requests_group_keys_agree_with_the_oracle(raw):
    from costctx.pdata.codec.native import NativeCodec

    native, oracle = NativeCodec(), PythonCodec()
    watched = frozenset(keys_of(raw)) | {"service.name"}
    by_value = frozenset(sorted(watched)[::2])
    groups, loose, keys = native.keyed_groups(native.scan(raw, watched), by_value)
    assert (groups, loose, keys) == oracle.keyed_groups(oracle.scan(raw, watched), by_value)
    assert len(set(keys)) == len(keys) or len(groups) > len(set(keys))  # (orders of keys may repeat a key)


def test_edit_attrs_on_views_made_and_not_made_yet(native):
    raw = bench_requests()[0]
    watched = frozenset(keys_of(raw))
    reference = eager_spans(native, raw, watched)
    spans = native.scan(raw, watched).spans
    _ = spans[0], spans[3]  # made before the edits; the others after
    first = list(range(0, len(reference), 2))
    key = next(k for k in reference[0].attrs if any(k in reference[i].attrs for i in first[1:]))
    later = next(i for i in first[1:] if key in reference[i].attrs)  # not made before the edits
    edit_attrs_both = [
        (first, [(key, "renamed.key"), ("absent", "x")], ["absent.too"], [("stamp", ["a", "b"]), ("n", 1)]),
        (list(range(len(reference))), [], ["n"], [("last", "v")]),
    ]
    for indices, renames, deletes, sets in edit_attrs_both:
        edit_attrs(spans, indices, renames, deletes, sets)
        edit_attrs(reference, indices, renames, deletes, sets)
    # Read without views, pending edits applied: renamed onto, deleted, set (a list each span's own).
    keys = (key, "renamed.key", "stamp", "n", "last", "absent")
    before = spans.made_count()
    read = attr_values(spans, keys)
    assert read == values_of(reference, keys) and spans.made_count() == before
    assert read[later][2] is not read[first[-1]][2] or later == first[-1]
    made = list(spans)
    assert [s.attrs for s in made] == [s.attrs for s in reference]
    assert made[0].attrs["stamp"] is not made[2].attrs["stamp"]  # a list set is each span's own
    for i in (0, later):
        assert "renamed.key" in made[i].attrs and key not in made[i].attrs and "n" not in made[i].attrs
