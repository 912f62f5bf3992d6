"""Real OpenTelemetry SDK clients pointed at a sidecar, for tests."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor


def tracer_provider(
    *,
    grpc_port: int | None = None,
    http_port: int | None = None,
    service: str = "test-service",
    batch: bool = True,
    resource_attributes: dict | None = None,
    max_export_batch_size: int = 512,
    schedule_delay_millis: int = 100,
) -> TracerProvider:
    """A TracerProvider whose OTLP exporter (gRPC or HTTP) sends to the sidecar."""
    attrs = {"service.name": service, **(resource_attributes or {})}
    provider = TracerProvider(resource=Resource.create(attrs))
    if grpc_port is not None:
        exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
    elif http_port is not None:
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
    else:
        raise ValueError("give grpc_port or http_port")
    if batch:
        processor = BatchSpanProcessor(
            exporter, max_export_batch_size=max_export_batch_size, schedule_delay_millis=schedule_delay_millis
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider
