"""The codec a `costctx run` process uses is the one COSTCTX_CODEC in its environment names.

CI runs the suite twice, the second time with COSTCTX_CODEC=python: the sidecar processes the
tests start must inherit that, or the second pass would test the native codec again.
"""

from __future__ import annotations

import grpc
import pytest

from costctx.pdata.codec import native, select_codec
from tests.support.otlp_client import trace_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


def codec_of(process: SidecarProcess, name: str) -> float:
    return process.metric("costctx_codec_info", {"codec": name})


def test_a_sidecar_process_runs_the_codec_this_test_run_selects(sink, tmp_path):
    # Whatever COSTCTX_CODEC this run has (unset: native when built), the subprocess has it too.
    expected = select_codec().name
    process = SidecarProcess(with_fixed_ports(sidecar_config(sink.grpc_port)), tmp_path).start()
    try:
        assert codec_of(process, expected) == 1
    finally:
        process.close()


@pytest.mark.parametrize("choice", ["python", pytest.param("native", marks=pytest.mark.skipif(
    not native.AVAILABLE, reason="costctx_native is not built"))])
def test_costctx_codec_in_the_environment_picks_the_codec_and_spans_flow(choice, sink, tmp_path, monkeypatch):
    monkeypatch.setenv("COSTCTX_CODEC", choice)
    process = SidecarProcess(with_fixed_ports(sidecar_config(sink.grpc_port)), tmp_path).start()
    try:
        other = {"python": "native", "native": "python"}[choice]
        assert codec_of(process, choice) == 1 and codec_of(process, other) == 0
        with grpc.insecure_channel(process.grpc_target) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                         request_serializer=None, response_deserializer=None)
            export(trace_request(["codec-a", "codec-b"]), timeout=10)
        assert wait_until(lambda: {"codec-a", "codec-b"} <= {s.name for s in sink.spans()}, timeout=60)
    finally:
        process.close()
