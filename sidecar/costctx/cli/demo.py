"""`costctx demo`: a sidecar, an in-process sink and a small agent workflow, on embedded defaults.

The workflow is sent with the real OpenTelemetry SDK and its OTLP gRPC exporter: a root
span carrying the envelope, model-call children without it, a retry, and a sub-agent in
another service whose spans arrive through a remote parent.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TextIO

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from costctx.cli.sink import OtlpSink, SinkSpan
from costctx.service.config.loader import build_config, default_config_dict
from costctx.service.runner import SidecarThread

SHOWN_FIELDS = (
    "workflow.id",
    "request.id",
    "owner.tenant",
    "owner.feature",
    "retry.attempt",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "cost.usd",
    "workflow.spend_total_usd",
)


def demo_config(sink_port: int) -> dict:
    config = default_config_dict({"OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{sink_port}"})  # exporter `otlp`
    config["receivers"]["otlp"]["protocols"] = {
        "grpc": {"endpoint": "127.0.0.1:0"},
        "http": {"endpoint": "127.0.0.1:0"},
    }
    config["exporters"] = {
        "otlp": {
            "endpoint": f"127.0.0.1:{sink_port}",
            "insecure": True,
            "retry_on_failure": {"initial_interval": "100ms"},
        }
    }
    config["service"]["telemetry"] = {"metrics": {"address": "127.0.0.1:0"}}
    if "budget" in config["processors"]:
        from costctx.cli.budget_demo import POLICY

        config["processors"]["budget"] = {"policies": [
            {"id": "support-default", "workflow": {"cost_usd": 1.0}}, POLICY]}
    return config


class _EndedSpans(SpanProcessor):
    """Counts ended spans, so the demo knows how many the sink must receive."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.count += 1


def _provider(service: str, endpoint: str, ended: _EndedSpans) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.4.2"}))
    provider.add_span_processor(ended)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=200)
    )
    return provider


def _model_call(tracer: trace.Tracer, model: str, prompt: int, completion: int, attempt: int = 0) -> None:
    with tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", "openai")  # an old key: renamed by `normalize`
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.response.model", model)
        span.set_attribute("gen_ai.usage.input_tokens", prompt)
        span.set_attribute("gen_ai.usage.output_tokens", completion)
        if attempt:
            span.set_attribute("retry.attempt", attempt)


def send_workflow(endpoint: str) -> tuple[str, int]:
    """Send one agent workflow; returns its workflow id and the number of spans sent."""
    ended = _EndedSpans()
    gateway = _provider("agent-gateway", endpoint, ended)
    research = _provider("research-agent", endpoint, ended)
    tracer = gateway.get_tracer("costctx.demo")
    sub_tracer = research.get_tracer("costctx.demo")
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    carrier: dict[str, str] = {}

    with tracer.start_as_current_span("POST /v1/answer", kind=trace.SpanKind.SERVER) as root:
        for key, value in {
            "workflow.id": workflow_id,
            "workflow.name": "support-answer",
            "request.id": f"req-{uuid.uuid4().hex[:8]}",
            "owner.tenant": "acme",
            "owner.feature": "support-chat",
            "owner.user": "u-829",
            "owner.team": "support-platform",
            "policy.id": "support-default",
        }.items():
            root.set_attribute(key, value)
        with tracer.start_as_current_span("agent.plan"):
            _model_call(tracer, "gpt-4o", 1200, 180)
        with tracer.start_as_current_span("tool.search"):
            _model_call(tracer, "gpt-4o-mini", 800, 60)
            # The provider timed out: the same logical call, retried.
            _model_call(tracer, "gpt-4o-mini", 800, 75, attempt=1)
        with tracer.start_as_current_span("agent.delegate"):
            propagate.inject(carrier)

        def sub_agent() -> None:
            # Another service on another thread: only the traceparent crosses over.
            token = otel_context.attach(propagate.extract(carrier))
            try:
                with sub_tracer.start_as_current_span("research.run", kind=trace.SpanKind.SERVER):
                    _model_call(sub_tracer, "claude-sonnet-4-5", 4000, 900)
            finally:
                otel_context.detach(token)

        worker = threading.Thread(target=sub_agent)
        worker.start()
        worker.join()
    for provider in (research, gateway):
        provider.force_flush()
        provider.shutdown()
    return workflow_id, ended.count


def format_span(span: SinkSpan) -> str:
    fields = " ".join(f"{k}={span.attributes[k]}" for k in SHOWN_FIELDS if k in span.attributes)
    extra = []
    for key in ("costctx.renamed", "costctx.repaired", "costctx.missing"):
        if span.attributes.get(key):
            extra.append(f"{key.split('.')[1]}=[{', '.join(span.attributes[key])}]")
    return f"  {span.service:15} {span.name:22} {fields} {' '.join(extra)}".rstrip()


def run_demo(out: TextIO, extra_sections: list[Callable[[SidecarThread, OtlpSink, TextIO], None]] | None = None) -> int:
    with OtlpSink() as sink:
        config = build_config(demo_config(sink.grpc_port), environ={})
        runner = SidecarThread(config)
        sidecar = runner.start()
        try:
            endpoint = f"127.0.0.1:{sidecar.grpc_port}"
            print(f"costctx demo: sidecar on {endpoint}, sink on 127.0.0.1:{sink.grpc_port}", file=out)
            processors = ", ".join(p.name for p in sidecar.traces.processors) if sidecar.traces else "none"
            print(f"traces pipeline: {processors}", file=out)
            workflow_id, sent = send_workflow(endpoint)
            if not sink.wait_for_spans(sent, timeout=20):
                print(f"error: the sink got {sink.span_count()} of {sent} spans", file=out)
                return 1
            print(f"\nworkflow {workflow_id}: {sent} spans sent, {sink.span_count()} reached the sink\n", file=out)
            for span in sorted(sink.spans(), key=lambda s: s.start_time_unix_nano):
                print(format_span(span), file=out)
            for section in extra_sections or ():
                section(runner, sink, out)
        finally:
            runner.stop()
    return 0
