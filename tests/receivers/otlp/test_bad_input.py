"""Malformed, oversize and mistyped requests get protocol-correct errors; the sidecar keeps serving."""

from __future__ import annotations

import gzip
import json

import grpc
import pytest
import requests
from google.rpc import code_pb2, status_pb2

from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request


@pytest.fixture
def side(make_sidecar):
    return make_sidecar(
        processors=["envelope"],
        receivers={
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1},
                    "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 100_000},
                }
            }
        },
    ).sidecar


def _still_serves(side, sink, already: int) -> None:
    response, error = grpc_call(side.grpc_port, TRACE_METHOD, traces_request(3).SerializeToString())
    assert error is None
    assert sink.wait_for_spans(already + 3)


def test_grpc_malformed_protobuf_is_invalid_argument(side, sink):
    # A length-delimited field that claims 5 bytes and has 3.
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, b"\x0a\x05abc")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode traces protobuf" in error.details()
    _still_serves(side, sink, 0)


def test_grpc_oversize_is_resource_exhausted(side, sink):
    big = traces_request(1, attributes={"blob": "x" * (2 * 1024 * 1024)}).SerializeToString()
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, big)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _still_serves(side, sink, 0)


def _post(side, path: str, body: bytes, content_type: str, **headers):
    return requests.post(
        f"http://127.0.0.1:{side.http_port}{path}",
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=5,
    )


def test_http_malformed_protobuf_is_400_with_status_body(side, sink):
    resp = _post(side, "/v1/traces", b"\x0a\x05abc", "application/x-protobuf")
    assert resp.status_code == 400
    status = status_pb2.Status.FromString(resp.content)
    assert status.code == code_pb2.INVALID_ARGUMENT and "cannot decode" in status.message
    _still_serves(side, sink, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"resourceSpans": 7}).encode(),
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz" * 16, "spanId": "00" * 8}]}]}]}
        ).encode(),
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 4, "spanId": "00" * 8}]}]}]}
        ).encode(),
    ],
)
def test_http_malformed_json_is_400_with_json_status(side, sink, body):
    resp = _post(side, "/v1/traces", body, "application/json")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["code"] == code_pb2.INVALID_ARGUMENT
    _still_serves(side, sink, 0)


def test_http_oversize_is_413_even_when_gzip_hides_it(side, sink):
    plain = traces_request(1, attributes={"blob": "x" * 200_000}).SerializeToString()
    assert _post(side, "/v1/traces", plain, "application/x-protobuf").status_code == 413
    bomb = gzip.compress(plain)
    assert len(bomb) < 100_000
    resp = _post(side, "/v1/traces", bomb, "application/x-protobuf", **{"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    _still_serves(side, sink, 0)


def test_http_bad_gzip_and_wrong_content_type(side, sink):
    resp = _post(side, "/v1/traces", b"not gzip at all", "application/x-protobuf", **{"Content-Encoding": "gzip"})
    assert resp.status_code == 400
    assert _post(side, "/v1/traces", b"hello", "text/plain").status_code == 415
    assert requests.get(f"http://127.0.0.1:{side.http_port}/v1/traces", timeout=5).status_code == 405
    _still_serves(side, sink, 0)


def test_http_gzip_protobuf_is_accepted(side, sink):
    body = gzip.compress(traces_request(4).SerializeToString())
    resp = _post(side, "/v1/traces", body, "application/x-protobuf", **{"Content-Encoding": "gzip"})
    assert resp.status_code == 200
    assert sink.wait_for_spans(4)


def test_bad_requests_are_counted(side, sink):
    grpc_call(side.grpc_port, TRACE_METHOD, b"\x0a\x05abc")
    _post(side, "/v1/traces", b"{", "application/json")
    text = requests.get(f"http://127.0.0.1:{side.admin_port}/metrics", timeout=5).text
    assert 'costctx_receiver_requests_total{result="invalid",signal="traces",transport="grpc"} 1.0' in text
    assert 'costctx_receiver_requests_total{result="invalid",signal="traces",transport="http"} 1.0' in text
