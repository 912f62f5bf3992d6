"""Traces reach the pipeline as the bytes received: the receivers do not parse them with
protobuf first (the pipeline's codec validates and reads them), over gRPC and HTTP, with
processors reading the view and with none; metrics are still decoded and counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.pdata.signals import TRACES, Signal
from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request


@pytest.fixture
def parses(monkeypatch):
    """Counts the traces request messages the receivers make (decoding makes one per request;
    the test's sink, in this process, decodes what it receives: not counted)."""
    made = []

    def counting():
        if "receivers" in Path(sys._getframe(1).f_code.co_filename).parts:
            made.append(1)
        return ExportTraceServiceRequest()

    # request_type is a property of the class (the pb2 module is imported on first use).
    real = Signal.request_type
    monkeypatch.setattr(Signal, "request_type", property(lambda s: counting if s is TRACES else real.fget(s)))
    yield made


@pytest.mark.parametrize("processors", [[], ["envelope"]])
def test_traces_are_not_parsed_by_the_receivers(make_sidecar, sink, parses, processors):
    side = make_sidecar(processors=processors).sidecar
    body = traces_request(4).SerializeToString()
    assert grpc_call(side.grpc_port, TRACE_METHOD, body)[1] is None
    response = requests.post(f"http://127.0.0.1:{side.http_port}/v1/traces", data=body,
                             headers={"Content-Type": "application/x-protobuf"}, timeout=5)
    assert response.status_code == 200
    assert sink.wait_for_spans(8)
    assert parses == []
    # Still refused as protobuf would: a field that claims more bytes than there are.
    _, error = grpc_call(side.grpc_port, TRACE_METHOD, b"\x0a\x05abc")
    assert "cannot decode traces protobuf" in error.details()
