"""inherit decides spans alike once per unit (a level of a batch, one ancestor decision, own
fields, resource, root or not) and writes one group edit: the same output as deciding each
span of the unit alone in the same order (`bulk = False`, the oracle), on both codecs: the
same bytes, notes, held and released spans, counts and metrics. On the golden inputs and on
generated batches (spans in any order, parents batches later, forged and duplicate ids,
cycles of parent ids, 258+ services, a small cache that evicts)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import WorkloadSpec, build_requests
from costctx.pdata.codec.python import PythonCodec
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.inherit.processor import InheritProcessor
from tests.golden import harness, inputs
from tests.processors.inherit.test_inherit_native_pass import CONTEXT, _request, run_side_by_side
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

CODECS = available_codecs()


class Side:
    def __init__(self, codec, bulk: bool, max_entries: int) -> None:
        self.codec = codec
        self.processor = standalone_processor("inherit", wait_duration="10s",
                                              cache={"max_entries": max_entries, "max_traces": 50})
        self.processor.bulk = bulk
        self.now = [1000.0]
        self.processor.use_clock(lambda: self.now[0])
        self.emitted: list[bytes] = []
        self.processor.bind(lambda batch: self.emitted.append(batch.payload()))

    def run(self, raw: bytes) -> tuple:
        batch = ViewBatch(self.codec, raw, self.processor.watched_keys())
        out = self.processor.process_view(batch)
        notes = sorted((i, sorted((k, sorted(v)) for k, v in n.items())) for i, n in out.notes.items())
        return out.payload(), notes, [dict(s.attrs) for s in out.view.spans]

    def state(self) -> tuple:
        p = self.processor
        return (len(p.cache), p.hold.span_count, p.hold.nbytes, dict(p.cache.evicted), p.cache.disputed,
                len(p.trace_values), len(p.registry.registry), sorted(p.hold.waiters))


def compare(batches: list[bytes], codec, max_entries: int = 1000, tick_every: int = 2) -> None:
    run_side_by_side(Side(codec, True, max_entries), Side(codec, False, max_entries), batches, tick_every)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("complete", [False, True])
def test_the_bench_workload(codec, complete):
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=8))
    compare(pool, codec, tick_every=5)


_values = st.sampled_from(["", "other", 7, True])
_span = st.tuples(
    st.integers(0, 3), st.integers(0, 3), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 12)),
    st.dictionaries(st.sampled_from(list(CONTEXT)), st.one_of(st.none(), _values), max_size=8).map(
        lambda picked: {k: CONTEXT[k] if v is None else v for k, v in picked.items()}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_span, min_size=1, max_size=30), min_size=1, max_size=5),
       max_entries=st.sampled_from([4, 30, 1000]), many_services=st.booleans(),
       codec=st.sampled_from(CODECS))
def test_generated_batches(batches, max_entries, many_services, codec):
    raws = []
    for number, spans in enumerate(batches):
        if many_services:  # 258+ services: past the 256 sources with a place of their own
            spans = [(number * 100 + i * 3 + s, *rest) for i, (s, *rest) in enumerate(spans)]
        raws.append(_request(spans))
    compare(raws, codec, max_entries=max_entries)


def test_units_are_formed_and_written_as_group_edits():
    """The bench workload's complete batches: most spans share a decision with spans alike
    (not one SpanEdits per span)."""
    processor = standalone_processor("inherit")
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=True, batches=2))
    batch = ViewBatch(PythonCodec(), pool[1], processor.watched_keys())
    processor.process_view(batch)
    in_groups = {i for g in batch.edits.groups for i in g.spans}
    assert len(in_groups) > 50
    assert not in_groups & set(batch.edits.spans)  # written once, in a group


@pytest.mark.parametrize("name", ["workload", "generated"])
def test_the_golden_inputs(name, monkeypatch):
    requests = inputs.workload_requests() if name == "workload" else inputs.generated_requests()
    fast = harness.run(requests)
    monkeypatch.setattr(InheritProcessor, "bulk", False)
    assert harness.run(requests) == fast


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_span_of_a_unit_votes_for_the_trace_fallback(codec):
    """Four spans carry workflow.id wf-a (a root and a unit of three alike children), three
    carry wf-b (each alone): wf-a has the majority, so a root of the trace lacking the field
    takes it from the trace. Counting the unit's votes once would tie (none)."""
    processor = standalone_processor("inherit")
    context_a = {**CONTEXT, "workflow.id": "wf-a"}
    spans = [(0, 0, 1, None, context_a)] + [(0, 0, n, 1, {"workflow.id": "wf-a"}) for n in (2, 3, 4)] + [
        (0, 0, n, 1, {"workflow.id": "wf-b", "owner.team": f"team-{n}"}) for n in (5, 6, 7)]
    first = ViewBatch(codec, _request(spans), processor.watched_keys())
    processor.process_view(first)
    assert any(len(g.spans) == 3 for g in first.edits.groups)  # the three alike: one unit
    later = ViewBatch(codec, _request([(0, 0, 9, None, {"owner.team": "z"})]), processor.watched_keys())
    out = processor.process_view(later)
    assert out.view.spans[0].attrs["workflow.id"] == "wf-a"
