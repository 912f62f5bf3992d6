"""Fuzz every endpoint the sidecar serves, gRPC and HTTP, with a fixed budget of cases.

Property-based (hypothesis, derandomized so CI runs the same cases): random bytes, mutations
of valid OTLP protobuf and JSON requests, OTLP-shaped random JSON, gzip of all of these and
gzip garbage, wrong and missing content types. Endpoints are discovered from the running
servers, so services other components register there (the budget check) are fuzzed too.

Properties: every answer is a protocol-correct refusal or success (never HTTP 500, never
gRPC UNKNOWN/INTERNAL/DEADLINE_EXCEEDED), the process does not crash, and afterwards the
sidecar still accepts a valid request and delivers it.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import grpc
import pytest
import requests
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.signals import SIGNALS
from tests.support.endpoints import grpc_methods, http_routes
from tests.support.otlp_client import trace_request

CASES_PER_ENDPOINT = 150
FUZZ = settings(
    max_examples=CASES_PER_ENDPOINT,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
GRPC_OK_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}
OTLP_JSON_KEYS = [
    "resourceSpans", "resourceMetrics", "resourceLogs", "resource", "attributes", "scopeSpans", "scopeMetrics",
    "scopeLogs", "scope", "spans", "metrics", "logRecords", "traceId", "spanId", "parentSpanId", "name", "kind",
    "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "key", "value", "stringValue", "intValue",
    "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue", "values", "events", "links", "status",
    "code", "gauge", "sum", "histogram", "dataPoints", "asInt", "asDouble", "body", "severityNumber",
    "schemaUrl", "droppedAttributesCount", "workflow_id", "tenant", "policy_id", "estimate_usd",
]


def seeds() -> dict[str, bytes]:
    """A valid, non-trivial request per signal (the starting point for mutations)."""
    metrics = ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    point = metric.gauge.data_points.add(as_double=1.5, time_unix_nano=1)
    point.attributes.add(key="k").value.string_value = "v"
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1, severity_number=9)
    record.body.string_value = "hello"
    record.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 3
    traces = ExportTraceServiceRequest.FromString(trace_request(["seed-a", "seed-b"]))
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="owner.tenant").value.string_value = "acme"
    span.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 10
    span.events.add(name="e", time_unix_nano=2)
    return {"traces": traces.SerializeToString(), "metrics": metrics.SerializeToString(),
            "logs": logs.SerializeToString()}


SEEDS = seeds()


def json_seed(signal: str) -> bytes:
    message = SIGNALS[signal].request_type.FromString(SEEDS[signal])
    data = json_format.MessageToDict(message)
    for rs in data.get("resourceSpans", []):  # OTLP/JSON ids are hex
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId"):
                    import base64

                    s[key] = base64.b64decode(s[key]).hex()
    return json.dumps(data).encode()


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=16)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at: at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at: at + draw(st.integers(1, 64))]
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(OTLP_JSON_KEYS) | st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


def bodies(seed: bytes, json_text: bytes | None):
    plain = [st.binary(max_size=2048), mutated(seed), st.just(b""), st.just(seed)]
    if json_text is not None:
        plain += [mutated(json_text), json_values.map(lambda v: json.dumps(v).encode())]
    return st.one_of(plain)


# -- the sidecar under test ----------------------------------------------------------------
@pytest.fixture
def sidecar(make_sidecar):
    # The default pipeline: every processor and every service it registers on the servers.
    return make_sidecar().sidecar


def seed_for(path: str) -> tuple[bytes, bytes | None]:
    for name, signal in SIGNALS.items():
        if path.endswith(signal.http_path) or signal.service in path:
            return SEEDS[name], json_seed(name)
    return b"", b"{}"  # other services: fuzzed from scratch


def still_serving(sidecar, sink) -> None:
    before = sink.span_count()
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    channel.unary_unary(SIGNALS["traces"].grpc_method)(trace_request(["after-fuzz-grpc"]), timeout=5)
    channel.close()
    response = requests.post(
        f"http://127.0.0.1:{sidecar.http_port}/v1/traces",
        data=trace_request(["after-fuzz-http"]),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert response.status_code == 200
    assert sink.wait_for_spans(before + 2)
    names = {s.name for s in sink.spans()}
    assert {"after-fuzz-grpc", "after-fuzz-http"} <= names
    assert requests.get(f"http://127.0.0.1:{sidecar.admin_port}/healthz", timeout=5).status_code == 200


def test_fuzz_grpc_endpoints(sidecar, sink):
    methods = grpc_methods(sidecar)
    assert {s.grpc_method for s in SIGNALS.values()} <= set(methods)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{sidecar.grpc_port}", options=[("grpc.max_send_message_length", 128 * 1024 * 1024)]
    )
    outcomes: Counter = Counter()

    def fuzzer(method: str):
        call = channel.unary_unary(method)

        @FUZZ
        @given(body=bodies(seed_for(method)[0], None))
        def fuzz(body: bytes) -> None:
            try:
                call(body, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            outcomes[(method, code.name)] += 1
            assert code in GRPC_OK_CODES, f"{method}: {code.name} for {body[:80]!r}"

        return fuzz

    for method in methods:
        fuzzer(method)()
    channel.close()
    cases = sum(outcomes.values())
    print(f"gRPC fuzz: {cases} cases over {len(methods)} methods: {dict(outcomes)}")
    assert cases == CASES_PER_ENDPOINT * len(methods)
    still_serving(sidecar, sink)


CONTENT_TYPES = ["application/x-protobuf", "application/json", "text/plain", "", "application/x-protobuf; x=1"]


def test_fuzz_http_endpoints(sidecar, sink):
    targets = [(f"http://127.0.0.1:{sidecar.http_port}", r) for r in http_routes(sidecar.http.app)]
    targets += [(f"http://127.0.0.1:{sidecar.admin_port}", r) for r in http_routes(sidecar.admin_app)]
    assert ("POST", "/v1/traces") in [r for _, r in targets]
    outcomes: Counter = Counter()

    def fuzzer(base: str, method: str, path: str):
        seed, json_text = seed_for(path)

        @FUZZ
        @given(
            body=bodies(seed, json_text),
            content_type=st.sampled_from(CONTENT_TYPES),
            encoding=st.sampled_from(["none", "gzip", "gzip-header-only", "gzip-garbage"]),
            query=st.sampled_from(["", "?x=1", "?format=json&x=%ff"]),
        )
        def fuzz(body: bytes, content_type: str, encoding: str, query: str) -> None:
            headers = {"Content-Type": content_type}
            if encoding == "gzip":
                body = gzip.compress(body)
            if encoding != "none":
                headers["Content-Encoding"] = "gzip"
            if encoding == "gzip-garbage":
                body = b"\x1f\x8b" + body
            # A fresh connection per case: after a body it cannot read, a server may close the
            # connection, and a pooled one would then fail on the client side.
            headers["Connection"] = "close"
            response = requests.request(method, base + path + query, data=body, headers=headers, timeout=10)
            outcomes[(path, response.status_code)] += 1
            assert response.status_code < 500 or response.status_code == 503, (
                f"{method} {path}: {response.status_code} {response.text[:200]} for {body[:80]!r}"
            )
            if response.status_code == 503:
                assert "Retry-After" in response.headers or path.endswith("readyz")

        return fuzz

    for base, (method, path) in targets:
        fuzzer(base, method, path)()
    cases = sum(outcomes.values())
    print(f"HTTP fuzz: {cases} cases over {len(targets)} routes: {dict(outcomes)}")
    assert cases == CASES_PER_ENDPOINT * len(targets)
    still_serving(sidecar, sink)
