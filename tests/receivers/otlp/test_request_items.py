"""A request may hold at most `receivers.otlp.max_items_per_request` items, counted on the
wire before a protobuf request is parsed (tiny items cost far more parsed than sent)."""

from __future__ import annotations

import grpc
import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from costctx.pdata.wire_count import over_limit
from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request


def _logs(records: int, resources: int = 1) -> bytes:
    request = ExportLogsServiceRequest()
    for _ in range(resources):
        scope = request.resource_logs.add().scope_logs.add()
        for _ in range(records):
            scope.log_records.add().body.string_value = "x"
    return request.SerializeToString()


def _metrics(metrics: int) -> bytes:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for i in range(metrics):
        scope.metrics.add(name=f"m{i}").gauge.data_points.add().as_int = 1
    return request.SerializeToString()


def test_over_limit_counts_items_and_blocks_on_the_wire():
    spans = traces_request(10, attributes={"a": "x" * 300, "n": 5}).SerializeToString()
    assert not over_limit(spans, 10) and over_limit(spans, 9)
    assert not over_limit(_logs(4, resources=3), 12) and over_limit(_logs(4, resources=3), 11)
    assert over_limit(_logs(0, resources=6), 11)  # 12 resource and scope blocks, no items
    assert not over_limit(_metrics(7), 7) and over_limit(_metrics(7), 6)
    # Not protobuf: left to the parser, which answers INVALID_ARGUMENT.
    assert not over_limit(b"\x0a\x05abc", 1) and not over_limit(b"\xff\xff", 1)


@pytest.fixture
def side(make_sidecar):
    return make_sidecar(processors=["envelope"], receivers={"otlp": {"max_items_per_request": 20}}).sidecar


def test_a_request_over_the_item_limit_is_refused_and_counted(side, sink):
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, traces_request(21).SerializeToString())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "over 20 items" in error.details()
    url = f"http://127.0.0.1:{side.http_port}"
    headers = {"Content-Type": "application/x-protobuf"}
    assert requests.post(url + "/v1/logs", data=_logs(21), headers=headers, timeout=5).status_code == 413
    # JSON is decoded first, then counted.
    spans = [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{i + 1:016x}", "name": "s"} for i in range(21)]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    assert requests.post(url + "/v1/traces", json=body, timeout=5).status_code == 413
    # At the limit: accepted.
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, traces_request(20).SerializeToString())
    assert error is None
    assert sink.wait_for_spans(20)
    registry = side.metrics.registry
    for signal, transport in (("traces", "grpc"), ("logs", "http"), ("traces", "http")):
        assert registry.get_sample_value("costctx_receiver_requests_total",
                                         {"signal": signal, "transport": transport, "result": "too_large"}) == 1


def test_over_limit_agrees_with_protobuf_counts_on_the_bench_workload():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.pdata.codec.test_codec_native import bench_requests

    for raw in bench_requests():
        request = ExportTraceServiceRequest.FromString(raw)
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        blocks = sum(1 + len(rs.scope_spans) for rs in request.resource_spans)
        threshold = max(spans, blocks)
        assert not over_limit(raw, threshold) and over_limit(raw, threshold - 1)
