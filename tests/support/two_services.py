"""Two services, A (the ingress) and B (a sub-agent that calls a model), each with the real
OpenTelemetry SDK exporting to its own sidecar; A calls B over HTTP on loopback with the
SDK's propagators (traceparent, and baggage when asked)."""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from costctx.client import EnvelopeSpanProcessor, InternalBaggagePropagator, open_envelope
from costctx.client.budget import BudgetClient

MODEL_ATTRS = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
               "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}


def provider_for(service: str, grpc_target: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(EnvelopeSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=grpc_target, insecure=True),
                                                   schedule_delay_millis=20))
    return provider


def propagator(baggage: bool):
    parts = [TraceContextTextMapPropagator()] + ([InternalBaggagePropagator()] if baggage else [])
    return CompositePropagator(parts)


class ServiceB:
    """POST /work: `calls` model-call spans under a SERVER span, in the caller's context."""

    def __init__(self, grpc_target: str, baggage: bool, calls: int = 3, budget_target: str | None = None) -> None:
        self.provider = provider_for("svc-b", grpc_target)
        self.tracer = self.provider.get_tracer("svc-b")
        self.propagator = propagator(baggage)
        self.calls = calls
        self.budget = BudgetClient(budget_target) if budget_target else None
        self.decisions: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("content-length", 0)))
                token = context.attach(service.propagator.extract(self.headers))
                try:
                    service.work()
                finally:
                    context.detach(token)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/work"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def work(self) -> None:
        with self.tracer.start_as_current_span("b.handle", kind=SpanKind.SERVER):
            for _ in range(self.calls):
                if self.budget is not None:
                    decision = self.budget.check(model="gpt-4o", estimated_cost_usd=0.004)
                    self.decisions.append(decision.decision)
                    if decision.blocked:
                        continue
                    attrs = {**MODEL_ATTRS, **decision.span_attributes()}  # the reservation it replaces
                else:
                    attrs = MODEL_ATTRS
                with self.tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=attrs):
                    pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.provider.shutdown()
        if self.budget is not None:
            self.budget.close()


class ServiceA:
    """One workflow per `run`: the root opens the envelope (baggage) and calls B."""

    def __init__(self, grpc_target: str, baggage: bool, budget_target: str | None = None) -> None:
        self.provider = provider_for("svc-a", grpc_target)
        self.tracer = self.provider.get_tracer("svc-a")
        self.baggage = baggage
        self.propagator = propagator(baggage)
        self.budget = BudgetClient(budget_target) if budget_target else None
        self.traces: dict[str, dict[str, str]] = {}  # trace id hex -> the envelope it ran under

    def run(self, b_url: str, envelope: dict[str, str], model_calls: int = 0, root_only: bool = False,
            root_ends_after: float = 0.0) -> None:
        """`root_only`: the envelope is on the root span alone (no baggage, nothing stamped), as
        an application without the client package; `root_ends_after`: the root ends last."""
        opened = (self.tracer.start_as_current_span("a.root", attributes=envelope) if root_only
                  else open_envelope(self.tracer, "a.root", envelope))
        with opened as root:
            self.traces[format(root.get_span_context().trace_id, "032x")] = envelope
            if self.budget is not None:
                self.budget.check(model="gpt-4o", estimated_cost_usd=0.001, dry_run=True)
            for _ in range(model_calls):
                with self.tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=MODEL_ATTRS):
                    pass
            with self.tracer.start_as_current_span("POST /work", kind=SpanKind.CLIENT):
                headers: dict[str, str] = {}
                self.propagator.inject(headers)
                request = urllib.request.Request(b_url, data=b"{}", headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200
            if root_ends_after:
                time.sleep(root_ends_after)

    def close(self) -> None:
        self.provider.shutdown()
        if self.budget is not None:
            self.budget.close()


def current_trace_hex() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")
