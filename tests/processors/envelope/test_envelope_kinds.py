"""envelope skips reading a span's values for "" or EMPTY when the scan's kinds say there
were none; a value written since the scan (an edit) still counts: a field set to "" or
EMPTY by an earlier processor reads as missing in a shape cached as present."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.codec import select_codec
from costctx.pdata.codec.api import EMPTY
from costctx.pdata.codec.native import AVAILABLE as NATIVE
from costctx.pdata.view_batch import ViewBatch
from tests.support.processors import standalone_processor

CODECS = ["python", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no native codec"))]


def _request(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "agent"
    scope = rs.scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(name=f"s{i}", trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8)
        span.attributes.add(key="workflow.id").value.string_value = "wf-1"
        span.attributes.add(key="owner.tenant").value.string_value = "acme"
    return request.SerializeToString()


def _outcomes(processor, field: str) -> dict[str, int]:
    counts = processor.context.survival.snapshot_all().counts
    return {outcome: n for (hop, key, outcome), n in counts.items() if hop == "agent" and key == field and n}


@pytest.mark.parametrize("codec", CODECS)
def test_a_value_blanked_by_an_edit_reads_as_missing_in_a_cached_shape(codec):
    envelope = standalone_processor("envelope")
    envelope.process_view(ViewBatch(select_codec(codec), _request(3), envelope.watched_keys()))  # shape cached
    batch = ViewBatch(select_codec(codec), _request(3), envelope.watched_keys())
    batch.set(1, "workflow.id", "")
    batch.set(2, "workflow.id", EMPTY)
    envelope.process_view(batch)
    assert _outcomes(envelope, "workflow.id") == {"present": 4, "missing": 2}
    assert _outcomes(envelope, "owner.tenant") == {"present": 6}


@pytest.mark.parametrize("codec", CODECS)
def test_a_value_blanked_by_a_group_edit_reads_as_missing_in_a_cached_shape(codec):
    envelope = standalone_processor("envelope")
    envelope.process_view(ViewBatch(select_codec(codec), _request(3), envelope.watched_keys()))  # shape cached
    batch = ViewBatch(select_codec(codec), _request(4), envelope.watched_keys())
    batch.set_many([1, 2], "workflow.id", "")
    envelope.process_view(batch)
    assert _outcomes(envelope, "workflow.id") == {"present": 5, "missing": 2}
