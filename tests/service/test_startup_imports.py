"""`costctx run` loads only what its config uses: without an OTLP/HTTP receiver or exporter no
aiohttp (the admin port has its own small server), without a persistent queue or hold journal no
SQLite. Read from the running process's memory maps (/proc/PID/maps), after it has served spans
and /metrics, so a module imported late on the request path counts too."""

from __future__ import annotations

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
