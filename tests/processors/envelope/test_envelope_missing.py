"""envelope's costctx.missing values per span (`missing_groups`): the Rust one (native/src/
envelope.rs) gives what the Python one (the oracle, missing.py) gives, on the native codec's
lazy list (records read, no view made; spans edited before through edit_attrs or through a
made view) and on views made beforehand: absent values, string arrays holding some, all or
none of the names, arrays with other elements, values of other kinds, spans whose own edit
is a replace; and the processor on the bench workload writes the same bytes either way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.envelope.keys import MISSING_KEY
from costctx.pdata.attributes import set_any_value
from costctx.pdata.codec.api import SpanEdits, edit_attrs
from costctx.processors.envelope.missing import missing_groups, native_missing_groups
from tests.support.codecs import available_codecs

NATIVE = [c for c in available_codecs() if c.name == "native"]
pytestmark = pytest.mark.skipif(not NATIVE or native_missing_groups is None, reason="costctx_native not built")

NAMES = ("workflow.id", "owner.tenant", "owner.feature")
CURRENT = st.one_of(st.none(), st.lists(st.sampled_from([*NAMES, "other", 3, True]), max_size=4),
                    st.sampled_from(["workflow.id", 7, 1.5]))
SHAPES = st.lists(st.one_of(st.none(), st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)),
                  min_size=1, max_size=4)


def _request(currents: list) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, current in enumerate(currents):
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"), name="s")
        set_any_value(span.attributes.add(key="other").value, "x")
        if current is not None:
            set_any_value(span.attributes.add(key=MISSING_KEY).value, current)
    return request.SerializeToString()


@settings(max_examples=120, deadline=None)
@given(data=st.data(), currents=st.lists(CURRENT, min_size=1, max_size=12), shapes=SHAPES)
def test_native_missing_groups_is_the_python_one(data, currents, shapes):
    n = len(currents)
    ids = data.draw(st.lists(st.integers(0, len(shapes) - 1), min_size=n, max_size=n))
    indices = data.draw(st.permutations(range(n)))
    edited = data.draw(st.lists(st.integers(0, n - 1), max_size=3))  # a group edit before, views not made
    viewed = data.draw(st.lists(st.integers(0, n - 1), max_size=2))  # a view made and set
    replaced = set(data.draw(st.lists(st.integers(0, n - 1), max_size=2)))
    missing = [tuple(names) if names else None for names in shapes]
    raw = _request(currents)
    codec = NATIVE[0]
    watched = frozenset({MISSING_KEY, "other"})
    own = {i: SpanEdits(replace=b"") for i in replaced}
    lazy = codec.scan(raw, watched).spans
    views = codec.scan(raw, watched).spans.to_list()
    for spans in (lazy, views):
        edit_attrs(spans, edited, (), (), ((MISSING_KEY, ["owner.tenant", 5]),))
        for i in viewed:
            spans[i].attrs[MISSING_KEY] = "workflow.id"
    made = lazy.made_count()
    got = native_missing_groups(lazy, indices, ids, missing, MISSING_KEY, own)
    assert lazy.made_count() == made  # read from the records
    assert got == native_missing_groups(views, indices, ids, missing, MISSING_KEY, own)
    assert got == missing_groups(views, indices, ids, missing, MISSING_KEY, own)


def test_mismatched_ids_are_refused_as_the_python_one_refuses_them():
    raw = _request([None, None])
    spans = NATIVE[0].scan(raw, frozenset({MISSING_KEY})).spans
    for ids in ([0], [0, 0, 0]):
        with pytest.raises(ValueError):
            missing_groups(spans, range(2), ids, [("workflow.id",)], MISSING_KEY, {})
        with pytest.raises(ValueError):
            native_missing_groups(spans, range(2), ids, [("workflow.id",)], MISSING_KEY, {})


def test_the_processor_on_the_bench_workload_with_either():
    from bench.workload import WorkloadSpec, build_requests
    from costctx.pdata.view_batch import ViewBatch
    from costctx.processors.envelope import processor as module
    from tests.support.processors import standalone_processor

    for raw in build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=4)):
        out = []
        for native in (True, False):
            processor = standalone_processor("envelope")
            batch = ViewBatch(NATIVE[0], raw, processor.watched_keys())
            batch.lazy_spans = True
            with pytest.MonkeyPatch.context() as patch:
                if not native:
                    patch.setattr(module, "native_missing_groups", None)
                processor.process_view(batch)
            out.append((batch.payload(), repr([s.attrs for s in batch.view.spans])))
        assert out[0] == out[1] and MISSING_KEY.encode() in out[0][0]
