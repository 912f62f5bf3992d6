"""`costctx run` loads only what its config uses: without an OTLP/HTTP receiver or exporter no
aiohttp (the admin port has its own small server), without a persistent queue or hold journal no
SQLite; on the native codec no protobuf (~2.6 MB) until a request needs it. Read from the
running process's memory maps (/proc/PID/maps), after it has served spans and /metrics, so a
module imported late on the request path counts too."""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.otlp import grpc_call
from tests.support.otlp_client import trace_request
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def loaded_libraries(config: dict, tmp_path: Path) -> str:
    """The shared objects the sidecar has mapped after one export and one scrape."""
    # The maps are read before the stop: a short drain, not the default 10 s spent retrying an
    # exporter that never answers (port 9) on every test's SIGTERM.
    config.setdefault("service", {})["shutdown_grace"] = "1s"
    sidecar = SidecarProcess(with_fixed_ports(config), tmp_path).start()
    try:
        port = int(sidecar.grpc_target.rsplit(":", 1)[1])
        _, error = grpc_call(port, EXPORT, trace_request(["a", "b"]))
        assert error is None, error
        with urllib.request.urlopen(sidecar.admin_url + "/metrics", timeout=5) as response:
            assert response.status == 200 and b"costctx_" in response.read()
        return Path(f"/proc/{sidecar.proc.pid}/maps").read_text()
    finally:
        sidecar.terminate()
        sidecar.close()


def test_grpc_only_sidecar_loads_neither_aiohttp_nor_sqlite(tmp_path):
    config = sidecar_config(9)  # every default processor; the exporter's endpoint need not answer
    config["receivers"]["otlp"]["protocols"].pop("http")
    maps = loaded_libraries(config, tmp_path)
    assert "costctx_native" in maps or "_pydantic_core" in maps  # the maps are the process's
    assert "/aiohttp/" not in maps
    assert "sqlite3" not in maps


def test_an_http_receiver_brings_aiohttp(tmp_path):
    maps = loaded_libraries(sidecar_config(9), tmp_path)
    assert "/aiohttp/" in maps


# protobuf's upb backend is a shared object: mapped once anything imports google.protobuf.
PROTOBUF_SO = "/google/_upb/"


def _protobuf_is_upb() -> bool:
    from google.protobuf.internal import api_implementation

    return api_implementation.Type() == "upb"


needs_native_and_upb = pytest.mark.skipif(
    importlib.util.find_spec("costctx_native") is None or not _protobuf_is_upb(),
    reason="needs the native codec, and protobuf's upb backend (a shared object to see in the maps)",
)


@needs_native_and_upb
@pytest.mark.parametrize("http", [False, True], ids=["grpc-only", "grpc+http"])
def test_native_codec_sidecar_does_not_load_protobuf(tmp_path, monkeypatch, http):
    """Every default processor, the budget service on the ports, a traces export served, an
    export attempted (to a port that refuses) and /metrics scraped: none of it imports protobuf."""
    monkeypatch.setenv("COSTCTX_CODEC", "native")
    config = sidecar_config(9)
    if not http:
        config["receivers"]["otlp"]["protocols"].pop("http")
    maps = loaded_libraries(config, tmp_path)
    assert "costctx_native" in maps
    assert PROTOBUF_SO not in maps


@needs_native_and_upb
def test_python_codec_sidecar_loads_protobuf(tmp_path, monkeypatch):
    """The counterpart: the Python codec parses with protobuf, so the maps show it (the check above
    can fail)."""
    monkeypatch.setenv("COSTCTX_CODEC", "python")
    config = sidecar_config(9)
    config["receivers"]["otlp"]["protocols"].pop("http")
    assert PROTOBUF_SO in loaded_libraries(config, tmp_path)


@pytest.mark.parametrize("choice", ["auto", "asyncio"])
def test_costctx_run_serves_on_uvloop_unless_told_otherwise(monkeypatch, tmp_path, choice):
    """`costctx run` itself (service/event_loop.py through the CLI): uvloop's loop by default,
    asyncio's when COSTCTX_EVENT_LOOP says so (uvloop then not even imported)."""
    pytest.importorskip("uvloop")
    monkeypatch.setenv("COSTCTX_EVENT_LOOP", choice)
    config = sidecar_config(9)
    config["receivers"]["otlp"]["protocols"].pop("http")
    maps = loaded_libraries(config, tmp_path)
    assert ("/uvloop/" in maps) is (choice == "auto")
