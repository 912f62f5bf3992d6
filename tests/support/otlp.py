"""Build OTLP requests by hand and send them with raw gRPC / HTTP clients, for protocol tests."""

from __future__ import annotations

import os

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from costctx.pdata.attributes import set_any_value

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def kv(key: str, value) -> KeyValue:
    """One attribute, its value written as the pipeline writes values (str, bool, int, float, ...)."""
    item = KeyValue(key=key)
    set_any_value(item.value, value)
    return item


def traces_request(
    spans: int, service: str = "svc", attributes: dict | None = None, trace_id: bytes | None = None
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    tid = trace_id or os.urandom(16)
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id, span.span_id = tid, os.urandom(8)
        span.name = f"span-{i}"
        span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
        for key, value in (attributes or {}).items():
            attr = span.attributes.add()
            attr.key = key
            set_any_value(attr.value, value)
    return request


def metrics_request() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    metric = rm.scope_metrics.add().metrics.add()
    metric.name, metric.unit = "gen_ai.client.token.usage", "{token}"
    point = metric.sum.data_points.add()
    point.as_int, point.time_unix_nano = 1234, 1_700_000_000_000_000_000
    attr = point.attributes.add()
    attr.key, attr.value.string_value = "gen_ai.token.type", "input"
    metric.sum.aggregation_temporality = 2
    metric.sum.is_monotonic = True
    return request


def logs_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    record = rl.scope_logs.add().log_records.add()
    record.body.string_value = "model call finished"
    record.severity_number = 9
    record.trace_id, record.span_id = os.urandom(16), os.urandom(8)
    return request


def grpc_call(port: int, method: str, payload: bytes, timeout: float = 5.0, metadata=None):
    """Send raw bytes; returns (response bytes or None, grpc.RpcError or None)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return call(payload, timeout=timeout, metadata=metadata), None
        except grpc.RpcError as error:
            return None, error
