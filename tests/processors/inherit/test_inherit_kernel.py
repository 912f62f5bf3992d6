"""inherit's native decision kernel (native/src/inherit_kernel.rs) against Python's path, its
oracle: the same processor on the native codec with `kernel` on and off gives the same bytes
out per batch, the same notes, the same attrs on every span's view, the same spans held and
released, the same table, votes and hold contents and the same metrics. On the bench workload,
the golden inputs and generated batches (spans in any order within and across batches, parents
batches later, duplicate and forged ids, parent-id cycles, links-as-parent roots, 258+
services, upstream stamps, the trace fallback, values that are not strings)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.inprocess import fresh_ids
from bench.workload import WorkloadSpec, build_requests
from costctx.envelope.keys import HOP_DEPTH_KEY, REPAIRED_KEY
from costctx.pdata.codec.native import AVAILABLE
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.inherit.processor import InheritProcessor, _DecideKernel
from tests.golden import harness, inputs
from tests.processors.inherit.test_inherit_native_pass import CONTEXT, _request, run_side_by_side
from tests.processors.inherit.test_inherit_units import Side as UnitsSide

pytestmark = pytest.mark.skipif(not AVAILABLE or _DecideKernel is None, reason="costctx_native not built")


class _Counting:
    """The kernel, counting the entries it decided (so a test knows it ran)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.decided = 0

    def begin(self, *args) -> None:
        self.kernel.begin(*args)

    def end(self) -> None:
        self.kernel.end()

    def list_level(self, *args) -> list:
        return self.kernel.list_level(*args)

    def run(self, listed, start: int) -> int:
        stopped = self.kernel.run(listed, start)
        self.decided += (stopped >> 1) - start
        return stopped


class Side(UnitsSide):
    """test_inherit_units' side on the native codec, its kernel on or off and counted."""

    def __init__(self, kernel: bool, max_entries: int) -> None:
        from costctx.pdata.codec.native import NativeCodec

        super().__init__(NativeCodec(), True, max_entries)
        self.processor.kernel = kernel
        self.counting = _Counting(self.processor._kernel)
        self.processor._kernel = self.counting
        self.keys: list[bytes] = []  # keys whose table answers state() compares too
        self.views = self.spans = 0  # SpanViews made by process_view, spans seen

    def run(self, raw: bytes) -> tuple:
        batch = ViewBatch(self.codec, raw, self.processor.watched_keys())
        batch.lazy_spans = self.processor.columnar  # as the pipeline sets it
        out = self.processor.process_view(batch)
        spans = out.view.spans
        made = spans.made_count() if hasattr(spans, "made_count") else len(spans)
        self.views += made
        self.spans += len(spans)
        # What a later processor's column reader sees, before any view is made (the kernel's
        # writes into the dicts kept for readers must show there too), then the views' attrs.
        keys = tuple(sorted(self.processor.watched_keys()))
        columns = ([tuple(map(s.attrs.get, keys)) for s in spans] if type(spans) is list
                   else spans.attr_values(keys))
        notes = sorted((i, sorted((k, sorted(v)) for k, v in n.items())) for i, n in out.notes.items())
        return out.payload(), notes, columns, [dict(s.attrs) for s in out.view.spans]

    def state(self) -> tuple:
        p = self.processor
        hold = sorted((h.key, h.wait_key, h.payload, sorted(h.own.items(), key=repr))
                      for trace in p.hold.traces.values() for h in trace.spans.values())
        # Every metric, labelled families too (a BoundFamily: its family, on this side's own registry).
        families = [getattr(family, "_family", family) for family in vars(p.metrics).values()]
        metrics = sorted((s.name, sorted(s.labels.items()), s.value)
                         for family in families if hasattr(family, "collect")
                         for metric in family.collect() for s in metric.samples
                         if not s.name.endswith("_created"))
        table = getattr(p.cache, "_table", None)  # the native table (COSTCTX_CODEC=python: the Python one)
        return (len(p.cache), table.records() if table is not None else None, dict(p.cache.evicted), p.cache.disputed,
                sorted(p.cache.sources), len(p.trace_values), p.hold.span_count, p.hold.nbytes,
                sorted(p.hold.waiters), hold, metrics, self.known(self.keys))

    def known(self, keys: list[bytes]) -> list:
        """What the table answers for these keys (every attribute of each Known)."""
        found = []
        for key in keys:
            known = self.processor.cache.get(key)
            found.append(None if known is None else
                         (known.fields, list(known.fields), known.hop, known.depth, known.fallback))
        return found


