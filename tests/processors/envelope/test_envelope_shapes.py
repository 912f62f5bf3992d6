"""envelope decides once per span shape (keys in order, notes): spans of one shape whose values
or notes differ must still get their own outcomes."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.codec import select_codec
from costctx.pdata.codec.native import AVAILABLE as NATIVE
from costctx.pdata.view_batch import ViewBatch
from tests.support.processors import standalone_processor

CODECS = ["python", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no native codec"))]


def _request(*workflow_ids: str | None, empty_tenant_at: int | None = None) -> bytes:
    """One span per workflow id (None: the attribute set with no value), all with one key order."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "agent"
    spans = rs.scope_spans.add().spans
    for i, workflow_id in enumerate(workflow_ids):
        span = spans.add(name=f"s{i}", trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8)
        kv = span.attributes.add(key="workflow.id")
        if workflow_id is not None:
            kv.value.string_value = workflow_id
        span.attributes.add(key="owner.tenant").value.string_value = "" if i == empty_tenant_at else "acme"
    return request.SerializeToString()


def _outcomes(processor, field: str) -> dict[str, int]:
    counts = processor.context.survival.snapshot_all().counts
    return {outcome: n for (hop, key, outcome), n in counts.items() if hop == "agent" and key == field and n}


@pytest.mark.parametrize("codec", CODECS)
def test_values_that_read_as_absent_are_missing_in_a_cached_shape(codec):
    envelope = standalone_processor("envelope")
    for _ in range(2):  # the second batch meets every shape cached
        raw = _request("wf-1", "", None, "wf-2", empty_tenant_at=3)
        envelope.process_view(ViewBatch(select_codec(codec), raw, envelope.watched_keys()))
    assert _outcomes(envelope, "workflow.id") == {"present": 4, "missing": 4}
    assert _outcomes(envelope, "owner.tenant") == {"present": 6, "missing": 2}


@pytest.mark.parametrize("codec", CODECS)
def test_spans_of_one_shape_with_other_notes_get_their_own_outcomes(codec):
    envelope = standalone_processor("envelope")
    batch = ViewBatch(select_codec(codec), _request("wf-1", "wf-1", "wf-1"), envelope.watched_keys())
    batch.view  # noqa: B018 - scanned first: notes are by index in the view
    batch.note(1, "repaired").add("workflow.id")
    batch.note(2, "renamed").add("workflow.id")
    envelope.process_view(batch)
    assert _outcomes(envelope, "workflow.id") == {"present": 1, "inherited": 1, "renamed": 1}


@pytest.mark.parametrize("codec", CODECS)
def test_a_shape_first_seen_with_an_empty_value_is_not_kept_for_the_spans_after_it(codec):
    envelope = standalone_processor("envelope")
    raw = _request("", "wf-1", "wf-2")
    envelope.process_view(ViewBatch(select_codec(codec), raw, envelope.watched_keys()))
    assert _outcomes(envelope, "workflow.id") == {"present": 2, "missing": 1}


def _model_calls(*response_models: str) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "agent"
    spans = rs.scope_spans.add().spans
    for i, model in enumerate(response_models):
        span = spans.add(name="chat", trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8,
                         start_time_unix_nano=1, end_time_unix_nano=2)
        span.attributes.add(key="workflow.name").value.string_value = "research"
        span.attributes.add(key="gen_ai.response.model").value.string_value = model
        span.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 10
    return request.SerializeToString()


@pytest.mark.parametrize("codec", CODECS)
def test_readiness_reads_the_usage_values_of_each_span_in_a_cached_shape(codec):
    envelope = standalone_processor("envelope")
    raw = _model_calls("gpt-4o", "", "gpt-4o", "")
    envelope.process_view(ViewBatch(select_codec(codec), raw, envelope.watched_keys()))
    readiness = envelope.context.survival.snapshot_all().readiness["research"]
    assert readiness.llm_spans == 4
    assert readiness.absent["gen_ai.response.model"] == 2
