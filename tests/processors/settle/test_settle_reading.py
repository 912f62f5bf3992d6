"""settle's per-batch reading (`read_settle`): the Rust one (native/src/settle.rs) gives what the
Python one (the oracle) gives on the same views: each trace's first span carrying both context
fields, and the other spans with a cost, over "" and EMPTY values, values of other kinds, several
traces and removed spans; and the processor settles alike with either reading."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.attribution.pending import PendingSpan
from costctx.envelope.keys import COST_USD
from costctx.pdata.attributes import set_any_value
from costctx.pdata.codec.api import attr_values_at, bytes_column, edit_attrs
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.settle import processor as settle_processor
from costctx.processors.settle.processor import _ROW, TENANT, WORKFLOW
from costctx.processors.settle.reading import native_read_settle, read_settle
from tests.support.codecs import available_codecs
from tests.support.processors import standalone_processor

NATIVE = [c for c in available_codecs() if c.name == "native"]
VALUES = st.sampled_from(["", "x", "wf-1", 0, 1, True, 1.5, -2.0, 0.25, b"x", [1]])
SPAN = st.fixed_dictionaries({
    "attrs": st.dictionaries(st.sampled_from((WORKFLOW, TENANT, COST_USD, "other")), VALUES, max_size=4),
    "trace": st.integers(1, 3),
    "blank": st.one_of(st.none(), st.sampled_from((WORKFLOW, TENANT, COST_USD))),
})


def build(specs: list[dict]) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for n, spec in enumerate(specs):
        span = spans.add(trace_id=bytes([spec["trace"]]) * 16, span_id=(n + 1).to_bytes(8, "big"), name="s",
                         start_time_unix_nano=1, end_time_unix_nano=2)
        for key, value in spec["attrs"].items():
            if type(value) is list:
                span.attributes.add(key=key).value.array_value.values.add(int_value=value[0])
            else:
                set_any_value(span.attributes.add(key=key).value, value)
        if spec["blank"] is not None and spec["blank"] not in spec["attrs"]:
            span.attributes.add(key=spec["blank"])  # a key with no value: EMPTY in the view
    return request.SerializeToString()


def views(raw: bytes, removed: set[int]):
    watched = standalone_processor("settle").watched_keys()
    for codec in available_codecs():
        batch = ViewBatch(codec, raw, watched)
        for index in removed:
            batch.view  # noqa: B018 - scanned first
            batch.edits.removed.add(index)
        yield codec.name, batch


@pytest.mark.skipif(not NATIVE or native_read_settle is None, reason="costctx_native not built")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SPAN, max_size=10), st.sets(st.integers(0, 9), max_size=3), st.booleans())
def test_native_read_settle_is_the_python_one(specs, removed, want_context):
    raw = build(specs)
    removed = {i for i in removed if i < len(specs)}
    for _, batch in views(raw, removed):
        args = (batch.view.spans, batch.indices(), WORKFLOW, TENANT, COST_USD, want_context)
        want = read_settle(*args)
        assert native_read_settle(*args) == want
        # Rows (workflow, tenant, cost) by index and the trace id column, as the processor reads
        # the lazy list: the same answer.
        spans = batch.view.spans
        rows = dict(zip(batch.indices(), attr_values_at(spans, batch.indices(), _ROW), strict=True))
        traces = bytes_column(spans, "trace_id")
        row_args = (rows, batch.indices(), WORKFLOW, TENANT, COST_USD, want_context, traces)
        assert read_settle(*row_args) == want
        assert native_read_settle(*row_args) == want
    # The lazy list itself (native): its records read, no view made.
    lazy = NATIVE[0].scan(raw, standalone_processor("settle").watched_keys()).spans
    indices = [i for i in range(len(lazy)) if i not in removed]
    assert native_read_settle(lazy, indices, WORKFLOW, TENANT, COST_USD, want_context) == read_settle(
        list(NATIVE[0].scan(raw, standalone_processor("settle").watched_keys()).spans), indices, WORKFLOW, TENANT,
        COST_USD, want_context)
    assert lazy.made_count() == 0


@pytest.mark.skipif(not NATIVE, reason="costctx_native not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SPAN, max_size=10), st.lists(st.integers(0, 9), max_size=4), st.integers(0, 3))
def test_the_processor_on_the_lazy_list_settles_as_on_views(specs, edited, pending_before):
    """A columnar settle (the lazy list, earlier edits through edit_attrs on spans not made and
    on views made) remembers and settles what it does on a list of views."""
    raw = build(specs)
    edited = [i for i in edited if i < len(specs)]
    outcomes = []
    for lazy in (True, False):
        settle = standalone_processor("settle")
        for n in range(pending_before):  # something pending: the traces' context is read
            settle.ledger.add(_pending(settle, bytes([n + 1]) * 16))
        batch = ViewBatch(NATIVE[0], raw, settle.watched_keys())
        batch.lazy_spans = True
        spans = batch.view.spans
        for n, index in enumerate(edited):
            if n % 2:
                spans[index].attrs[TENANT] = "t"  # a view made and edited
            else:
                edit_attrs(spans, [index], [], [], [(WORKFLOW, "w"), (COST_USD, 0.5)])
        batch.lazy_spans = lazy
        settle.process_view(batch)
        made = getattr(batch.view.spans, "made_count", None)  # a plain list when every view was made
        if lazy and made is not None:  # views made: at most the edited ones, those of spans with a
            # cost and one per trace settled (the span whose context settles it)
            costed = sum(COST_USD in s["attrs"] or s["blank"] == COST_USD for s in specs)
            assert made() <= len(set(edited)) + costed + len({s["trace"] for s in specs})
        outcomes.append((sorted(settle.ledger._entries), settle.ledger.traces(),
                         settle.metrics.settled.labels("ancestor")._value.get()))
    assert outcomes[0] == outcomes[1]


def _pending(settle, trace_id: bytes) -> PendingSpan:
    dims = tuple("" for _ in settle.host.survival.spend_dimensions)
    return PendingSpan(trace_id=trace_id, span_id=b"\x09" * 8, parent_id=b"", hop="h", resource=b"", cost_pico=1,
                       input_tokens=0, output_tokens=0, price_source="", spend_key=(None, dims), fields={},
                       missing=(WORKFLOW, TENANT), start_ns=0, end_ns=0, added_at=settle.ledger.timer())


def test_the_first_span_with_both_fields_stands_for_its_trace_and_the_rest_with_a_cost_are_pending():
    raw = build([
        {"attrs": {WORKFLOW: "wf-1", COST_USD: 0.5}, "trace": 1, "blank": None},           # no tenant: pending
        {"attrs": {WORKFLOW: "wf-1", TENANT: "acme"}, "trace": 1, "blank": None},         # trace 1's context
        {"attrs": {WORKFLOW: "wf-1", TENANT: "acme", COST_USD: 1.0}, "trace": 1, "blank": None},  # not first
        {"attrs": {WORKFLOW: "", TENANT: "acme", COST_USD: 1.0}, "trace": 2, "blank": None},  # "": pending
        {"attrs": {WORKFLOW: 1, TENANT: "acme"}, "trace": 2, "blank": COST_USD},           # EMPTY cost: pending
        {"attrs": {WORKFLOW: "wf-3", TENANT: "acme"}, "trace": 3, "blank": None},
        {"attrs": {TENANT: "acme", COST_USD: 0}, "trace": 3, "blank": WORKFLOW},            # EMPTY field: pending
    ])
    for name, batch in views(raw, {5}):
        args = (batch.view.spans, batch.indices(), WORKFLOW, TENANT, COST_USD)
        for read in (read_settle, native_read_settle) if name == "native" and native_read_settle else (read_settle,):
            context, pending = read(*args, True)
            assert context == {b"\x01" * 16: 1} and pending == [0, 3, 4, 6]
            assert read(*args, False) == ({}, [0, 3, 4, 6])  # nothing pending before: no trace wanted


@pytest.mark.skipif(not NATIVE or native_read_settle is None, reason="costctx_native not built")
def test_the_python_reading_on_native_views_gives_the_golden_output(monkeypatch):
    # The bench workload through the whole pipeline on the native codec, settle reading with
    # the Python twin: the same spans, metrics and survival counts as recorded.
    from tests.golden import harness, inputs
    from tests.service.test_golden import assert_same

    monkeypatch.setenv("COSTCTX_CODEC", "native")
    monkeypatch.setattr(settle_processor, "native_read_settle", read_settle)
    assert_same(harness.load(harness.DATA / "workload.json.gz"), harness.run(inputs.workload_requests()))


@pytest.mark.parametrize("codec", [c.name for c in available_codecs()])
def test_a_span_pending_and_its_trace_context_in_one_batch_settle_there_with_nothing_pending_before(codec):
    # Nothing is pending when the batch arrives, so traces are not read at first; the batch's
    # own priced span without workflow.id becomes pending, and its trace's context in the same
    # batch (a later span) must still settle it.
    from costctx.pdata.codec import select_codec

    settle = standalone_processor("settle")
    raw = build([{"attrs": {TENANT: "acme", COST_USD: 0.5}, "trace": 1, "blank": None},
                 {"attrs": {WORKFLOW: "wf-1", TENANT: "acme"}, "trace": 1, "blank": None}])
    assert not len(settle.ledger)
    settle.process_view(ViewBatch(select_codec(codec), raw, settle.watched_keys()))
    assert not len(settle.ledger)  # settled, not left pending
    assert settle.metrics.settled.labels("ancestor")._value.get() == 1