def compare(batches: list[bytes], max_entries: int = 1000, tick_every: int = 2, keys: list[bytes] = ()) -> Side:
    on, off = Side(True, max_entries), Side(False, max_entries)
    on.keys = off.keys = list(keys)
    run_side_by_side(on, off, batches, tick_every)
    assert off.counting.decided == 0
    return on


@pytest.mark.parametrize("complete", [False, True])
def test_the_bench_workload(complete):
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=10))
    on = compare(pool + fresh_ids(pool, 1), tick_every=7)
    assert on.counting.decided > 150  # the kernel decides many of the bench workload's entries
    # The spans the kernel decides are read from the lazy list's records: few views made
    # (only for spans Python's path takes); kernel off, every span's view.
    assert on.views < on.spans * 0.2


@pytest.mark.parametrize("name", ["workload", "generated"])
def test_the_golden_inputs(name, monkeypatch):
    requests = inputs.workload_requests() if name == "workload" else inputs.generated_requests()
    on = harness.run(requests)
    monkeypatch.setattr(InheritProcessor, "kernel", False)
    assert harness.run(requests) == on


_values = st.sampled_from(["", "other", 7, True])
_stamps = st.sampled_from([{}, {}, {}, {REPAIRED_KEY: "owner.team"}, {HOP_DEPTH_KEY: 2}, {HOP_DEPTH_KEY: "x"}])
_span = st.tuples(
    st.integers(0, 3), st.integers(0, 3), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 12)),
    st.tuples(
        st.dictionaries(st.sampled_from(list(CONTEXT)), st.one_of(st.none(), st.none(), _values), max_size=8),
        _stamps).map(lambda p: {**{k: CONTEXT[k] if v is None else v for k, v in p[0].items()}, **p[1]}),
    st.one_of(st.none(), st.none(), st.none(), st.integers(1, 12)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_span, min_size=1, max_size=30), min_size=1, max_size=5),
       max_entries=st.sampled_from([4, 30, 1000]), many_services=st.booleans())
def test_generated_batches(batches, max_entries, many_services):
    raws = []
    keys = []
    for number, spans in enumerate(batches):
        if many_services:  # 258+ services: past the 256 sources with a place of their own
            spans = [(number * 100 + i * 3 + s, *rest) for i, (s, *rest) in enumerate(spans)]
        raws.append(_request(spans))
        keys += [bytes([trace + 1]) * 16 + span_no.to_bytes(8, "big") for _, trace, span_no, *_ in spans]
    compare(raws, max_entries=max_entries, keys=keys)


def test_the_kernel_decides_children_of_a_known_parent():
    """A root, then its children alone and in pairs: the children are the kernel's, and the
    output is Python's (the differential above); here, what the children carry."""
    root = (1, 0, 1, None, dict(CONTEXT), None)
    children = [(1, 0, n, 1, {"owner.team": f"t-{n % 3}"}, None) for n in range(2, 9)]
    on = compare([_request([root]), _request(children)], keys=[bytes([1]) * 16 + n.to_bytes(8, "big")
                                                                for n in range(1, 9)])
    assert on.counting.decided >= 2  # the two pairs (the three alike are a unit: Python's)


