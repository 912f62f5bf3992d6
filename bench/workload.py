"""Pre-built OTLP trace requests that look like an agent workload.

One trace is one agent workflow in one service: an ingress span carrying the context
envelope, agent steps, model calls and tool calls under them. Spans are ordered as an
SDK's BatchSpanProcessor sends them (children end, and are exported, before parents),
and a batch is cut at a fixed span count, so a trace may straddle two batches.

The mix (deterministic, from a seed):
- model calls under current GenAI keys, old OpenTelemetry keys (`gen_ai.system`,
  `gen_ai.usage.prompt_tokens`), OpenInference keys (`llm.token_count.prompt`) and
  OpenLLMetry keys (`llm.usage.prompt_tokens`); some retries, some provider-reported costs;
- child spans missing part of the context (filled from the root by `inherit`), and some
  traces whose root lacks a required field (nothing to inherit: `costctx.missing`);
- `complete=True` instead gives every span its full context: spans that need no hold.

Ids embed a per-pool marker (`ID_MARKER`) in trace ids, workflow ids and request ids, so a
load generator can make each pass over the pool a fresh set of workflows with one
same-length `bytes.replace` per request instead of re-serializing it.
"""

from __future__ import annotations

import random
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

# 8 ASCII bytes: the first half of every trace id and a part of every workflow/request id.
ID_MARKER = b"Q7Z00000"
BASE_TIME_NS = 1_790_000_000_000_000_000

MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-3-5-sonnet", "claude-3-5-sonnet-20241022"),
]
TOOLS = ["web_search", "sql_query", "read_file", "send_email"]
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"]
FEATURES = ["support-bot", "report-writer", "code-review"]


@dataclass(frozen=True)
class WorkloadSpec:
    spans_per_batch: int = 100
    extra_attrs: int = 4  # filler attributes per span, beyond the ones the workload needs
    complete: bool = False  # True: every span carries its whole context (needs no hold)
    batches: int = 100
    seed: int = 7

    def label(self) -> str:
        kind = "complete" if self.complete else "mixed"
        return f"{kind} b{self.spans_per_batch} a+{self.extra_attrs}"


def marker_for(cycle: int) -> bytes:
    """The replacement for ID_MARKER on pass `cycle` over a pool (same length)."""
    return b"Q7Z%05d" % (cycle % 100_000)


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)
    return kv


