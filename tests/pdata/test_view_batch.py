"""ViewBatch: a batch switching between the view (fast path) and a TraceBatch (slow path)
keeps per-span notes, the slow path's span order and what processors refused."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata import TraceBatch
from costctx.pdata.codec import PythonCodec
from costctx.pdata.view_batch import ViewBatch, write_back

WATCHED = frozenset({"k", "list"})


def _raw(names: list[str]) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, name in enumerate(names):
        span = spans.add(name=name, span_id=bytes([i + 1]) * 8, trace_id=b"t" * 16)
        kv = span.attributes.add(key="k")
        kv.value.string_value = name
    return request.SerializeToString()


def _names(raw: bytes) -> list[str]:
    out = ExportTraceServiceRequest.FromString(raw)
    return [s.name for rs in out.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_notes_and_record_order_cross_from_trace_to_view_and_back():
    trace = TraceBatch(ExportTraceServiceRequest.FromString(_raw(["a", "b", "c"])))
    records = trace.records
    records[2].note("renamed").add("k")
    trace.set_records([records[2], records[0], records[1]])  # as inherit appends released spans
    trace.rejected, trace.rejected_reason = 1, "over a limit"

    batch = ViewBatch.of_trace(PythonCodec(), trace, WATCHED)
    spans = batch.view.spans
    visit = list(batch.indices())
    assert [spans[i].attrs["k"] for i in visit] == ["c", "a", "b"]  # the records' order
    assert {i: n for i, n in batch.notes.items()} == {visit[0]: {"renamed": {"k"}}}
    batch.set(visit[1], "k", "A")
    batch.edits.removed.add(visit[2])
    assert [spans[i].attrs["k"] for i in batch.indices()] == ["c", "A"]

    back = batch.trace
    assert [r.span.name for r in back.records] == ["c", "a"]
    assert back.records[0].noted("renamed") == {"k"}
    assert back.records[1].get_str("k") == "A"
    assert (back.rejected, back.rejected_reason) == (1, "over a limit")


def test_set_keeps_the_view_current_and_append_strings_merges():
    batch = ViewBatch(PythonCodec(), _raw(["a"]), WATCHED)
    batch.append_strings(0, "list", ["x"])
    batch.append_strings(0, "list", ["x", "y"])
    assert batch.view.spans[0].attrs["list"] == ["x", "y"]
    out = ExportTraceServiceRequest.FromString(batch.payload())
    (kv,) = [kv for kv in out.resource_spans[0].scope_spans[0].spans[0].attributes if kv.key == "list"]
    assert [v.string_value for v in kv.value.array_value.values] == ["x", "y"]


def test_untouched_batches_leave_as_the_bytes_received():
    raw = _raw(["a", "b"])
    batch = ViewBatch(PythonCodec(), raw, WATCHED)
    assert batch.payload() is raw
    assert batch.view.spans[1].attrs == {"k": "b"}
    assert batch.payload() == raw and batch.span_count() == 2


def test_write_back_edits_the_callers_trace_batch_in_place():
    trace = TraceBatch(ExportTraceServiceRequest.FromString(_raw(["a", "b"])))
    record = trace.records[1]
    batch = ViewBatch.of_trace(PythonCodec(), trace, WATCHED)
    batch.set(1, "k", "B")
    batch.note(1, "repaired").add("k")
    batch.edits.removed.add(0)
    write_back(trace, batch)
    assert [r.span.name for r in trace.records] == ["b"] and trace.records[0] is record
    assert record.get_str("k") == "B" and record.noted("repaired") == {"k"}
    assert _names(trace.request.SerializeToString()) == ["b"]


def test_a_batch_counted_by_its_receiver_leaves_without_a_scan():
    class NoScan(PythonCodec):
        def scan(self, raw, watched):
            raise AssertionError("scanned")

    raw = _raw(["a", "b"])
    batch = ViewBatch(NoScan(), raw, WATCHED, spans=2)
    assert batch.span_count() == 2 and not batch.is_empty() and batch.payload() is raw
    assert ViewBatch(NoScan(), raw, WATCHED).span_count() == 2  # counted by a parse instead


def test_the_request_order_view_keeps_the_records_order_too():
    # A codec without scan_records (the native one): the view is in request order and
    # `indices()` gives the records' order.
    class RequestOrder(PythonCodec):
        scan_records = None

    trace = TraceBatch(ExportTraceServiceRequest.FromString(_raw(["a", "b", "c"])))
    records = trace.records
    records[2].note("renamed").add("k")
    trace.set_records([records[2], records[0], records[1]])
    batch = ViewBatch.of_trace(RequestOrder(), trace, WATCHED)
    assert list(batch.indices()) == [2, 0, 1] and batch.notes == {2: {"renamed": {"k"}}}
    batch.set(0, "k", "A")
    batch.edits.removed.add(1)
    back = batch.trace
    assert [r.span.name for r in back.records] == ["c", "a"]
    assert back.records[0].noted("renamed") == {"k"} and back.records[1].get_str("k") == "A"


def _codecs():
    from costctx.pdata.codec import native

    return [PythonCodec()] + ([native.NativeCodec()] if native.AVAILABLE else [])


def test_extend_appends_spans_after_the_kept_ones_with_edits_and_notes_moved():
    for codec in _codecs():
        batch = ViewBatch(codec, _raw(["a", "b", "c"]), WATCHED)
        batch.set(2, "k", "C")
        batch.note(2, "repaired").add("k")
        batch.edits.removed.add(0)  # held: left out
        start = batch.extend(_raw(["d"]), 1)
        # The Python codec renumbers the kept spans; the native one keeps their indices.
        indices = list(batch.indices())
        assert indices[-1] == start and batch.span_count() == 3, codec.name
        spans = batch.view.spans
        assert [spans[i].attrs["k"] for i in indices] == ["b", "C", "d"], codec.name
        assert batch.notes == {indices[1]: {"repaired": {"k"}}}, codec.name
        batch.set(start, "k", "D")
        assert _names(batch.payload()) == ["b", "c", "d"]


def test_indices_follow_every_removal_extend_and_order_change():
    """`indices` is asked by every processor; what it gives must follow each change since."""
    for codec in _codecs():
        batch = ViewBatch(codec, _raw(["a", "b", "c", "d"]), WATCHED)
        assert list(batch.indices()) == [0, 1, 2, 3]
        batch.edits.removed.add(1)
        assert list(batch.indices()) == [0, 2, 3] and list(batch.indices()) == [0, 2, 3]
        batch.edits.removed.add(3)
        assert list(batch.indices()) == [0, 2], codec.name
        start = batch.extend(_raw(["e"]), 1)
        kept = list(batch.indices())
        spans = batch.view.spans
        assert [spans[i].attrs["k"] for i in kept] == ["a", "c", "e"] and kept[-1] == start, codec.name
        batch.order = list(reversed(range(len(spans))))
        assert [spans[i].attrs["k"] for i in batch.indices()] == ["e", "c", "a"], codec.name
        batch.edits.removed.add(start)
        assert [spans[i].attrs["k"] for i in batch.indices()] == ["c", "a"], codec.name


def test_native_extend_scans_only_the_appended_request_and_keeps_edits():
    from costctx.pdata.codec import native

    if not native.AVAILABLE:
        pytest.skip("costctx_native not built")
    codec = native.NativeCodec()
    batch = ViewBatch(codec, _raw(["a", "b", "c"]), WATCHED)
    first = batch.view
    batch.set(2, "k", "C")
    batch.edits.removed.add(0)
    before, resources, scopes = first.spans[:3], len(first.resources), len(first.scopes)
    start = batch.extend(_raw(["d", "e"]), 2)
    view = batch.view  # `first` is spent: its span list is extended in place
    assert start == 3 and all(view.spans[i] is before[i] for i in range(3))  # the kept records, not a rescan
    assert [view.resources[s.resource] is not None for s in view.spans[3:]] == [True, True]
    assert view.spans[3].resource == resources and view.spans[3].scope == scopes
    batch.set(1, "k", "B")  # an edit on either side after the extend
    batch.set(4, "k", "E")
    batch.edits.removed.add(3)
    assert codec.materialize(view, 4).name == "e" and codec.materialize(view, 1).name == "b"
    assert _names(codec.extract(view, [2, 4], batch.edits)) == ["c", "e"]
    out = batch.payload()
    assert _names(out) == ["b", "c", "e"]
    request = ExportTraceServiceRequest.FromString(out)
    values = [kv.value.string_value for rs in request.resource_spans for ss in rs.scope_spans
              for span in ss.spans for kv in span.attributes if kv.key == "k"]
    assert values == ["B", "C", "E"]


def test_extend_keeps_a_slow_path_visiting_order():
    trace = TraceBatch(ExportTraceServiceRequest.FromString(_raw(["a", "b", "c"])))
    records = trace.records
    records[0].note("renamed").add("k")
    trace.set_records([records[2], records[0], records[1]])
    batch = ViewBatch.of_trace(PythonCodec(), trace, WATCHED)
    batch.extend(_raw(["d"]), 1)
    spans = batch.view.spans
    assert [spans[i].attrs["k"] for i in batch.indices()] == ["c", "a", "b", "d"]
    assert [spans[i].attrs["k"] for i in batch.notes] == ["a"]


def test_span_kind_is_in_the_view_of_both_codecs():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"t" * 16, span_id=b"s" * 8)
    span.kind = span.SPAN_KIND_CLIENT
    for codec in _codecs():
        assert codec.scan(request.SerializeToString(), WATCHED).spans[0].kind == span.SPAN_KIND_CLIENT, codec.name


def test_python_extended_view_equals_a_scan_of_the_encoded_request():
    request = ExportTraceServiceRequest()
    for r in range(2):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        for s in range(2):
            spans = rs.scope_spans.add().spans
            for i in range(2):
                span = spans.add(name=f"{r}{s}{i}", span_id=bytes([r, s, i + 1]) * 2 + b"xy", trace_id=b"t" * 16)
                span.attributes.add(key="k").value.string_value = span.name
    codec = PythonCodec()
    raw = request.SerializeToString()
    tail = _raw(["d", "e"])
    batch = ViewBatch(codec, raw, WATCHED)
    batch.set(1, "list", ["x"])
    batch.edits.removed.update({2, 3})  # empties the second scope of the first resource
    batch.extend(tail, 2)
    reference = ViewBatch(codec, raw, WATCHED)
    reference.set(1, "list", ["x"])
    reference.edits.removed.update({2, 3})
    expected = codec.scan(codec.encode(reference.view, reference.edits) + tail, WATCHED)
    assert batch.view.spans == expected.spans
    assert batch.view.scopes == expected.scopes and batch.view.resources == expected.resources
    batch.set(0, "k", "changed")
    out = ExportTraceServiceRequest.FromString(batch.payload())
    assert [s.name for rs in out.resource_spans for ss in rs.scope_spans for s in ss.spans] == \
        ["000", "001", "100", "101", "110", "111", "d", "e"]


@pytest.mark.parametrize("codec", ["python", "native"])
def test_group_edits_reach_the_slow_path_write_back_and_replaced_spans(codec):
    """A group edit (set_many) is in what materialize, the TraceBatch switch and write_back
    see; a span re-encoded on the slow path takes the value inside its replacement."""
    from costctx.pdata.codec import select_codec
    from costctx.pdata.codec.native import AVAILABLE

    if codec == "native" and not AVAILABLE:
        pytest.skip("costctx_native not built")
    batch = ViewBatch(select_codec(codec), _raw(["a", "b", "c"]), WATCHED)
    span = batch.materialize(2)
    span.name = "c2"
    batch.replace(2, span)
    batch.set_many([0, 1, 2], "g", "v")
    batch.set(1, "k", "B")
    assert [s.attrs["g"] for s in batch.view.spans] == ["v"] * 3
    assert len(batch.edits.groups) == 1 and batch.edits.groups[0].spans == [0, 1]
    assert {kv.key: kv.value.string_value for kv in batch.materialize(0).attributes} == {"k": "a", "g": "v"}
    assert {kv.key: kv.value.string_value for kv in batch.materialize(2).attributes} == {"k": "c", "g": "v"}
    trace = batch.trace  # the switch to protobuf records
    got = [{kv.key: kv.value.string_value for kv in rec.span.attributes} for rec in trace.records]
    assert got == [{"k": "a", "g": "v"}, {"k": "B", "g": "v"}, {"k": "c", "g": "v"}]
    assert [rec.get_str("g") for rec in trace.records] == ["v"] * 3

    trace = TraceBatch(ExportTraceServiceRequest.FromString(_raw(["a", "b"])))
    batch = ViewBatch.of_trace(PythonCodec(), trace, WATCHED)
    batch.set_many([0, 1], "g", "v")
    write_back(trace, batch)
    assert [rec.get_str("g") for rec in trace.records] == ["v", "v"]