def test_the_objects_the_kernel_makes_without_their_init_have_these_slots_only():
    """The kernel makes Known and SpanEdits with object.__new__ and sets these slots (their
    __init__ sets nothing else): a slot added to either must be set there too."""
    import dataclasses

    from costctx.pdata.codec.api import SpanEdits
    from costctx.processors.inherit.context_cache import Known

    assert [f.name for f in dataclasses.fields(SpanEdits)] == ["renames", "deletes", "sets", "replace"]
    assert Known.__slots__ == ("fields", "hop", "depth", "fallback")


def test_a_units_votes_count_every_span_it_holds():
    """Four spans carry wf-a (a root and a unit of three alike children, the kernel's), three
    carry wf-b (each alone): a later root of the trace lacking the field takes wf-a from the
    trace's votes on both sides (counting the unit's votes once would tie: none)."""
    context_a = {**CONTEXT, "workflow.id": "wf-a"}
    spans = [(0, 0, 1, None, context_a, None)] + [(0, 0, n, 1, {"workflow.id": "wf-a"}, None) for n in (2, 3, 4)] + [
        (0, 0, n, 1, {"workflow.id": "wf-b", "owner.team": f"team-{n}"}, None) for n in (5, 6, 7)]
    later = [(0, 0, 9, None, {"owner.team": "z"}, None)]
    on = compare([_request(spans), _request(later)], tick_every=0)
    assert on.counting.decided >= 1
    assert on.run(_request([(0, 0, 10, None, {"owner.team": "y"}, None)]))[-1][0]["workflow.id"] == "wf-a"


class _ThroughCallables(_Counting):
    """The kernel handed Python functions for the table's puts and reads and the trace votes (as
    another implementation of them would be): it calls them rather than the native tables."""

    def __init__(self, kernel) -> None:
        super().__init__(kernel)
        self.calls = {"put": 0, "put_many": 0, "record": 0, "peek": 0}

    def _counted(self, name: str, method):
        def call(*args):
            self.calls[name] += 1
            return method(*args)
        return call

    def begin(self, tally, here, put, put_many, record, *rest) -> None:
        self.kernel.begin(tally, here, self._counted("put", put), self._counted("put_many", put_many),
                          self._counted("record", record), *rest)

    def list_level(self, *args) -> list:
        # (order, start, end, indices, spans, keys, wait_keys, groups, by_group, cache_get, ...)
        args = list(args)
        args[9] = self._counted("peek", args[9])
        return self.kernel.list_level(*args)


@pytest.mark.parametrize("complete", [False, True])
def test_the_kernel_calls_the_native_tables_as_it_calls_other_implementations(complete):
    # The kernel finds the native ancestor table and trace votes behind the bound methods it
    # is given and calls them as Rust; handed other callables it calls those: same results.
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=6))
    direct, through = Side(True, 1000), Side(True, 1000)
    through.counting = _ThroughCallables(through.counting.kernel)
    through.processor._kernel = through.counting
    run_side_by_side(direct, through, pool + fresh_ids(pool, 1), 3)
    assert through.counting.decided == direct.counting.decided > 150
    assert through.counting.calls["put"] > 100 and through.counting.calls["put_many"] > 0
    assert through.counting.calls["peek"] > 10
    if not complete:
        assert through.counting.calls["record"] > 0  # the mixed workload's spans vote



