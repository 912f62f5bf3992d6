"""The demo's two-sidecar part: service A and service B, each with its own sidecar, sharing
one store: a redis-server the demo starts when one is on PATH; without it, one in-process
budget store and registry store that both sidecars (running in the demo's process, on one
event loop) use, and the demo says which.

Two workflows: one carrying the envelope in W3C Baggage (costctx.client), so B's model calls
leave B's sidecar attributed at once; one with `traceparent` only and a root that ends last,
so B's spend leaves unattributed and is settled once A's root arrives (attribution records).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from costctx.attribution.inprocess import InProcessShare
from costctx.cli.demo import demo_config
from costctx.cli.sink import OtlpSink
from costctx.client import EnvelopeSpanProcessor, InternalBaggagePropagator, open_envelope
from costctx.pdata.attributes import any_value_to_python
from costctx.service.config.loader import build_config
from costctx.service.runner import SidecarThread
from costctx.survival.report import survival_report

MODEL = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
         "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 300}


@dataclass
class SharedStore:
    """What the demo's two sidecars share: a Redis URL, or the in-process stores."""

    redis_url: str | None = None
    in_process: InProcessShare | None = None


@contextmanager
def shared_store(out: TextIO):
    """A redis-server on a free loopback port when one is on PATH, else one in-process store."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("shared store: sharing an in-process store (no redis-server on PATH)", file=out)
        yield SharedStore(in_process=InProcessShare())
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(url, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                time.sleep(0.05)
        print(f"shared store: sharing redis-server on 127.0.0.1:{port} (started by the demo)", file=out)
        yield SharedStore(redis_url=url)
    finally:
        proc.terminate()
        proc.wait(10)


def _sidecar(sink_port: int, store: SharedStore, beside: SidecarThread | None = None) -> SidecarThread:
    config = demo_config(sink_port)
    processors = config["processors"]
    processors["inherit"] = {**(processors.get("inherit") or {}), "wait_duration": "500ms"}
    processors["settle"] = {"poll_interval": "200ms"}
    if store.redis_url is not None:
        processors["inherit"]["registry"] = {"backend": "redis", "redis": {"url": store.redis_url}}
        processors["budget"] = {**(processors.get("budget") or {}), "backend": "redis",
                                "redis": {"url": store.redis_url}}
    # In process: both on one loop (the shared memory stores are not locked); with Redis, each on its own.
    runner = SidecarThread(build_config(config, environ={}), store.in_process,
                           beside if store.in_process is not None else None)
    runner.start()
    return runner


def _provider(service: str, port: int) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(EnvelopeSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                                   schedule_delay_millis=50))
    return provider


def _workflow(a: trace.Tracer, b: trace.Tracer, baggage: bool, root_ends_after: float) -> str:
    propagator = CompositePropagator([TraceContextTextMapPropagator()] + ([InternalBaggagePropagator()]
                                                                          if baggage else []))
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    envelope = {"workflow.id": workflow_id, "workflow.name": "research", "request.id": f"req-{workflow_id[3:]}",
                "owner.tenant": "acme", "owner.feature": "research"}
    root = (open_envelope(a, "POST /v1/research", envelope) if baggage
            else a.start_as_current_span("POST /v1/research", attributes=envelope))
    with root:
        with a.start_as_current_span("POST /b/plan", kind=trace.SpanKind.CLIENT):
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
        token = otel_context.attach(propagator.extract(carrier))  # service B receives the call
        try:
            with b.start_as_current_span("plan", kind=trace.SpanKind.SERVER):
                for _ in range(2):
                    with b.start_as_current_span("chat gpt-4o", kind=trace.SpanKind.CLIENT, attributes=MODEL):
                        pass
        finally:
            otel_context.detach(token)
        time.sleep(root_ends_after)
    return workflow_id


def _records(sink: OtlpSink) -> list:
    with sink._lock:
        requests = list(sink.requests["logs"])
    return [r for q in requests for rl in q.resource_logs for sl in rl.scope_logs for r in sl.log_records
            if r.event_name == "costctx.attribution"]


def two_sidecars_section(out: TextIO) -> int:
    print("\n--- two services, two sidecars ---", file=out)
    with shared_store(out) as store, OtlpSink() as sink:
        side_a = _sidecar(sink.grpc_port, store)
        side_b = _sidecar(sink.grpc_port, store, beside=side_a)
        a_provider = _provider("service-a", side_a.sidecar.grpc_port)
        b_provider = _provider("service-b", side_b.sidecar.grpc_port)
        try:
            a, b = a_provider.get_tracer("demo"), b_provider.get_tracer("demo")
            in_band = _workflow(a, b, baggage=True, root_ends_after=0.0)
            late = _workflow(a, b, baggage=False, root_ends_after=1.0)
            for provider in (b_provider, a_provider):
                provider.force_flush()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(_records(sink)) < 2:
                time.sleep(0.1)
            b_calls = [s for s in sink.spans() if s.service == "service-b" and s.name == "chat gpt-4o"]
            for label, workflow in (("envelope in baggage", in_band), ("traceparent only, root ends last", late)):
                print(f"workflow {workflow} ({label}):", file=out)
                root_trace = next(s.trace_id for s in sink.spans() if s.attributes.get("workflow.id") == workflow)
                for span in (s for s in b_calls if s.trace_id == root_trace):
                    print(f"  service-b chat gpt-4o left B's sidecar with workflow.id="
                          f"{span.attributes.get('workflow.id', '-')} owner.tenant="
                          f"{span.attributes.get('owner.tenant', '-')} cost.usd={span.attributes['cost.usd']}",
                          file=out)
            for record in _records(sink):
                attrs = {kv.key: any_value_to_python(kv.value) for kv in record.attributes}
                print(f"  attribution record: span {record.span_id.hex()} -> workflow.id={attrs.get('workflow.id')} "
                      f"owner.tenant={attrs.get('owner.tenant')} settled_by={attrs.get('costctx.settled_by')} "
                      f"after {attrs.get('costctx.settle_delay_ms')} ms", file=out)
            totals = []
            for name, side in (("A", side_a), ("B", side_b)):
                spend = side.call(lambda s=side: survival_report(s.sidecar.survival.snapshot_all())["spend"])
                totals.append(spend["total_usd"])
                print(f"  sidecar {name}: spend ${spend['total_usd']:.6f}, unknown tenant "
                      f"${spend['unknown_tenant_usd']:.6f}, settled ${spend['settled_usd']:.6f}, "
                      f"pending ${spend['pending_usd']:.6f}", file=out)
            at_sink = sum(s.attributes.get("cost.usd", 0.0) for s in sink.spans())
            print(f"  both sidecars ${sum(totals):.6f}; cost.usd at the sink ${at_sink:.6f}", file=out)
        finally:
            for provider in (a_provider, b_provider):
                provider.shutdown()
            side_b.stop()  # first: in process it runs on A's loop
            side_a.stop()
    return 0
