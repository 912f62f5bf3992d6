"""The golden inputs: the bench workload (regenerated from its seed) and generated requests.

The generated requests are drawn once with hypothesis and stored (`data/generated.bin.gz`),
so a hypothesis upgrade cannot change them; `python -m tests.golden.record` redraws them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.workload import WorkloadSpec, build_requests
from costctx.envelope import ENVELOPE
from costctx.pdata.attributes import set_any_value
from costctx.processors.normalize.processor import NormalizeConfig

GENERATED = Path(__file__).parent / "data" / "generated.bin.gz"
GENERATED_COUNT = 2_400


def workload_requests() -> list[bytes]:
    """All four instrumentation shapes, held spans (mixed), retries, and resends: every 7th
    request is sent again two requests later, as a client retrying after a lost answer."""
    mixed = build_requests(WorkloadSpec(spans_per_batch=100, batches=24, seed=7))
    small = build_requests(WorkloadSpec(spans_per_batch=10, batches=30, seed=11))
    complete = build_requests(WorkloadSpec(spans_per_batch=100, batches=6, complete=True, seed=13))
    out: list[bytes] = []
    for part in (mixed, small, complete):
        for i, body in enumerate(part):
            out.append(body)
            if i % 7 == 2 and i + 2 < len(part):
                out.append(part[i])  # sent again (after the next request below)
    return out


# -- generated requests ---------------------------------------------------------------------
def _keys() -> list[str]:
    table = NormalizeConfig().builder.base()
    rules = table.spans.rules
    aliases = sorted(rules)
    canonical = sorted({r.canonical for r in rules.values()} | {r.otherwise for r in rules.values() if r.otherwise})
    return sorted(set(aliases + canonical + list(ENVELOPE.context_keys) + list(ENVELOPE.usage_fields) + [
        "retry.attempt", "gen_ai.usage.cost", "cost.usd", "http.route", "service.name", "x",
        "gen_ai.usage.text.input_tokens", "gen_ai.usage.image.input_tokens", "gen_ai.usage.audio.input_tokens",
        "gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.cost.amount", "gen_ai.usage.cost.currency",
        "cost.origin", "cost.price_source", "workflow.spend_total_usd", "budget.reservation_id",
        "costctx.renamed", "costctx.inherited", "costctx.missing", "costctx.budget.state",
    ]))


KEYS = _keys()
SCALARS = st.one_of(
    st.sampled_from(["", "wf-1", "wf-2", "acme", "globex", "support.answer", "default-budget", "USD", "eur",
                     "openai", "anthropic", "gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-20241022",
                     "120", "1e3", "12.5", "nan", "chat", "Vertex_AI"]),
    st.text(max_size=4),
    st.integers(min_value=-5, max_value=20_000), st.sampled_from([0, 0.0, 1.5, 2_000, 0.002]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(st.text(max_size=3), max_size=2),
                   st.lists(st.tuples(st.sampled_from(["a", "b", "input_tokens"]), SCALARS), max_size=2)
                   .map(lambda pairs: {"__kvlist__": pairs}))
ATTRS = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=10)
IDS = st.sampled_from([b"", b"\x01" * 8, b"\x02" * 8, b"\x03" * 8, b"\x04" * 8, b"\x05" * 8, b"\x06" * 8, b"\x07" * 3])
TRACES = st.sampled_from([b"\x0a" * 16, b"\x0b" * 16, b"\x0c" * 16, b"", b"\x0d" * 5])
SPAN = st.fixed_dictionaries({
    "trace": TRACES, "id": IDS, "parent": IDS, "attrs": ATTRS,
    "start": st.sampled_from([0, 1_790_000_000_000_000_000, 1_790_000_001_000_000_000]),
    "end": st.sampled_from([0, 1_790_000_000_500_000_000, 1_790_000_002_000_000_000]),
    "events": st.lists(ATTRS, max_size=1), "links": st.lists(st.tuples(TRACES, IDS), max_size=1),
})
SCOPE = st.fixed_dictionaries({"name": st.sampled_from(["", "openinference", "lib"]),
                               "spans": st.lists(SPAN, max_size=4)})
RESOURCE = st.fixed_dictionaries({
    "service": st.sampled_from([None, "", "agent-api", "tools", "gateway"]),
    "attrs": st.lists(st.tuples(st.sampled_from(KEYS), SCALARS), max_size=3),
    "scopes": st.lists(SCOPE, min_size=0, max_size=2),
})
REQUEST = st.lists(RESOURCE, min_size=1, max_size=2)


def _set(kv, key: str, value: object) -> None:
    kv.key = key
    if isinstance(value, dict):
        kvlist = kv.value.kvlist_value
        for k, v in value["__kvlist__"]:
            item = kvlist.values.add()
            item.key = k
            set_any_value(item.value, v)
    else:
        set_any_value(kv.value, value)


def build(resources: list[dict]) -> bytes:
    request = ExportTraceServiceRequest()
    for resource in resources:
        rs = request.resource_spans.add()
        if resource["service"] is not None:
            _set(rs.resource.attributes.add(), "service.name", resource["service"])
        for key, value in resource["attrs"]:
            _set(rs.resource.attributes.add(), key, value)
        for scope in resource["scopes"]:
            ss = rs.scope_spans.add()
            ss.scope.name = scope["name"]
            for s in scope["spans"]:
                span = ss.spans.add(trace_id=s["trace"], span_id=s["id"], parent_span_id=s["parent"],
                                    name="op", start_time_unix_nano=s["start"], end_time_unix_nano=s["end"])
                for key, value in s["attrs"]:
                    _set(span.attributes.add(), key, value)
                for attrs in s["events"]:
                    event = span.events.add(name="event")
                    for key, value in attrs:
                        _set(event.attributes.add(), key, value)
                for trace, span_id in s["links"]:
                    span.links.add(trace_id=trace, span_id=span_id)
    return request.SerializeToString()


def draw_generated(count: int = GENERATED_COUNT) -> list[bytes]:
    drawn: list[bytes] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(REQUEST)
    def collect(resources):
        drawn.append(build(resources))

    collect()
    return drawn


def write_generated(requests: list[bytes]) -> None:
    body = b"".join(struct.pack(">I", len(r)) + r for r in requests)
    GENERATED.write_bytes(gzip.compress(body, mtime=0))


def generated_requests() -> list[bytes]:
    data = gzip.decompress(GENERATED.read_bytes())
    out, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        out.append(data[offset + 4:offset + 4 + size])
        offset += 4 + size
    return out