def test_spans_released_into_a_later_batch_are_written_without_a_view_each():
    """Held children released by their parent's later batch are appended to it with their
    repair as edits on the lazy list (no SpanView made per released span), and what they
    inherited shows to later column readers, to views made afterwards and in the bytes out,
    as the Python codec gives it."""
    from costctx.pdata.codec.python import PythonCodec

    children = _request([(0, 0, 10 + n, 1, {}) for n in range(5)])  # their parent not seen yet
    parent = _request([(0, 0, 1, None, CONTEXT)])
    outs = {}
    for native in (True, False):
        side = Side(True, 1000) if native else UnitsSide(PythonCodec(), True, 1000)
        side.run(children)
        assert side.processor.hold.span_count == 5
        batch = ViewBatch(side.codec, parent, side.processor.watched_keys())
        batch.lazy_spans = side.processor.columnar  # as the pipeline sets it
        out = side.processor.process_view(batch)
        spans = out.view.spans
        assert len(spans) == 6 and side.processor.hold.span_count == 0
        keys = tuple(sorted(CONTEXT))
        if native:
            made = spans.made_count()
            columns = spans.attr_values(keys)
            assert spans.made_count() == made  # the column read made no view
            assert made <= 1  # the parent's view at most: none for the five released spans
        else:
            columns = [tuple(map(s.attrs.get, keys)) for s in spans]
        assert columns[1:] == [tuple(CONTEXT[k] for k in keys)] * 5
        outs[native] = (out.payload(), columns, [dict(s.attrs) for s in out.view.spans],
                        sorted((i, sorted((k, sorted(v)) for k, v in n.items())) for i, n in out.notes.items()))
    assert outs[True] == outs[False]


def test_the_kernel_finds_a_shape_met_before_without_asking_plans_again():
    """The kernel keeps the plans it used by the identities of their shape's parts (field
    names, the parent's fallback, the resource's names): a later batch of spans shaped alike
    (other ids, other values, other dicts) is decided from them, `_plans` emptied and `_plan`
    never called; and the output is still Python's (compare), across services that supply
    owner.version and services that do not (other resource names: other plans)."""
    def batch(trace: int) -> bytes:
        root = (1, trace, 1, None, {**CONTEXT, "workflow.id": f"wf-{trace}"}, None)
        children = [(1 + n % 2, trace, n, 1, {"owner.team": f"t-{n % 3}"}, None) for n in range(2, 9)]
        grandchildren = [(1 + n % 2, trace, 10 + n, n, {"owner.user": f"u-{n}"}, None) for n in range(2, 9)]
        return _request([root, *children, *grandchildren])

    on = compare([batch(0), batch(1)])
    processor = on.processor
    asked: list = []
    plan = processor._plan
    processor._plan = lambda *args: asked.append(args) or plan(*args)
    processor._plans.clear()
    before = on.counting.decided
    on.run(batch(2))
    assert on.counting.decided - before >= 10  # the kernel decided them (alone and in pairs)
    assert asked == []


def test_the_kernels_notes_are_sets_of_their_own():
    """The kernel copies a decision's repaired set from one it keeps per list of fields: each
    span's note is its own set (a later processor may add to one), equal to Python's."""
    root = (1, 0, 1, None, dict(CONTEXT), None)
    children = [(1, 0, n, 1, {"owner.team": f"t-{n % 3}"}, None) for n in range(2, 9)]
    side = Side(True, 1000)
    side.run(_request([root]))
    batch = ViewBatch(side.codec, _request(children), side.processor.watched_keys())
    batch.lazy_spans = side.processor.columnar
    before = side.counting.decided
    out = side.processor.process_view(batch)
    assert side.counting.decided > before
    sets = [notes["repaired"] for notes in out.notes.values()]
    assert len(sets) == len(children)
    assert all(found == sets[0] for found in sets)
    assert len({id(found) for found in sets}) == len(sets)  # one set object per span
    sets[0].add("changed")
    assert all("changed" not in found for found in sets[1:])


