"""The three OTLP signals and their protobuf messages and endpoints."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.message import Message


@dataclass(frozen=True)
class Signal:
    name: str  # traces | metrics | logs
    service: str  # the fully qualified gRPC service
    # The OTLP *_service_pb2 module holding Export<Kind>ServiceRequest/Response, imported when
    # first asked for: a sidecar on the native codec never parses a request, so it never loads
    # protobuf unless a request needs it (JSON, the Python codec, an error detail).
    pb2_module: str
    message_prefix: str  # "ExportTraceService": the module's ...Request and ...Response
    http_path: str
    rejected_field: str  # field of partial_success that counts rejected items

    @property
    def request_type(self) -> type[Message]:
        return getattr(importlib.import_module(self.pb2_module), self.message_prefix + "Request")

    @property
    def response_type(self) -> type[Message]:
        return getattr(importlib.import_module(self.pb2_module), self.message_prefix + "Response")

    @property
    def grpc_method(self) -> str:
        return f"/{self.service}/Export"

    def parse_response(self, data: bytes) -> Message | EmptyResponse:
        """An Export*ServiceResponse from its bytes; none (what nearly every answer is) needs no parse."""
        return self.response_type.FromString(data) if data else EmptyResponse(self)


class EmptyResponse:
    """An Export*ServiceResponse with no field set: the answer to a request accepted whole.

    Serialized it is no bytes at all (proto3), so standing in for the message spares a sidecar on
    the native codec importing protobuf (~2.6 MB of RSS) to build, parse or serialize an empty one.
    Anything else asked of it (a field, the JSON mapping) is asked of a real empty message.
    """

    __slots__ = ("signal",)

    def __init__(self, signal: Signal) -> None:
        self.signal = signal

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return b""

    def HasField(self, name: str) -> bool:  # noqa: N802 (protobuf's name)
        return False

    def as_message(self) -> Message:
        return self.signal.response_type()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.as_message(), name)


TRACES = Signal(
    "traces",
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    "ExportTraceService",
    "/v1/traces",
    "rejected_spans",
)
METRICS = Signal(
    "metrics",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
    "ExportMetricsService",
    "/v1/metrics",
    "rejected_data_points",
)
LOGS = Signal(
    "logs",
    "opentelemetry.proto.collector.logs.v1.LogsService",
    "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
    "ExportLogsService",
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