class _TraceBuilder:
    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.trace_no = 0
        self.span_no = 0

    def _span_id(self) -> bytes:
        self.span_no += 1
        return struct.pack(">Q", self.span_no | (1 << 62))

    def _context(self, trace_tag: str, rng: random.Random) -> dict[str, object]:
        return {
            "workflow.id": f"wf-{ID_MARKER.decode()}-{trace_tag}",
            "workflow.name": rng.choice(["support.answer", "report.draft", "review.pr"]),
            "request.id": f"req-{ID_MARKER.decode()}-{trace_tag}",
            "owner.tenant": rng.choice(TENANTS),
            "owner.team": "platform",
            "owner.feature": rng.choice(FEATURES),
            "owner.user": f"user-{rng.randrange(1000)}",
            "policy.id": "default-budget",
        }

    def _filler(self, span: Span, kind: str) -> None:
        rng = self.rng
        for i in range(self.spec.extra_attrs):
            if i % 3 == 2:
                span.attributes.append(_kv(f"app.{kind}.metric_{i}", rng.randrange(10_000)))
            else:
                span.attributes.append(_kv(f"app.{kind}.tag_{i}", f"value-{rng.randrange(10**6):06d}-{kind}"))

    def trace(self) -> tuple[list[Span], list[Span]]:
        """One workflow: (framework spans, model-call spans), each in SDK end order."""
        rng = self.rng
        self.trace_no += 1
        tag = f"{self.trace_no:08d}"
        trace_id = ID_MARKER + struct.pack(">Q", self.trace_no)
        context = self._context(tag, rng)
        complete = self.spec.complete
        # 5% of roots lack a required field that nothing upstream can supply.
        root_context = dict(context)
        if not complete and rng.random() < 0.05:
            root_context.pop("owner.feature")

        t = BASE_TIME_NS + self.trace_no * 1_000_000_000
        root = Span(trace_id=trace_id, span_id=self._span_id(), name="POST /v1/agent", kind=Span.SPAN_KIND_SERVER)
        root.start_time_unix_nano = t
        for key, value in root_context.items():
            root.attributes.append(_kv(key, value))
        root.attributes.extend([_kv("http.request.method", "POST"), _kv("url.path", "/v1/agent"),
                                _kv("http.response.status_code", 200)])
        self._filler(root, "http")

        framework: list[Span] = []
        models: list[Span] = []
        clock = t + 1_000_000
        for step in range(rng.randint(1, 3)):
            agent = Span(trace_id=trace_id, span_id=self._span_id(), parent_span_id=root.span_id,
                         name=f"invoke_agent step{step}", kind=Span.SPAN_KIND_INTERNAL)
            agent.start_time_unix_nano = clock
            agent.attributes.extend([_kv("gen_ai.operation.name", "invoke_agent"),
                                     _kv("gen_ai.agent.name", "planner")])
            self._child_context(agent, context, keep=("workflow.id", "request.id"))
            self._filler(agent, "agent")
            for _ in range(rng.randint(1, 3)):
                models.extend(self._model_calls(trace_id, agent, context, clock))
                clock += 40_000_000
                if rng.random() < 0.6:
                    framework.append(self._tool_call(trace_id, agent, context, clock))
                    clock += 10_000_000
            agent.end_time_unix_nano = clock
            framework.append(agent)
        root.end_time_unix_nano = clock + 1_000_000
        framework.append(root)
        return framework, models

    def _child_context(self, span: Span, context: dict[str, object], keep: tuple[str, ...]) -> None:
        """Children carry the whole context when `complete`, else only `keep` (or less)."""
        keys = list(context) if self.spec.complete else [k for k in keep if self.rng.random() < 0.8]
        for key in keys:
            span.attributes.append(_kv(key, context[key]))

    def _tool_call(self, trace_id: bytes, parent: Span, context: dict[str, object], clock: int) -> Span:
        tool = self.rng.choice(TOOLS)
        span = Span(trace_id=trace_id, span_id=self._span_id(), parent_span_id=parent.span_id,
                    name=f"execute_tool {tool}", kind=Span.SPAN_KIND_INTERNAL)
        span.start_time_unix_nano = clock
        span.end_time_unix_nano = clock + 9_000_000
        span.attributes.extend([_kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", tool),
                                _kv("gen_ai.tool.call.id", f"call_{self.span_no:x}")])
        self._child_context(span, context, keep=("workflow.id",))
        self._filler(span, "tool")
        return span

    def _model_calls(self, trace_id: bytes, parent: Span, context: dict[str, object], clock: int) -> list[Span]:
        rng = self.rng
        provider, model, response_model = rng.choice(MODELS)
        attempts = 2 if rng.random() < 0.1 else 1
        spans = []
        for attempt in range(attempts):
            span = Span(trace_id=trace_id, span_id=self._span_id(), parent_span_id=parent.span_id,
                        name=f"chat {model}", kind=Span.SPAN_KIND_CLIENT)
            span.start_time_unix_nano = clock + attempt * 20_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 18_000_000
            tokens_in, tokens_out = rng.randrange(200, 8000), rng.randrange(20, 1200)
            style = rng.random()
            if style < 0.55:  # current GenAI keys
                attrs = [("gen_ai.provider.name", provider), ("gen_ai.operation.name", "chat"),
                         ("gen_ai.request.model", model), ("gen_ai.response.model", response_model),
                         ("gen_ai.usage.input_tokens", tokens_in), ("gen_ai.usage.output_tokens", tokens_out),
                         ("gen_ai.usage.cache_read.input_tokens", tokens_in // 4)]
            elif style < 0.80:  # OpenTelemetry GenAI keys before 1.27 / 1.37
                attrs = [("gen_ai.system", provider), ("gen_ai.operation.name", "chat"),
                         ("gen_ai.request.model", model), ("gen_ai.response.model", response_model),
                         ("gen_ai.usage.prompt_tokens", tokens_in), ("gen_ai.usage.completion_tokens", tokens_out)]
            elif style < 0.92:  # OpenInference
                attrs = [("llm.system", provider), ("llm.model_name", response_model),
                         ("llm.token_count.prompt", tokens_in), ("llm.token_count.completion", tokens_out),
                         ("openinference.span.kind", "LLM")]
            else:  # OpenLLMetry before 2024-04
                attrs = [("llm.vendor", provider), ("llm.request.model", model),
                         ("llm.response.model", response_model), ("llm.usage.prompt_tokens", tokens_in),
                         ("llm.usage.completion_tokens", tokens_out), ("llm.request.type", "chat")]
            if rng.random() < 0.1:
                attrs.append(("gen_ai.usage.cost", round(tokens_in * 2.5e-6 + tokens_out * 1e-5, 6)))
            attrs.append(("retry.attempt", attempt))
            for key, value in attrs:
                span.attributes.append(_kv(key, value))
            self._child_context(span, context, keep=("workflow.id", "request.id", "owner.tenant"))
            self._filler(span, "llm")
            if attempt == 0 and attempts > 1:
                span.status.code = 2  # STATUS_CODE_ERROR: the attempt that was retried
                span.status.message = "429 rate limited"
            spans.append(span)
        return spans


def build_requests(spec: WorkloadSpec) -> list[bytes]:
    """`spec.batches` serialized ExportTraceServiceRequests of `spec.spans_per_batch` spans each."""
    builder = _TraceBuilder(spec)
    pending: list[tuple[str, Span]] = []
    out: list[bytes] = []
    while len(out) < spec.batches:
        while len(pending) < spec.spans_per_batch:
            framework, models = builder.trace()
            # End order within the trace: model calls and tools before their agent, root last.
            merged = [("llm", s) for s in models] + [("app", s) for s in framework]
            merged.sort(key=lambda item: item[1].end_time_unix_nano)
            pending.extend(merged)
        chunk, pending = pending[: spec.spans_per_batch], pending[spec.spans_per_batch:]
        out.append(_request(chunk).SerializeToString())
    return out


def _request(chunk: list[tuple[str, Span]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    rs.resource.attributes.extend([_kv("service.name", "agent-api"), _kv("service.version", "1.4.2"),
                                   _kv("deployment.environment.name", "prod"),
                                   _kv("telemetry.sdk.language", "python"),
                                   _kv("telemetry.sdk.name", "opentelemetry"),
                                   _kv("telemetry.sdk.version", "1.27.0")])
    scopes: dict[str, ScopeSpans] = {}
    for scope_name, span in chunk:
        scope = scopes.get(scope_name)
        if scope is None:
            scope = scopes[scope_name] = rs.scope_spans.add()
            scope.scope.name = "openinference.instrumentation" if scope_name == "llm" else "agent.framework"
        scope.spans.append(span)
    return request


# -- pool files: length-prefixed requests, read by the load generator ----------------------
def write_pool(path: Path, requests: list[bytes], spans_per_batch: int, spec: WorkloadSpec | None = None) -> None:
    with path.open("wb") as f:
        f.write(struct.pack(">II", len(requests), spans_per_batch))
        for body in requests:
            f.write(struct.pack(">I", len(body)))
            f.write(body)
    if spec is not None:
        path.with_suffix(".json").write_text(repr(asdict(spec)))


def read_pool(path: Path) -> tuple[list[bytes], int]:
    data = path.read_bytes()
    count, spans_per_batch = struct.unpack_from(">II", data, 0)
    offset = 8
    out = []
    for _ in range(count):
        (size,) = struct.unpack_from(">I", data, offset)
        offset += 4
        out.append(data[offset:offset + size])
        offset += size
    return out, spans_per_batch