def test_the_kernels_counts_reach_the_tally_as_pythons_do():
    """The kernel counts its fresh decisions' repaired fields and conflicts natively and adds
    them into the tally's Counters at `end`: before `_flush` reads them, each batch's Counters
    equal Python's path's (many decisions of one shape: one bump tuple counted many times;
    children whose owner.team differs from their parent's: conflicts)."""
    root = (1, 0, 1, None, dict(CONTEXT), None)
    children = [(1, 0, n, 1, {"owner.team": f"t-{n}"}, None) for n in range(2, 12)]
    grandchildren = [(1, 0, n, n - 10, {"owner.user": f"u-{n}"}, None) for n in range(12, 22)]
    batches = [_request([root]), _request(children), _request(grandchildren)]
    tallies: dict[bool, list] = {}
    sides = []
    for kernel in (True, False):
        side = Side(kernel, 1000)
        seen = tallies[kernel] = []
        flush = side.processor._flush

        def capture(tally, flush=flush, seen=seen):
            seen.append((dict(tally.repaired), dict(tally.conflicts)))
            flush(tally)

        side.processor._flush = capture
        sides.append(side)
    run_side_by_side(sides[0], sides[1], batches, 0)
    assert sides[0].counting.decided >= 15  # the children and grandchildren are the kernel's
    assert tallies[True] == tallies[False]
    assert any(conflicts for _, conflicts in tallies[True])
    assert any(repaired for repaired, _ in tallies[True])


class _Failing(_Counting):
    """The kernel, its second `run` of a batch failing and its `end` failing after it (end adds
    the batch's counts into the tally's Counters: it can raise)."""

    def __init__(self, kernel) -> None:
        super().__init__(kernel)
        self.runs = 0

    def run(self, listed, start: int) -> int:
        self.runs += 1
        if self.runs == 2:
            raise RuntimeError("run")
        return super().run(listed, start)

    def end(self) -> None:
        super().end()
        if self.runs >= 2:
            raise ValueError("end")


def test_a_failing_end_after_a_failure_still_takes_the_batchs_held_spans_out_of_the_hold():
    """process_view's failure path: `kernel.end()` raising too still leaves no span of the
    batch held (the pipeline forwards the batch as it stands) and the batch's state cleared."""
    side = Side(True, 1000)
    side.processor._kernel = failing = _Failing(side.counting.kernel)
    # An orphan (its parent never comes: Python's path holds it) before two roots: the first
    # run stops at the orphan, the second fails.
    raw = _request([(1, 0, 2, 7, {}, None), (1, 1, 3, None, dict(CONTEXT), None),
                    (1, 2, 4, None, dict(CONTEXT), None)])
    batch = ViewBatch(side.codec, raw, side.processor.watched_keys())
    batch.lazy_spans = side.processor.columnar
    with pytest.raises(ValueError, match="end"):
        side.processor.process_view(batch)
    assert failing.runs == 2
    p = side.processor
    assert p.hold.span_count == 0 and not p.hold.waiters
    assert p._batch is None and p.cache.now is None and not p._learning
    assert len(batch.view.spans) == 3  # forwarded whole


def test_children_of_one_parent_decided_apart_share_the_pairs_they_take_from_it():
    """Children of one parent with their own fields differing (a decision each) take the
    parent's fields as the same (field, value) tuples, made once per parent in a batch (the
    edits and the attrs the same as Python's: the differential tests above)."""
    root = (1, 0, 1, None, dict(CONTEXT), None)
    children = [(1, 0, n, 1, {"owner.team": f"t-{n}"}, None) for n in range(2, 6)]
    for kernel in (True, False):
        side = Side(kernel, 1000)
        side.run(_request([root]))
        batch = ViewBatch(side.codec, _request(children), side.processor.watched_keys())
        batch.lazy_spans = side.processor.columnar
        out = side.processor.process_view(batch)
        sets = [out.edits.spans[i].sets for i in range(len(children))]
        inherited = [[pair for pair in s if pair[0] in CONTEXT and pair[0] != "owner.team"] for s in sets]
        assert all(len(pairs) == len(CONTEXT) - 1 for pairs in inherited)
        assert all(pairs == inherited[0] for pairs in inherited)
        shared = all(a is b for pairs in inherited[1:] for a, b in zip(pairs, inherited[0], strict=True))
        assert shared == kernel and (side.counting.decided >= len(children)) == kernel
