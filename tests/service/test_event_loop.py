"""The event loop `costctx run` serves on (service/event_loop.py): uvloop's when installed, asyncio's
as the fallback, either by COSTCTX_EVENT_LOOP; and a sidecar on each loop receives over gRPC and
HTTP and exports over gRPC and HTTP."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from costctx.service import event_loop
from costctx.service.runner import SidecarThread
from tests.support.otlp import grpc_call
from tests.support.otlp_client import trace_request
from tests.support.sidecar import sidecar_config, start_sidecar

uvloop = pytest.importorskip("uvloop")

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def made(environ: dict[str, str]) -> tuple[str, asyncio.AbstractEventLoop]:
    name, factory = event_loop.loop_factory(environ)
    loop = factory()
    loop.close()
    return name, loop


@pytest.mark.parametrize("environ", [{}, {"COSTCTX_EVENT_LOOP": "auto"}, {"COSTCTX_EVENT_LOOP": " UVLOOP "}])
def test_uvloop_when_installed(environ):
    name, loop = made(environ)
    assert name == "uvloop" and isinstance(loop, uvloop.Loop)


def test_asyncio_when_asked():
    name, loop = made({"COSTCTX_EVENT_LOOP": "asyncio"})
    assert name == "asyncio" and not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_asyncio_when_uvloop_is_missing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with caplog.at_level(logging.WARNING, logger="costctx"):
        assert made({})[0] == "asyncio"
    assert not caplog.records  # auto: the fallback is silent
    with caplog.at_level(logging.WARNING, logger="costctx"):
        assert made({"COSTCTX_EVENT_LOOP": "uvloop"})[0] == "asyncio"
    assert "uvloop is not installed" in caplog.text  # asked for: said


def test_an_unknown_choice_is_auto_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="costctx"):
        assert made({"COSTCTX_EVENT_LOOP": "trio"})[0] == "uvloop"
    assert "COSTCTX_EVENT_LOOP=trio" in caplog.text


def test_run_serves_the_coroutine_on_the_chosen_loop():
    async def which() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(event_loop.run(which(), {"COSTCTX_EVENT_LOOP": "uvloop"}), uvloop.Loop)
    assert not issubclass(event_loop.run(which(), {"COSTCTX_EVENT_LOOP": "asyncio"}), uvloop.Loop)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("exporter", ["otlp", "otlphttp"])
def test_a_sidecar_on_either_loop_receives_and_exports(monkeypatch, sink, loop, exporter):
    """gRPC and HTTP in (grpc.aio's server, aiohttp's), gRPC or HTTP out, on the loop chosen."""
    import urllib.request

    monkeypatch.setenv("COSTCTX_EVENT_LOOP", loop)
    config = sidecar_config(sink.grpc_port, processors=["envelope"], exporter=exporter, sink_http_port=sink.http_port)
    runner: SidecarThread = start_sidecar(config)
    try:
        assert isinstance(runner.loop, uvloop.Loop) is (loop == "uvloop")
        _, error = grpc_call(runner.sidecar.grpc_port, EXPORT, trace_request(["a", "b"]))
        assert error is None, error
        request = urllib.request.Request(f"http://127.0.0.1:{runner.sidecar.http_port}/v1/traces",
                                         data=trace_request(["c"]), method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert sink.wait_for_spans(3)
        assert sorted(s.name for s in sink.spans()) == ["a", "b", "c"]
    finally:
        runner.stop()
