"""Request bodies on the OTLP HTTP server: inflated in bounded steps, with the size limit on
the inflated size; a corrupt or truncated body is a counted 400 without a logged traceback;
an unknown encoding is 415; the budget routes are bounded and admitted too."""

from __future__ import annotations

import gzip
import json
import logging
import zlib

import pytest
import requests
from google.rpc import code_pb2, status_pb2

from costctx.receivers.otlp.ingest import IngestError
from tests.support.otlp import traces_request

PROTOBUF = "application/x-protobuf"
LIMIT = 200_000


@pytest.fixture
def side(make_sidecar):
    return make_sidecar(
        processors=["budget", "envelope"],
        receivers={"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"},
                                          "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": LIMIT}}}},
    )


def _post(side, path: str, body, encoding: str | None = None, content_type: str = PROTOBUF) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
    return requests.post(f"http://127.0.0.1:{side.sidecar.http_port}{path}", data=body, headers=headers, timeout=10)


def _errors_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(traces_request(3).SerializeToString())[:-12]],
                         ids=["not_gzip", "truncated_gzip"])
def test_a_corrupt_gzip_body_is_a_counted_400_without_a_traceback(side, sink, caplog, body):
    for _ in range(3):
        response = _post(side, "/v1/traces", body, "gzip")
        assert response.status_code == 400
        assert status_pb2.Status.FromString(response.content).code == code_pb2.INVALID_ARGUMENT
    assert not _errors_logged(caplog), caplog.text
    registry = side.sidecar.metrics.registry
    counted = registry.get_sample_value("costctx_receiver_requests_total",
                                        {"signal": "traces", "transport": "http", "result": "invalid"})
    assert counted == 3


def test_deflate_and_concatenated_gzip_members_are_read(side, sink):
    first, second = traces_request(2).SerializeToString(), traces_request(3).SerializeToString()
    assert _post(side, "/v1/traces", zlib.compress(first), "deflate").status_code == 200
    # Two gzip members: a protobuf message concatenated is the merge of both (5 spans).
    assert _post(side, "/v1/traces", gzip.compress(first) + gzip.compress(second), "gzip").status_code == 200
    assert sink.wait_for_spans(2 + 5)


def test_an_unknown_encoding_is_415(side, sink):
    response = _post(side, "/v1/traces", traces_request(1).SerializeToString(), "br")
    assert response.status_code == 415
    assert "Content-Encoding" in status_pb2.Status.FromString(response.content).message


def test_the_limit_applies_to_the_inflated_size_as_it_grows(side, sink):
    # 50 MB of zeros in ~50 KB of gzip: refused at the limit, the sidecar's inflater never
    # holds more than a step beyond it.
    bomb = gzip.compress(bytes(50_000_000), 9)
    assert len(bomb) < LIMIT
    assert _post(side, "/v1/traces", bomb, "gzip").status_code == 413
    # Identity bodies over the limit are refused from their Content-Length.
    assert _post(side, "/v1/traces", bytes(LIMIT + 1)).status_code == 413


def test_budget_routes_are_bounded_and_admitted(side, sink):
    check = {"envelope": {"workflowId": "wf"}, "model": "gpt-4o", "estimatedCostUsd": 0.01}
    ok = _post(side, "/v1/budget/check", gzip.compress(json.dumps(check).encode()), "gzip", "application/json")
    assert ok.status_code == 200 and ok.json()["decision"] == "ALLOW"
    # Far below the OTLP limit, far above any CheckRequest.
    padded = {**check, "model": "m" * 100_000}
    too_big = _post(side, "/v1/budget/check", json.dumps(padded).encode(), content_type="application/json")
    assert too_big.status_code == 413
    bomb = gzip.compress(b" " * 10_000_000)
    assert _post(side, "/v1/budget/check", bomb, "gzip", "application/json").status_code == 413
    assert _post(side, "/v1/budget/check", b"junk", "gzip", "application/json").status_code == 400

    # Under memory pressure the budget routes are refused retryably, like the OTLP ones.
    def refuse(signal, size_bytes: int) -> IngestError | None:
        return IngestError("unavailable", "memory is short", 2.0)

    side.call(side.sidecar.ingest.admission_checks.append, refuse)
    refused = _post(side, "/v1/budget/check", json.dumps(check).encode(), content_type="application/json")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    registry = side.sidecar.metrics.registry
    assert registry.get_sample_value("costctx_receiver_requests_total",
                                     {"signal": "budget", "transport": "http", "result": "memory_limited"}) == 1


def test_grpc_budget_service_is_admitted_before_its_message_is_read(side, sink):
    import grpc
    from google.rpc import error_details_pb2

    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb

    def refuse(signal, size_bytes: int) -> IngestError | None:
        return IngestError("unavailable", "memory is short", 2.0)

    request = pb.CheckRequest(model="gpt-4o", estimated_cost_usd=0.01).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{side.sidecar.grpc_port}") as channel:
        check = channel.unary_unary("/costctx.v1.BudgetService/Check")
        check(request, timeout=5)  # admitted
        side.call(side.sidecar.ingest.admission_checks.append, refuse)
        with pytest.raises(grpc.RpcError) as refused:
            check(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    trailer = dict(refused.value.trailing_metadata())["grpc-status-details-bin"]
    detail = status_pb2.Status.FromString(trailer).details[0]
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info) and info.retry_delay.seconds == 2
    registry = side.sidecar.metrics.registry
    assert registry.get_sample_value("costctx_receiver_requests_total",
                                     {"signal": "budget", "transport": "grpc", "result": "memory_limited"}) == 1
