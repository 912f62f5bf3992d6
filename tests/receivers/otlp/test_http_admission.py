"""OTLP/HTTP admission (memory limiter) sees the bytes a request body really takes, once:
its Content-Length, and the rest when the body is chunked (no length) or gzip, as it streams
in steps (so a refusal comes while the body grows, not once it is whole)."""

from __future__ import annotations

import gzip

import requests

from costctx.receivers.otlp.ingest import IngestError
from costctx.transport.http_body import STEP
from tests.support.otlp_client import trace_request


def test_admission_counts_chunked_and_gzip_bodies_in_full(make_sidecar, sink):
    runner = make_sidecar(processors=[])
    sidecar = runner.sidecar
    admitted: list[int] = []

    def record(signal, size_bytes: int) -> IngestError | None:
        admitted.append(size_bytes)
        return None

    runner.call(sidecar.ingest.admission_checks.append, record)
    url = f"http://127.0.0.1:{sidecar.http_port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    body = trace_request(["admitted"], pad=200_000)

    def admitted_for(**kwargs) -> int:
        admitted.clear()
        assert requests.post(url, headers={**headers, **kwargs.pop("extra", {})}, timeout=10, **kwargs).ok
        return sum(admitted)

    assert admitted_for(data=body) == len(body)  # Content-Length: counted once
    assert admitted_for(data=iter([body[:1000], body[1000:]])) == len(body)  # chunked: no length
    assert admitted_for(data=gzip.compress(body), extra={"Content-Encoding": "gzip"}) == len(body)
    assert max(admitted[1:]) <= STEP  # after the compressed length, inflated bytes in steps

    seen = [0]

    def refuse_big(signal, size_bytes: int) -> IngestError | None:
        seen[0] += size_bytes
        return IngestError("unavailable", "over", 1.0) if seen[0] > 100_000 else None

    runner.call(sidecar.ingest.admission_checks.append, refuse_big)
    refused = requests.post(url, data=iter([body]), headers=headers, timeout=10)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert sink.wait_for_spans(3)
    assert sink.span_count() == 3  # the refused one was not forwarded
