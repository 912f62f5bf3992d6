"""README: bodies that cannot be read (corrupt gzip, truncated) are 400 on every HTTP route,
including the routes other components add to the OTLP HTTP server (the budget service)."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.support.otlp_client import trace_request


@pytest.fixture
def routes_and_port(make_sidecar) -> tuple[list[str], int]:
    runner = make_sidecar(processor_config={"budget": {"policies": [{"id": "p", "workflow": {"cost_usd": 1.0}}]}})
    http = runner.sidecar.http
    paths = sorted({r.resource.canonical for r in http.app.router.routes() if r.method == "POST"})
    return paths, http.port


def test_every_route_is_enumerated(routes_and_port):
    paths, _ = routes_and_port
    # The three OTLP signals and the budget service's routes: a route added later is covered too.
    assert {"/v1/traces", "/v1/metrics", "/v1/logs"} < set(paths)
    assert any(path.startswith("/v1/budget/") for path in paths)


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_a_corrupt_gzip_body_is_400_on_every_route(routes_and_port, content_type):
    paths, port = routes_and_port
    answers = {}
    for path in paths:
        response = requests.post(f"http://127.0.0.1:{port}{path}", data=b"\x1f\x8b\x08 not gzip at all", timeout=10,
                                 headers={"Content-Type": content_type, "Content-Encoding": "gzip"})
        answers[path] = response.status_code
    assert answers == dict.fromkeys(paths, 400)


def test_a_truncated_gzip_body_is_400_on_every_route(routes_and_port):
    """A gzip stream cut short (its length honest): the decompressor runs out mid-stream."""
    paths, port = routes_and_port
    whole = gzip.compress(trace_request(["cut"]))
    answers = {}
    for path in paths:
        response = requests.post(f"http://127.0.0.1:{port}{path}", data=whole[: len(whole) // 2], timeout=10,
                                 headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        answers[path] = response.status_code
    assert answers == dict.fromkeys(paths, 400)
