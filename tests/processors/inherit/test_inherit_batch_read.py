"""inherit's per-batch reading (batch_read.read_batch: read_spans then own_groups) in Rust and
in Python give the same result: on hand-made views (forged, duplicate and all-zero ids, any value type), on views both
codecs scan from generated requests, and on the bench workload."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workload import WorkloadSpec, build_requests
from costctx.envelope import ENVELOPE
from costctx.pdata.codec.api import EMPTY, KvList, SpanView
from costctx.processors.inherit.batch_read import (
    native_parent_first,
    native_read_batch,
    parent_first,
    read_batch,
    read_spans,
)
from tests.support.codecs import available_codecs

FIELDS = ENVELOPE.inheritable
needs_native = pytest.mark.skipif(native_read_batch is None, reason="costctx_native not built")

ids = st.sampled_from([b"", bytes(8), bytes(16), b"\x01" * 8, b"\x02" * 8, b"\x01" * 16, b"\xff" * 3])
values = st.one_of(
    st.sampled_from(["", "wf-1", "wf-2", "é\u2603", "acme"]), st.text(max_size=4), st.integers(-2, 2),
    st.booleans(), st.just(EMPTY), st.just([1, "a"]), st.just(KvList((("a", 1),))), st.floats(allow_nan=False),
    st.just(b"wf-1"))
attrs = st.dictionaries(st.sampled_from([*FIELDS[:5], "other.key"]), values, max_size=6)
spans = st.lists(st.builds(lambda t, s, p, a: SpanView(t, s, p, 0, 0, 0, 0, a, len(a)), ids, ids, ids, attrs),
                 max_size=40)


def both(view_spans: list, indices) -> tuple:
    """read_spans' result, checked against what the native read_batch reads alike."""
    want = read_spans(view_spans, indices, FIELDS)
    got = native_read_batch(view_spans, indices, FIELDS, frozenset())
    assert got[:3] == want[:3]
    assert got[3] == read_batch(view_spans, indices, FIELDS, frozenset())[3]
    return want


@needs_native
@settings(max_examples=200, deadline=None)
@given(view_spans=spans, order=st.sampled_from(["forward", "backward", "some"]))
def test_native_read_batch_reads_spans_as_the_python_one(view_spans, order):
    indices = list(range(len(view_spans)))
    if order == "backward":
        indices.reverse()
    elif order == "some":
        indices = indices[::2]
    keys, wait_keys, groups, firsts = both(view_spans, indices)
    assert len(keys) == len(wait_keys) == len(groups) == len(indices)
    # Spans in one group carry equal string (or no) values; a -1 span carries something else.
    for index, group in zip(indices, groups, strict=True):
        values = [view_spans[index].attrs.get(f) for f in FIELDS]
        if group < 0:
            assert any(v is not None and type(v) is not str for v in values)
        else:
            assert values == [view_spans[firsts[group]].attrs.get(f) for f in FIELDS]


def test_the_rules_by_hand():
    same = {"workflow.id": "wf-1"}
    view_spans = [
        SpanView(b"t" * 16, b"a" * 8, b"", 0, 0, 0, 0, dict(same), 1),
        SpanView(b"t" * 16, b"b" * 8, bytes(8), 0, 0, 0, 0, dict(same), 1),  # all-zero parent: a root
        SpanView(b"t" * 16, b"a" * 8, b"a" * 8, 0, 0, 0, 0, {"workflow.id": 1}, 1),  # forged: its own parent
        SpanView(b"t" * 16, b"c" * 8, b"b" * 8, 0, 0, 0, 0, {"workflow.id": ""}, 1),
    ]
    keys, wait_keys, groups, firsts = read_spans(view_spans, range(4), FIELDS)
    assert keys == [b"t" * 16 + b"a" * 8, b"t" * 16 + b"b" * 8, b"t" * 16 + b"a" * 8, b"t" * 16 + b"c" * 8]
    assert wait_keys == [None, None, b"t" * 16 + b"a" * 8, b"t" * 16 + b"b" * 8]
    assert groups == [0, 0, -1, 1] and firsts == [0, 3]
    if native_read_batch is not None:
        both(view_spans, range(4))


class Text(str):
    """A str subclass: spans carrying one are read alone (own fields keyed by exact type)."""


def test_a_str_subclass_is_not_a_str():
    view_spans = [SpanView(b"t" * 16, bytes([i]) * 8, b"", 0, 0, 0, 0, {"workflow.id": value}, 1)
                  for i, value in enumerate(["wf", Text("wf"), "wf"])]
    assert read_spans(view_spans, range(3), FIELDS)[2] == [0, -1, 0]
    if native_read_batch is not None:
        both(view_spans, range(3))


needs_native_order = pytest.mark.skipif(native_parent_first is None, reason="costctx_native not built")
span_ids = st.sampled_from([bytes([i]) * 8 for i in range(6)] + [bytes(8)])


def _check_order(keys: list[bytes], wait_keys: list, found: tuple[list[int], list[int]]) -> None:
    """A span in a later level than the first span of the batch with its wait key, unless
    they share a cycle; batch order within a level."""
    order, ends = found
    assert sorted(order) == list(range(len(keys)))
    assert ends == sorted(set(ends)) and (ends[-1] == len(keys) if keys else ends == [])
    level = {}
    start = 0
    for number, end in enumerate(ends):
        assert order[start:end] == sorted(order[start:end])
        level.update((p, number) for p in order[start:end])
        start = end
    first: dict[bytes, int] = {}
    for p, key in enumerate(keys):
        first.setdefault(key, p)

    def on_cycle(p: int) -> bool:
        seen, at = set(), p
        while at is not None and at not in seen:
            seen.add(at)
            at = first.get(wait_keys[at]) if wait_keys[at] is not None else None
        return at is not None

    for p, wait_key in enumerate(wait_keys):
        parent = first.get(wait_key) if wait_key is not None else None
        if parent is not None and not on_cycle(p):
            assert level[parent] < level[p]
        elif parent is None:
            assert level[p] == 0


