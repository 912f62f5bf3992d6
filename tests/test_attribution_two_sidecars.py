"""One workflow across two services, each with its own sidecar (`costctx run` processes)
sharing one real Redis; the real SDK in both; A calls B over HTTP on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from costctx.cli.sink import OtlpSink
from tests.support.process import SidecarProcess, with_fixed_ports
from tests.support.sidecar import sidecar_config
from tests.support.two_services import ServiceA, ServiceB
from tests.support.wait import wait_until

WORKFLOWS = 20
CALLS = 3


def _config(sink_port: int, redis_url: str, prefix: str, policies: list[dict] | None = None) -> dict:
    config = sidecar_config(sink_port, processor_config={
        "inherit": {"wait_duration": "500ms",
                    "registry": {"backend": "redis", "redis": {"url": redis_url, "key_prefix": prefix + "reg:"}}},
        "budget": {"backend": "redis", "redis": {"url": redis_url, "key_prefix": prefix + "bud:"},
                   "policies": policies or []},
    })
    return with_fixed_ports(config)


@pytest.fixture
def sidecars(tmp_path, redis_url) -> Iterator:
    started: list[SidecarProcess] = []
    sink = OtlpSink()
    sink.start()

    def make(policies: list[dict] | None = None) -> tuple[SidecarProcess, SidecarProcess, OtlpSink]:
        prefix = f"{{t{uuid.uuid4().hex[:8]}}}:"
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            started.append(SidecarProcess(_config(sink.grpc_port, redis_url, prefix, policies),
                                          tmp_path / name).start())
        return started[0], started[1], sink

    yield make
    for process in started:
        process.close()
    sink.stop()


def _envelope(i: int) -> dict[str, str]:
    return {"workflow.id": f"wf-{uuid.uuid4().hex[:8]}", "request.id": f"req-{i}",
            "owner.tenant": ("acme", "globex")[i % 2], "owner.feature": "research"}


def _b_model_spans(sink) -> list:
    return [s for s in sink.spans() if s.service == "svc-b" and s.name == "chat gpt-4o"]


def test_envelope_in_baggage_reaches_b_spans_with_the_right_values_and_no_hold(sidecars):
    side_a, side_b, sink = sidecars()
    b = ServiceB(side_b.grpc_target, baggage=True, calls=CALLS)
    a = ServiceA(side_a.grpc_target, baggage=True)
    try:
        for i in range(WORKFLOWS):
            a.run(b.url, _envelope(i))
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: len(_b_model_spans(sink)) >= WORKFLOWS * CALLS, timeout=20)
    spans = _b_model_spans(sink)
    correct = sum(1 for s in spans
                  if s.attributes.get("workflow.id") == a.traces[s.trace_id]["workflow.id"]
                  and s.attributes.get("owner.tenant") == a.traces[s.trace_id]["owner.tenant"])
    assert correct / len(spans) >= 0.99, f"{correct} of {len(spans)} correct"
    assert side_b.metric("costctx_inherit_held_spans_total") == 0


def test_traceparent_only_b_learns_the_workflow_from_the_registry_a_check_wrote(sidecars):
    side_a, side_b, sink = sidecars()
    b = ServiceB(side_b.grpc_target, baggage=False, calls=CALLS)
    a = ServiceA(side_a.grpc_target, baggage=False, budget_target=side_a.grpc_target)
    try:
        for i in range(5):
            a.run(b.url, _envelope(i))
    finally:
        a.close()
        b.close()
    assert wait_until(lambda: len(_b_model_spans(sink)) >= 5 * CALLS, timeout=20)
    for span in _b_model_spans(sink):
        expected = a.traces[span.trace_id]
        assert span.attributes.get("workflow.id") == expected["workflow.id"]
        assert span.attributes.get("owner.tenant") == expected["owner.tenant"]
    assert side_b.metric("costctx_registry_lookups_total", {"result": "remote"}) >= 1
    assert side_b.metric("costctx_inherit_missing_spans_total") == 0
