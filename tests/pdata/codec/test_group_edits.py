"""Group edits (one SpanEdits applied to many spans) and span groups, on both codecs.

The Python codec is the oracle: it expands group edits with `BatchEdits.expanded` (api.py);
the native codec merges them in Rust (groups.rs). Both must write the same bytes as the
same edits given span by span, mixed with per-span edits made before and after each group,
removed spans, replaced spans, extracted spans and appended segments.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costctx.pdata.codec.api import BatchEdits, SpanEdits, span_groups
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.codec.python import PythonCodec
from tests.pdata.codec.test_codec_native import VALUES, bench_requests, keys_st, random_edits, requests_st

ORACLE = PythonCodec()


def random_group(view, rng: random.Random, edits: BatchEdits) -> None:
    """A group edit over a random subset of spans (those not replaced), as a processor adds one."""
    spans = [i for i in range(len(view.spans))
             if rng.random() < 0.6 and (i not in edits.spans or edits.spans[i].replace is None)]
    if not spans:
        return
    keys = sorted({k for i in spans for k in view.spans[i].attrs})
    group = SpanEdits()
    if keys and rng.random() < 0.6:
        group.renames.append((rng.choice(keys), rng.choice(["renamed", "gen_ai.system", "costctx.renamed"])))
    if keys and rng.random() < 0.3:
        group.deletes.append(rng.choice(keys))
    for _ in range(rng.randrange(1, 3)):
        group.sets.append((rng.choice(["costctx.schema", "costctx.renamed", "new.key", *keys[:2]]), rng.choice(VALUES)))
    edits.add_group(group, spans if rng.random() < 0.8 else range(len(view.spans)) if all(
        i not in edits.spans or edits.spans[i].replace is None for i in range(len(view.spans))) else spans)


def more_sets(view, rng: random.Random, edits: BatchEdits) -> None:
    for i in range(len(view.spans)):
        if rng.random() < 0.3 and (i not in edits.spans or edits.spans[i].replace is None):
            edits.span(i).sets.append((rng.choice(["after.key", "costctx.schema", "new.key"]), rng.choice(VALUES)))


def mixed_edits(view, rng: random.Random, removals: bool) -> BatchEdits:
    """Per-span edits (some replaced, some removed), a group, more per-span sets, a group."""
    edits = random_edits(view, rng, removals)
    random_group(view, rng, edits)
    more_sets(view, rng, edits)
    random_group(view, rng, edits)
    more_sets(view, rng, edits)
    return edits


def spelled_out(edits: BatchEdits) -> BatchEdits:
    """The same edits with every group merged into its spans' own (no groups left)."""
    return BatchEdits(spans=edits.expanded(), resources=edits.resources, removed=edits.removed)


def check_codec(codec, raw: bytes, watched: frozenset[str], rng: random.Random) -> None:
    view = codec.scan(raw, watched)
    for removals in (False, True):
        edits = mixed_edits(view, rng, removals)
        assert codec.encode(view, edits) == codec.encode(view, spelled_out(edits))
        indices = sorted(rng.sample(range(len(view.spans)), k=min(len(view.spans), 3)))
        assert codec.extract(view, indices, edits) == codec.extract(view, indices, spelled_out(edits))


def test_merge_puts_each_group_where_it_was_added():
    edits = BatchEdits()
    edits.span(1).sets.append(("a", 1))
    edits.add_group(SpanEdits(renames=[("old", "new")], sets=[("stamp", "x")]), [0, 1])
    edits.span(0).sets.append(("b", 2))
    edits.span(1).sets.append(("c", 3))
    edits.add_group(SpanEdits(sets=[("schema", "v")]), [0, 1, 2])
    edits.span(1).sets.append(("d", 4))
    assert edits.effective(0).sets == [("stamp", "x"), ("b", 2), ("schema", "v")]
    assert edits.effective(1).sets == [("a", 1), ("stamp", "x"), ("c", 3), ("schema", "v"), ("d", 4)]
    assert edits.effective(1).renames == [("old", "new")]
    assert edits.effective(2).sets == [("schema", "v")]
    assert edits.effective(3) is None
    assert edits.expanded() == {i: edits.effective(i) for i in range(3)}


def test_a_replaced_span_takes_no_group_edit():
    edits = BatchEdits()
    edits.add_group(SpanEdits(sets=[("k", "v")]), [0, 1])
    edits.spans[1] = SpanEdits(replace=b"\x0a\x00")
    assert edits.effective(1).replace == b"\x0a\x00" and not edits.effective(1).sets
    assert edits.expanded()[1].replace == b"\x0a\x00"


@pytest.mark.parametrize("codec", ["python", "native"])
def test_bench_workload_groups_write_as_spelled_out(codec):
    if codec == "native" and not AVAILABLE:
        pytest.skip("costctx_native not built")
    from costctx.pdata.codec import select_codec

    chosen = select_codec(codec)
    rng = random.Random(5)
    for raw in bench_requests():
        check_codec(chosen, raw, frozenset({"gen_ai.request.model", "gen_ai.system", "workflow.id", "n", "x"}), rng)


needs_native = pytest.mark.skipif(not AVAILABLE, reason="costctx_native not built")


