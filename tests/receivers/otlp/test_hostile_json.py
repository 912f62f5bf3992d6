"""Hostile JSON gets 400 with a google.rpc.Status body, never a 500 or a logged traceback:
deep nesting, a string where a message belongs, invalid base64, empty or all-zero span ids."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from google.rpc import code_pb2

from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request

SPAN_ID = "0102030405060708"
TRACE_ID = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def side(make_sidecar):
    return make_sidecar(processors=["budget", "envelope"]).sidecar


def _post(side, path: str, body: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"http://127.0.0.1:{side.http_port}{path}", data=body,
                         headers={"Content-Type": content_type}, timeout=10)


def _span_request(**span) -> bytes:
    span = {"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "s", **span}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def _assert_invalid(response: requests.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == code_pb2.INVALID_ARGUMENT
    for word in words:
        assert word in answer["message"]


def _no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


def _kvlist(depth: int) -> dict:
    value: dict = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/metrics", "/v1/logs"])
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 1000 + b"1" + b"}" * 1000],
                         ids=["open_brackets", "objects_1000_deep"])
def test_deeply_nested_json_is_400_without_a_traceback(side, sink, caplog, path, body):
    _assert_invalid(_post(side, path, body))
    _no_traceback(caplog)


def test_nesting_json_can_parse_but_protobuf_would_refuse_is_400(side, sink, caplog):
    body = _span_request(attributes=[{"key": "deep", "value": _kvlist(40)}])
    _assert_invalid(_post(side, "/v1/traces", body), "nested deeper")
    _no_traceback(caplog)
    # Shallow nesting is fine.
    assert _post(side, "/v1/traces", _span_request(attributes=[{"key": "ok", "value": _kvlist(5)}])).status_code == 200
    assert sink.wait_for_spans(1)


@pytest.mark.parametrize("trace_id, span_id", [("", SPAN_ID), (TRACE_ID, ""), ("00" * 16, SPAN_ID),
                                               (TRACE_ID, "00" * 8)])
def test_empty_or_zero_span_ids_are_400_like_non_hex(side, sink, trace_id, span_id):
    _assert_invalid(_post(side, "/v1/traces", _span_request(traceId=trace_id, spanId=span_id)), "Id")


def test_empty_parent_span_id_and_log_trace_id_are_fine(side, sink):
    assert _post(side, "/v1/traces", _span_request(parentSpanId="")).status_code == 200
    record = {"traceId": "", "spanId": "", "body": {"stringValue": "x"}}
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    assert _post(side, "/v1/logs", json.dumps(logs).encode()).status_code == 200
    assert sink.wait_for_spans(1)


def test_link_with_an_empty_trace_id_is_400(side, sink):
    _assert_invalid(_post(side, "/v1/traces", _span_request(links=[{"traceId": "", "spanId": SPAN_ID}])), "traceId")


@pytest.mark.parametrize("value", ["!!!notb64", "abcde", "ab cd"])
def test_invalid_base64_in_bytes_value_is_400(side, sink, value):
    body = _span_request(attributes=[{"key": "b", "value": {"bytesValue": value}}])
    _assert_invalid(_post(side, "/v1/traces", body), "base64")


def test_valid_base64_in_bytes_value_is_kept(side, sink):
    body = _span_request(attributes=[{"key": "b", "value": {"bytesValue": "aGVsbG8"}}])  # unpadded "hello"
    assert _post(side, "/v1/traces", body).status_code == 200
    assert sink.wait_for_spans(1)
    (request,) = sink.requests["traces"]
    assert request.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.bytes_value == b"hello"


@pytest.mark.parametrize("body", [{"envelope": "x"}, {"envelope": ["x"]}, {"envelope": {"owner": "acme"}},
                                  {"envelope": {"workflowId": "w"}, "model": {"a": 1}}])
def test_budget_check_with_a_mis_shaped_envelope_is_400_not_allow(side, sink, body):
    response = _post(side, "/v1/budget/check", json.dumps({"estimatedCostUsd": 0.1, **body}).encode())
    _assert_invalid(response, "bad CheckRequest")


def test_budget_check_deeply_nested_is_400(side, sink, caplog):
    # Within the budget routes' 64 KiB body limit, far beyond the interpreter's stack.
    _assert_invalid(_post(side, "/v1/budget/check", b"[" * 60_000))
    _no_traceback(caplog)


def test_still_serves_after_hostile_json(side, sink):
    for body in (b"[" * 100_000, _span_request(traceId="")):
        _post(side, "/v1/traces", body)
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, traces_request(2).SerializeToString())
    assert error is None
    assert sink.wait_for_spans(2)
