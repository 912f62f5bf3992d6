"""EmptyResponse stands in for an Export*ServiceResponse with no field set (the answer to a request
accepted whole) so the native codec's path never imports protobuf; it must read, serialize and
map to JSON exactly as the real empty message does."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from google.rpc import code_pb2

from costctx.pdata.signals import SIGNALS, EmptyResponse
from costctx.transport import rpc_status


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_empty_response_reads_as_the_empty_message(name):
    signal = SIGNALS[name]
    real, stand_in = signal.response_type(), EmptyResponse(signal)
    assert stand_in.SerializeToString() == real.SerializeToString() == b""
    assert stand_in.HasField("partial_success") is real.HasField("partial_success") is False
    assert getattr(stand_in.partial_success, signal.rejected_field) == 0  # a field: asked of a real one
    assert stand_in.partial_success.error_message == ""
    assert stand_in.as_message() == real
    assert json_format.MessageToJson(stand_in.as_message()) == json_format.MessageToJson(real)


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_parse_response_parses_only_a_body(name):
    signal = SIGNALS[name]
    assert isinstance(signal.parse_response(b""), EmptyResponse)
    answer = signal.response_type()
    setattr(answer.partial_success, signal.rejected_field, 3)
    answer.partial_success.error_message = "over a limit"
    parsed = signal.parse_response(answer.SerializeToString())
    assert parsed == answer and parsed.HasField("partial_success")


def test_request_and_response_types_are_the_otlp_messages():
    for signal in SIGNALS.values():
        assert signal.request_type.DESCRIPTOR.full_name == f"opentelemetry.proto.collector.{_package(signal)}.v1." \
                                                          f"{signal.message_prefix}Request"
        assert signal.response_type.DESCRIPTOR.full_name.endswith(f"{signal.message_prefix}Response")


def _package(signal) -> str:
    return {"traces": "trace", "metrics": "metrics", "logs": "logs"}[signal.name]


def test_rpc_codes_named_without_protobuf_are_google_rpc_codes():
    for name in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "UNAVAILABLE", "UNAUTHENTICATED"):
        assert getattr(rpc_status, name) == getattr(code_pb2, name), name
