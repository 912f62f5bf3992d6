from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from costctx.cli.sink import OtlpSink
from costctx.service.runner import SidecarThread
from tests.support.budget import redis_url_fixture
from tests.support.sidecar import sidecar_config, start_sidecar


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink(http_port=0) as s:
        yield s


@pytest.fixture
def make_sidecar(sink: OtlpSink) -> Iterator[Callable[..., SidecarThread]]:
    """make_sidecar(processors=[...], **config_overrides) -> a started SidecarThread."""
    started: list[SidecarThread] = []

    def make(**kwargs) -> SidecarThread:
        config = sidecar_config(sink.grpc_port, sink_http_port=sink.http_port, **kwargs)
        runner = start_sidecar(config)
        started.append(runner)
        return runner

    yield make
    for runner in started:
        runner.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the budget tests: one redis-server per session, shared by every file."""
    yield from redis_url_fixture()
