"""limits: too many attributes are dropped (envelope keys kept), long values truncated, all counted."""

from __future__ import annotations

import requests

from costctx.service.registry import DEFAULT_TRACE_PROCESSORS
from tests.support.otlp_client import trace_request

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def big_span_request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest.FromString(trace_request(["big"]))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(30):
        span.attributes.append(KeyValue(key=f"junk.{i}", value=AnyValue(string_value="v")))
    # Envelope keys at the end: over the limit, they must still be kept.
    span.attributes.append(KeyValue(key="owner.tenant", value=AnyValue(string_value="acme")))
    span.attributes.append(KeyValue(key="workflow.id", value=AnyValue(string_value="wf-1")))
    span.attributes.append(KeyValue(key="prompt", value=AnyValue(string_value="é" * 500)))
    array = AnyValue()
    array.array_value.values.add().string_value = "y" * 300
    array.array_value.values.add().string_value = "short"
    span.attributes.append(KeyValue(key="tags", value=array))
    return request.SerializeToString()


def test_limits_drop_and_truncate_and_count(make_sidecar, sink):
    runner = make_sidecar(
        processors=["limits"],
        processor_config={"limits": {"max_attributes_per_span": 10, "max_attribute_value_length": 100}},
    )
    url = f"http://127.0.0.1:{runner.sidecar.http_port}/v1/traces"
    assert requests.post(url, data=big_span_request(), headers=PROTOBUF, timeout=5).status_code == 200
    assert requests.post(url, data=trace_request(["small"]), headers=PROTOBUF, timeout=5).status_code == 200
    assert sink.wait_for_spans(2)
    spans = {s.name: s for s in sink.spans()}
    big = spans["big"].attributes
    assert len(big) == 10
    assert big["owner.tenant"] == "acme" and big["workflow.id"] == "wf-1"
    assert [f"junk.{i}" for i in range(8)] == [k for k in big if k.startswith("junk.")]
    # Two consumers may deliver the two batches in either order: find the big span's request.
    (big_proto,) = [span for request in sink.requests["traces"] for rs in request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans if span.name == "big"]
    assert big_proto.dropped_attributes_count == 24
    assert spans["small"].attributes == {}

    registry = runner.sidecar.metrics.registry
    assert registry.get_sample_value("costctx_limits_dropped_attributes_total", {"processor": "limits"}) == 24


def test_limits_truncate_long_values(make_sidecar, sink):
    runner = make_sidecar(
        processors=["limits"],
        processor_config={"limits": {"max_attributes_per_span": 100, "max_attribute_value_length": 100}},
    )
    url = f"http://127.0.0.1:{runner.sidecar.http_port}/v1/traces"
    assert requests.post(url, data=big_span_request(), headers=PROTOBUF, timeout=5).status_code == 200
    assert sink.wait_for_spans(1)
    attrs = sink.spans()[0].attributes
    assert attrs["prompt"] == "é" * 100  # characters, and still valid UTF-8
    assert attrs["tags"] == ["y" * 100, "short"]
    assert len(attrs) == 34  # nothing dropped
    registry = runner.sidecar.metrics.registry
    assert registry.get_sample_value("costctx_limits_truncated_values_total", {"processor": "limits"}) == 2
    assert registry.get_sample_value("costctx_limits_dropped_attributes_total", {"processor": "limits"}) in (None, 0)


def test_limits_is_in_the_default_pipeline_after_renaming():
    assert DEFAULT_TRACE_PROCESSORS.index("limits") == DEFAULT_TRACE_PROCESSORS.index("normalize") + 1


def test_limits_bound_every_long_value_in_a_span_and_its_resource(make_sidecar, sink):
    """Not only top-level attribute values: kvlists (nested), the span name, events and their
    attributes, links' attributes and the resource's attributes are bounded too (issue 16
    item 10: 10 MB in any of these was forwarded whole)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    runner = make_sidecar(processors=["limits"], processor_config={"limits": {"max_attribute_value_length": 100}})
    request = ExportTraceServiceRequest.FromString(trace_request(["n"]))
    resource_spans = request.resource_spans[0]
    resource_spans.resource.attributes.add(key="host.blob").value.string_value = "r" * 1000
    span = resource_spans.scope_spans[0].spans[0]
    span.name = "n" * 1000
    nested = span.attributes.add(key="doc").value
    inner = nested.kvlist_value.values.add(key="outer").value.kvlist_value.values.add(key="inner").value
    inner.bytes_value = b"k" * 1000
    event = span.events.add(name="e" * 1000)
    event.attributes.add(key="exception.stacktrace").value.string_value = "s" * 1000
    span.links.add(trace_id=span.trace_id, span_id=b"\1" * 8).attributes.add(key="l").value.string_value = "l" * 1000

    url = f"http://127.0.0.1:{runner.sidecar.http_port}/v1/traces"
    assert requests.post(url, data=request.SerializeToString(), headers=PROTOBUF, timeout=5).status_code == 200
    assert sink.wait_for_spans(1)
    (forwarded,) = sink.requests["traces"]
    out_resource = forwarded.resource_spans[0].resource
    out = forwarded.resource_spans[0].scope_spans[0].spans[0]
    assert [kv.value.string_value for kv in out_resource.attributes if kv.key == "host.blob"] == ["r" * 100]
    assert out.name == "n" * 100
    (doc,) = [kv.value for kv in out.attributes if kv.key == "doc"]
    assert doc.kvlist_value.values[0].value.kvlist_value.values[0].value.bytes_value == b"k" * 100
    assert out.events[0].name == "e" * 100
    assert out.events[0].attributes[0].value.string_value == "s" * 100
    assert out.links[0].attributes[0].value.string_value == "l" * 100
    registry = runner.sidecar.metrics.registry
    assert registry.get_sample_value("costctx_limits_truncated_values_total", {"processor": "limits"}) == 6