@needs_native
def test_bench_workload_native_writes_the_oracles_bytes():
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    rng = random.Random(7)
    watched = frozenset({"gen_ai.request.model", "gen_ai.system", "workflow.id", "n", "x"})
    for raw in bench_requests():
        view, expected = native.scan(raw, watched), ORACLE.scan(raw, watched)
        for removals in (False, True):
            edits = mixed_edits(view, rng, removals)
            assert native.encode(view, edits) == ORACLE.encode(expected, edits)
            indices = sorted(rng.sample(range(len(view.spans)), k=min(len(view.spans), 4)))
            assert native.extract(view, indices, edits) == ORACLE.extract(expected, indices, edits)
        assert native.groups(view, frozenset({"gen_ai.system"})) == \
            ORACLE.groups(expected, frozenset({"gen_ai.system"}))


@needs_native
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests_st(), seed=st.integers(0, 2**32), watched=st.frozensets(keys_st, max_size=4),
       by_value=st.frozensets(keys_st, max_size=3))
def test_generated_requests_groups_and_group_edits_agree(raw, seed, watched, by_value):
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    watched = watched | {"service.name"}
    view, expected = native.scan(raw, watched), ORACLE.scan(raw, watched)
    assert native.groups(view, by_value) == ORACLE.groups(expected, by_value)
    groups, loose = native.groups(view, by_value)
    assert sorted([i for g in groups for i in g] + loose) == list(range(len(view.spans)))
    rng = random.Random(seed)
    edits = mixed_edits(view, rng, removals=True)
    assert native.encode(view, edits) == ORACLE.encode(expected, edits)
    indices = sorted(rng.sample(range(len(view.spans)), k=min(len(view.spans), 3)))
    assert native.extract(view, indices, edits) == ORACLE.extract(expected, indices, edits)


@needs_native
def test_group_edits_across_appended_segments():
    """inherit appends released spans to a view (NativeCodec.appended): a group spanning both
    segments writes what the oracle writes for the two requests as one."""
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    first, second = bench_requests()[:2]
    watched = frozenset({"gen_ai.request.model", "workflow.id"})
    view = native.appended(native.scan(first, watched), second, watched)
    expected = ORACLE.scan(first + second, watched)  # concatenated requests are one request
    rng = random.Random(11)
    for removals in (False, True):
        edits = mixed_edits(view, rng, removals)
        assert native.encode(view, edits) == ORACLE.encode(expected, edits)
        indices = sorted(rng.sample(range(len(view.spans)), k=6))
        assert native.extract(view, indices, edits) == ORACLE.extract(expected, indices, edits)
    assert native.groups(view, frozenset()) == span_groups(expected.spans, frozenset())


def test_span_groups_by_keys_kinds_and_chosen_values():
    from bench.requests import build_request

    raw = build_request([{"gen_ai.system": "openai", "n": 1}, {"gen_ai.system": "OpenAI", "n": 2},
                         {"gen_ai.system": "openai", "n": 3}, {"gen_ai.system": "", "n": 4},
                         {"n": 5, "gen_ai.system": "openai"}, {"gen_ai.system": "openai", "n": "x"}], 6)
    view = ORACLE.scan(raw, frozenset({"gen_ai.system", "n"}))
    spans = view.spans
    assert len(spans) == 6
    by_value, _ = span_groups(spans, frozenset({"gen_ai.system"}))
    by_kinds, _ = span_groups(spans, frozenset())
    assert sorted(map(len, by_kinds)) != sorted(map(len, by_value))
    assert all(len({spans[i].attrs.get("gen_ai.system") for i in g}) == 1 for g in by_value)
    assert all(len({tuple(map(type, spans[i].attrs.values())) for i in g}) == 1 for g in by_kinds)


@needs_native
def test_many_segments_in_one_call_write_what_the_oracle_writes():
    """A view of several appended requests is written in one call (Core.encode_segments):
    a segment nothing touches is copied, one whose spans are all removed loses them, and an
    extract takes nothing (not even the resources) from a segment none of whose spans it chose."""
    from costctx.pdata.codec.native import NativeCodec

    native = NativeCodec()
    parts = bench_requests()[:4]
    watched = frozenset({"gen_ai.request.model", "workflow.id"})
    view = native.scan(parts[0], watched)
    for raw in parts[1:]:
        view = native.appended(view, raw, watched)
    expected = ORACLE.scan(b"".join(parts), watched)
    assert len(view.segments) == 4
    firsts = [segment[0] for segment in view.segments] + [len(view.spans)]
    second = range(firsts[1], firsts[2])
    third = range(firsts[2], firsts[3])
    stamp = "one object shared by every span's edits"
    edits = BatchEdits()
    for i in range(firsts[1]):  # the first segment: a set on every span, the same value object
        edits.span(i).sets.append(("costctx.schema", stamp))
    edits.removed.update(third)  # the third: every span removed; the second: untouched
    last = list(range(firsts[3], len(view.spans)))
    edits.add_group(SpanEdits(renames=[("workflow.id", "wf")], sets=[("n", 7)]), last)
    assert native.encode(view, edits) == ORACLE.encode(expected, edits)
    for chosen in ([third[0], third[-1]], [firsts[3]], [0, firsts[3] + 1]):
        assert native.extract(view, chosen, edits) == ORACLE.extract(expected, chosen, edits)
    untouched = BatchEdits(removed={firsts[3]})  # only the last segment is written anew
    assert native.encode(view, untouched) == ORACLE.encode(expected, untouched)
    assert native.encode(view, untouched).startswith(b"".join(parts[:3]))
    assert list(second)  # (the bench requests hold spans)
