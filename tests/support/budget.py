"""Budget test helpers: a real redis-server, budget configs, and model-call spans sent
through the real OpenTelemetry SDK exactly as an agent loop would send them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from costctx.client.budget import BudgetClient, Decision
from tests.support.process import free_port
from tests.support.sidecar import sidecar_config


def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def redis_url_fixture() -> Iterator[str]:
    """The `redis_url` fixture (tests/conftest.py, one per session):
    COSTCTX_TEST_REDIS_URL (started by .ci/run), else a redis-server of our own on a free port.
    Missing in CI is a failure, not a skip: the shared-store tests must run there."""
    url = os.environ.get("COSTCTX_TEST_REDIS_URL")
    if url:
        if not _ping(url):
            pytest.fail(f"COSTCTX_TEST_REDIS_URL={url} does not answer PING")
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed (apt-get install redis-server); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while not _ping(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def budget_section(backend: str, redis_url: str | None, policies: list[dict], **extra) -> dict:
    section: dict = {"backend": backend, "policies": policies, **extra}
    if backend == "redis":
        # A fresh key prefix per test: tests share one server without flushing it. A 5 s timeout:
        # at the 250 ms default a loaded two-core machine makes checks fail open, and a test
        # about admission would fail on that (the fail-open test points at a closed port).
        section["redis"] = {"url": redis_url, "key_prefix": f"{{t{uuid.uuid4().hex[:10]}}}:", "timeout": "5s",
                            **extra.get("redis", {})}
    return section


def budget_config(sink_port: int, backend: str, redis_url: str | None, policies: list[dict], **extra) -> dict:
    """A sidecar config whose traces pipeline is `budget` alone, on the given store."""
    config = sidecar_config(sink_port, processors=["budget"])
    config["processors"]["budget"] = budget_section(backend, redis_url, policies, **extra)
    return config


def store_param(request) -> tuple[str, str | None]:
    """(backend, redis url) for a fixture parametrized with ["memory", "redis"]."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "memory", None


def model_call(tracer, decision: Decision | None, *, workflow_id: str, cost_usd: float, model: str = "gpt-4o",
               tenant: str = "acme", feature: str = "chat", workflow_name: str = "", retry_attempt: int = 0,
               tokens: tuple[int, int] = (100, 50)) -> None:
    """One model-call span as the price processor leaves it (cost.usd), with the check's reservation."""
    with tracer.start_as_current_span(f"chat {model}") as span:
        span.set_attribute("workflow.id", workflow_id)
        if workflow_name:
            span.set_attribute("workflow.name", workflow_name)
        span.set_attribute("owner.tenant", tenant)
        span.set_attribute("owner.feature", feature)
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.usage.input_tokens", tokens[0])
        span.set_attribute("gen_ai.usage.output_tokens", tokens[1])
        span.set_attribute("cost.usd", cost_usd)
        if retry_attempt:
            span.set_attribute("retry.attempt", retry_attempt)
        if decision is not None:
            span.set_attributes(decision.span_attributes())


def committed_call(client: BudgetClient, tracer, provider, sink, *, estimate: float, actual: float,
                   **fields) -> Decision:
    """check, then (if allowed) the call's span, waiting until the sidecar has committed it."""
    span_fields = {k: v for k, v in fields.items() if k in ("workflow_id", "tenant", "feature", "workflow_name",
                                                             "retry_attempt")}
    model = fields.pop("model", "gpt-4o")
    decision = client.check(model=model, estimated_cost_usd=estimate, **fields)
    if decision.allowed:
        before = sink.span_count()
        model_call(tracer, decision, cost_usd=actual, model=decision.model, **span_fields)
        provider.force_flush()
        assert sink.wait_for_spans(before + 1)
    return decision