@settings(max_examples=300, deadline=None)
@given(edges=st.lists(st.tuples(span_ids, st.one_of(st.none(), span_ids)), max_size=30))
def test_parent_first_orders_ancestors_first_and_native_agrees(edges):
    trace = b"t" * 16
    keys = [trace + s for s, _ in edges]
    wait_keys = [trace + p if p is not None else None for _, p in edges]
    order = parent_first(keys, wait_keys)
    _check_order(keys, wait_keys, order)
    if native_parent_first is not None:
        assert native_parent_first(keys, wait_keys) == order


def test_parent_first_by_hand():
    t = b"t" * 16
    a, b, c, d = (t + bytes([i]) * 8 for i in range(1, 5))
    # SDK order: grandchild, child, root; then a span whose parent is not in the batch.
    assert parent_first([c, b, a, d], [b, a, None, t + b"\x09" * 8]) == ([2, 3, 1, 0], [2, 3, 4])
    assert parent_first([a, b, c], [None, a, b]) == ([0, 1, 2], [1, 2, 3])
    assert parent_first([], []) == ([], [])
    # A cycle (a <-> b) and a child of it: every span kept, the child after its parent.
    order, _ = parent_first([c, a, b], [a, b, a])
    assert sorted(order) == [0, 1, 2] and order.index(1) < order.index(0)
    # A duplicate id: the first span with it is the one waited for.
    assert parent_first([c, a, a], [a, None, None]) == ([1, 2, 0], [2, 3])
    if native_parent_first is not None:
        for keys, waits in (([c, b, a, d], [b, a, None, t]), ([c, a, b], [a, b, a]), ([c, a, a], [a, None, None]),
                            ([], [])):
            assert native_parent_first(keys, waits) == parent_first(keys, waits)


@needs_native_order
def test_parent_first_on_the_bench_workload_is_native_and_python_alike():
    for codec in available_codecs():
        for raw in build_requests(WorkloadSpec(spans_per_batch=100, batches=5)):
            view = codec.scan(raw, frozenset(FIELDS))
            keys, wait_keys, _, _ = read_spans(view.spans, range(len(view.spans)), FIELDS)
            order = parent_first(keys, wait_keys)
            assert order[0] != sorted(order[0])  # children come before their parents
            _check_order(keys, wait_keys, order)
            assert native_parent_first(keys, wait_keys) == order


# -- read_batch: read_spans and own_groups in one pass --------------------------------------
def _read_batch_both(view_spans: list, indices, required: frozenset[str]) -> tuple:
    from costctx.processors.inherit.batch_read import native_read_batch, read_batch

    want = read_batch(view_spans, indices, FIELDS, required)
    got = native_read_batch(view_spans, indices, FIELDS, required)
    assert got == want
    assert [list(g[0]) for g in got[3]] == [list(w[0]) for w in want[3]]  # fields in the same order
    return want


@needs_native
@settings(max_examples=200, deadline=None)
@given(view_spans=spans, required=st.sets(st.sampled_from(FIELDS[:6])),
       order=st.sampled_from(["forward", "backward", "some"]))
def test_native_read_batch_is_read_spans_then_own_groups(view_spans, required, order):
    indices = list(range(len(view_spans)))
    if order == "backward":
        indices.reverse()
    elif order == "some":
        indices = indices[::2]
    _read_batch_both(view_spans, indices, frozenset(required))


@needs_native
def test_read_batch_groups_equal_texts_in_other_objects_and_tells_objects_apart():
    """Spans carrying the same string objects take one group without their texts read; equal
    texts in other objects still share it, and other texts (or a str subclass) never do, in
    whatever order the spans come."""
    wf = "wf-1"
    other = "".join(["wf-", "1"])  # equal text, another object
    assert other == wf and other is not wf
    view_spans = [SpanView(b"t" * 16, bytes([i]) * 8, b"", 0, 0, 0, 0, attrs, 1) for i, attrs in enumerate([
        {"workflow.id": wf}, {"workflow.id": "wf-2"}, {"workflow.id": wf}, {"workflow.id": other},
        {"workflow.id": Text(wf)}, {"workflow.id": wf, "owner.team": "a"}, {"workflow.id": "wf-2"}])]
    keys, _, groups, by_group = _read_batch_both(view_spans, range(len(view_spans)), frozenset({"workflow.id"}))
    assert groups == [0, 1, 0, 0, -1, 2, 1]
    assert [g[0] for g in by_group] == [{"workflow.id": "wf-1"}, {"workflow.id": "wf-2"},
                                        {"workflow.id": "wf-1", "owner.team": "a"}]
    assert all(g[2] for g in by_group)


@needs_native
@pytest.mark.parametrize("complete", [False, True])
def test_read_batch_on_the_bench_workload_on_both_codecs(complete):
    from costctx.processors.inherit.processor import InheritProcessor
    from tests.support.processors import standalone_processor

    processor = standalone_processor("inherit")
    assert isinstance(processor, InheritProcessor)
    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=5)):
        results = []
        for codec in available_codecs():
            view = codec.scan(raw, processor.watched_keys())
            results.append(_read_batch_both(view.spans, range(len(view.spans)), processor._required_set))
        assert all(r == results[0] for r in results)
