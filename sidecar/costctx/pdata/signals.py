"""The three OTLP signals and their protobuf messages and endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


@dataclass(frozen=True)
class Signal:
    name: str  # traces | metrics | logs
    service: str  # the fully qualified gRPC service
    request_type: type[Message]
    response_type: type[Message]
    http_path: str
    rejected_field: str  # field of partial_success that counts rejected items

    @property
    def grpc_method(self) -> str:
        return f"/{self.service}/Export"


TRACES = Signal(
    "traces",
    "opentelemetry.proto.collector.trace.v1.TraceService",
    trace_service_pb2.ExportTraceServiceRequest,
    trace_service_pb2.ExportTraceServiceResponse,
    "/v1/traces",
    "rejected_spans",
)
METRICS = Signal(
    "metrics",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    metrics_service_pb2.ExportMetricsServiceRequest,
    metrics_service_pb2.ExportMetricsServiceResponse,
    "/v1/metrics",
    "rejected_data_points",
)
LOGS = Signal(
    "logs",
    "opentelemetry.proto.collector.logs.v1.LogsService",
    logs_service_pb2.ExportLogsServiceRequest,
    logs_service_pb2.ExportLogsServiceResponse,
    "/v1/logs",
    "rejected_log_records",
)
SIGNALS: dict[str, Signal] = {s.name: s for s in (TRACES, METRICS, LOGS)}


def count_items(signal: Signal, request: Message) -> int:
    """Spans, data points or log records in a request: what partial success counts."""
    if signal is TRACES:
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal is LOGS:
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total
