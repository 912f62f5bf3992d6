"""The codec interface on its Python implementation: view contents, each edit kind, extract,
and output identical to protobuf's serialization of the same edits made on the message."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.pdata.attributes import set_any_value
from costctx.pdata.codec import PythonCodec, select_codec
from costctx.pdata.codec.api import EMPTY, BatchEdits, CodecError, KvList, SpanEdits

CODEC = PythonCodec()
WATCHED = frozenset({"workflow.id", "gen_ai.system", "tokens", "list", "kv", "empty", "dup"})


def _add(attributes, key, value):
    kv = attributes.add()
    kv.key = key
    if value is not EMPTY:
        set_any_value(kv.value, value)


def request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://schema/1")
    _add(rs.resource.attributes, "service.name", "agent-api")
    _add(rs.resource.attributes, "workflow.id", "wf-r")
    ss = rs.scope_spans.add(schema_url="s1")
    ss.scope.name, ss.scope.version = "lib", "1.0"
    a = ss.spans.add(trace_id=b"t" * 16, span_id=b"a" * 8, name="a", start_time_unix_nano=5, end_time_unix_nano=9)
    for key, value in [("workflow.id", "wf-1"), ("gen_ai.system", "openai"), ("tokens", 12), ("other", "x"),
                       ("list", ["p", "q"]), ("kv", {"k": 1.5}), ("empty", EMPTY), ("dup", 1), ("dup", 2)]:
        _add(a.attributes, key, value)
    a.events.add(name="e")
    a.links.add(trace_id=b"u" * 16, span_id=b"v" * 8)
    b = ss.spans.add(trace_id=b"t" * 16, span_id=b"b" * 8, parent_span_id=b"a" * 8, name="b")
    _add(b.attributes, "other", True)
    rs2 = req.resource_spans.add()
    c = rs2.scope_spans.add().spans.add(trace_id=b"w" * 16, span_id=b"c" * 8, name="c")
    _add(c.attributes, "tokens", 3)
    return req


RAW = request().SerializeToString()


def test_the_view_holds_ids_times_service_and_only_watched_keys():
    view = CODEC.scan(RAW, WATCHED)
    assert [r.service for r in view.resources] == ["agent-api", "unknown_service"]
    assert view.resources[0].attrs == {"workflow.id": "wf-r"} and view.resources[0].schema_url == "https://schema/1"
    assert (view.scopes[0].name, view.scopes[0].version, view.scopes[0].schema_url) == ("lib", "1.0", "s1")
    a, b, c = view.spans
    assert (a.trace_id, a.span_id, a.parent_span_id, a.start, a.end) == (b"t" * 16, b"a" * 8, b"", 5, 9)
    assert a.attrs == {"workflow.id": "wf-1", "gen_ai.system": "openai", "tokens": 12, "list": ["p", "q"],
                       "kv": KvList([("k", 1.5)]), "empty": EMPTY, "dup": 2}  # later duplicates win
    assert a.attr_count == 9 and a.event_count == 1 and a.links == ((b"u" * 16, b"v" * 8),)
    assert a.signature == frozenset(a.attrs)
    assert b.parent_span_id == b"a" * 8 and b.attrs == {} and b.attr_count == 1
    assert (c.resource, c.scope, view.scopes[c.scope].resource) == (1, 1, 1)


def test_no_edits_gives_back_the_bytes_received():
    view = CODEC.scan(RAW, WATCHED)
    assert CODEC.encode(view, BatchEdits()) is RAW


def _expected(edit) -> bytes:
    req = request()
    edit(req)
    return req.SerializeToString()


def _attrs(req, r=0, s=0, i=0):
    return req.resource_spans[r].scope_spans[s].spans[i].attributes


def test_rename_delete_and_set_match_the_same_edits_on_protobuf():
    view = CODEC.scan(RAW, WATCHED)
    edits = BatchEdits()
    span = edits.span(0)
    span.renames.append(("gen_ai.system", "gen_ai.provider.name"))
    span.deletes.append("tokens")
    span.sets.extend([("workflow.id", "wf-9"), ("cost.usd", 0.25), ("arr", ["x"]), ("kvl", KvList([("a", 1)])),
                      ("none", EMPTY), ("dup", 7)])

    def edit(req):
        attrs = _attrs(req)
        attrs[1].key = "gen_ai.provider.name"
        del attrs[2]
        attrs[0].value.string_value = "wf-9"
        attrs[-1].value.int_value = 7  # the last "dup"
        for key, value in [("cost.usd", 0.25), ("arr", ["x"]), ("kvl", {"a": 1})]:
            _add(attrs, key, value)
        attrs.add().key = "none"

    assert CODEC.encode(view, edits) == _expected(edit)


def test_resource_edits_and_removed_spans_drop_what_they_empty():
    view = CODEC.scan(RAW, WATCHED)
    edits = BatchEdits()
    edits.resources[0] = SpanEdits(sets=[("owner.team", "platform")])
    edits.removed.update({1, 2})

    def edit(req):
        _add(req.resource_spans[0].resource.attributes, "owner.team", "platform")
        del req.resource_spans[0].scope_spans[0].spans[1]
        del req.resource_spans[1]  # its only span was removed

    assert CODEC.encode(view, edits) == _expected(edit)


def test_replace_takes_a_materialized_span_edited_on_the_slow_path():
    view = CODEC.scan(RAW, WATCHED)
    span = CODEC.materialize(view, 0)
    assert isinstance(span, Span) and span.name == "a"
    span.events[0].name = "renamed event"
    edits = BatchEdits()
    edits.span(0).replace = span.SerializeToString()
    edits.span(0).sets.append(("ignored", 1))  # replace wins over the other fields

    def edit(req):
        req.resource_spans[0].scope_spans[0].spans[0].events[0].name = "renamed event"

    assert CODEC.encode(view, edits) == _expected(edit)
    assert CODEC.materialize(view, 0).events[0].name == "e"  # the view still reads as scanned


def test_extract_keeps_only_the_given_spans_with_their_edits():
    view = CODEC.scan(RAW, WATCHED)
    edits = BatchEdits()
    edits.span(1).sets.append(("workflow.id", "wf-1"))
    out = ExportTraceServiceRequest.FromString(CODEC.extract(view, [1], edits))
    assert len(out.resource_spans) == 1 and len(out.resource_spans[0].scope_spans) == 1
    (only,) = out.resource_spans[0].scope_spans[0].spans
    assert only.name == "b" and [kv.key for kv in only.attributes] == ["other", "workflow.id"]
    assert out.resource_spans[0].scope_spans[0].scope.name == "lib"
    # the view itself is unchanged: the rest of the batch still encodes whole
    assert len(ExportTraceServiceRequest.FromString(CODEC.encode(view, BatchEdits(removed={0}))).
               resource_spans[0].scope_spans[0].spans) == 1


def test_invalid_bytes_are_a_codec_error():
    with pytest.raises(CodecError):
        CODEC.scan(b"\x0a\xff\xff", WATCHED)


def test_select_codec_reads_the_environment(monkeypatch):
    monkeypatch.setenv("COSTCTX_CODEC", "python")
    assert select_codec().name == "python"
    monkeypatch.setenv("COSTCTX_CODEC", "auto")
    assert select_codec().name in ("python", "native")
    monkeypatch.setenv("COSTCTX_CODEC", "fast")
    with pytest.raises(ValueError, match="COSTCTX_CODEC"):
        select_codec()


def test_the_pipeline_logs_its_codec_at_start(monkeypatch, caplog):
    import asyncio
    import logging

    from costctx.service.pipeline import TracesPipeline
    from costctx.telemetry.metrics import SidecarMetrics

    monkeypatch.setenv("COSTCTX_CODEC", "python")
    pipeline = TracesPipeline([], [], SidecarMetrics())
    with caplog.at_level(logging.INFO, logger="costctx.pipeline"):
        asyncio.run(pipeline.start())
    assert "codec: python" in caplog.messages


def test_encoding_twice_or_extracting_after_encoding_starts_from_the_request_as_scanned():
    view = CODEC.scan(RAW, WATCHED)
    edits = BatchEdits()
    edits.span(0).renames.append(("gen_ai.system", "gen_ai.provider.name"))
    edits.removed.add(2)
    first = CODEC.encode(view, edits)
    assert CODEC.encode(view, edits) == first  # not renamed twice, not a second span removed
    assert CODEC.materialize(view, 0).attributes[1].key == "gen_ai.system"
    out = ExportTraceServiceRequest.FromString(CODEC.extract(view, [2], BatchEdits()))
    assert [s.name for rs in out.resource_spans for ss in rs.scope_spans for s in ss.spans] == ["c"]


def test_a_view_of_a_parsed_message_encodes_like_one_of_its_bytes():
    message = request()
    view = CODEC.scan_message(message, WATCHED)
    assert view.spans[0].attrs == CODEC.scan(RAW, WATCHED).spans[0].attrs
    assert CODEC.encode(view, BatchEdits()) == RAW
    edits = BatchEdits(removed={1})
    once = CODEC.encode(view, edits)
    assert CODEC.encode(view, edits) == once == CODEC.encode(CODEC.scan(RAW, WATCHED), edits)


def test_encode_last_spends_a_view_of_a_parsed_message():
    view = CODEC.scan_message(request(), WATCHED)
    edits = BatchEdits(removed={1})
    assert CODEC.encode_last(view, edits) == CODEC.encode(CODEC.scan(RAW, WATCHED), edits)
    with pytest.raises(RuntimeError, match="encode_last"):
        CODEC.encode(view, edits)
