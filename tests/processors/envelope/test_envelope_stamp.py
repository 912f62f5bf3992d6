"""envelope stamps `costctx.schema` on every span, whatever edits the span already carries:
none, attribute edits, or a whole replacement from a slow-path processor (where an edit
beside the replacement would be ignored by the codec)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.envelope import ENVELOPE
from costctx.envelope.keys import SCHEMA_KEY
from costctx.pdata.codec import select_codec
from costctx.pdata.codec.native import AVAILABLE as NATIVE
from costctx.pdata.view_batch import ViewBatch
from tests.support.processors import standalone_processor

CODECS = ["python", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no native codec"))]


def _request(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(name=f"s{i}", trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8)
        span.attributes.add(key="workflow.id").value.string_value = "wf-1"
    return request.SerializeToString()


@pytest.mark.parametrize("codec", CODECS)
def test_every_span_is_stamped_whatever_edits_it_carries(codec):
    envelope = standalone_processor("envelope")
    batch = ViewBatch(select_codec(codec), _request(3), envelope.watched_keys())
    batch.set(1, "owner.team", "core")                 # attribute edits
    span = batch.materialize(2)
    span.attributes.add(key="owner.user").value.string_value = "u"
    batch.replace(2, span)                             # a whole replacement
    envelope.process_view(batch)
    out = ExportTraceServiceRequest.FromString(batch.payload())
    spans = out.resource_spans[0].scope_spans[0].spans
    stamped = [{kv.key: kv.value.string_value for kv in s.attributes}.get(SCHEMA_KEY) for s in spans]
    assert stamped == [ENVELOPE.schema_version] * 3
    assert {kv.key for kv in spans[2].attributes} >= {"owner.user", SCHEMA_KEY}
    assert {kv.key for kv in spans[1].attributes} >= {"owner.team", SCHEMA_KEY}
    assert all(batch.view.spans[i].attrs[SCHEMA_KEY] == stamped[0] for i in range(3))


@pytest.mark.parametrize("codec", CODECS)
def test_spans_without_edits_share_one_stamp_edit_written_before_their_missing_fields(codec):
    """Spans with no edit of their own take the stamp as one group edit; the missing fields
    appended after it (one group edit for spans missing the same ones) come after it on the
    wire, as when each span had its own edit."""
    envelope = standalone_processor("envelope")
    batch = ViewBatch(select_codec(codec), _request(4), envelope.watched_keys())
    batch.set(3, "owner.team", "core")
    envelope.process_view(batch)
    assert [g.spans for g in batch.edits.groups] == [[0, 1, 2], [0, 1, 2, 3]]
    assert batch.edits.groups[0].edits.sets == [(SCHEMA_KEY, ENVELOPE.schema_version)]
    assert [key for key, _ in batch.edits.groups[1].edits.sets] == ["costctx.missing"]
    assert all(batch.view.spans[i].attrs["costctx.missing"] == batch.edits.groups[1].edits.sets[0][1]
               for i in range(4))  # the attrs kept in step (edit_attrs)
    out = ExportTraceServiceRequest.FromString(batch.payload())
    for span in out.resource_spans[0].scope_spans[0].spans:
        keys = [kv.key for kv in span.attributes]
        assert keys.index(SCHEMA_KEY) < keys.index("costctx.missing"), keys
    assert batch.edits.effective(0).sets[0] == (SCHEMA_KEY, ENVELOPE.schema_version)
