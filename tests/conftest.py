from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support import codec_guard, config_record

# Before the test modules import the loader's names: every config they build is recorded.
config_record.install()

from costctx.cli.sink import OtlpSink  # noqa: E402
from costctx.service.runner import SidecarThread  # noqa: E402
from tests.support.budget import redis_url_fixture  # noqa: E402
from tests.support.sidecar import sidecar_config, start_sidecar  # noqa: E402
from tests.support.sink import PatientSink  # noqa: E402
from tests.support.wall_clock import parse_wall_clock, shifted_wall_clock  # noqa: E402

# COSTCTX_TEST_WALL_CLOCK=2026-11-30T23:59:59.9Z: every test's body starts at that UTC instant
# (tests/support/wall_clock.py; its fixtures were set up on the real clock), to prove tests
# hold across midnight, a month's end or a whole minute.
WALL_CLOCK = os.environ.get("COSTCTX_TEST_WALL_CLOCK")


# The files CI's Python-codec run leaves out (.ci/python-codec-skip) must not use the codec the
# environment picks (tests/support/codec_guard.py): a test of theirs that does fails here. Watched
# where CI runs them, with COSTCTX_CODEC unset: a copy of os.environ (for a child's env) then
# reads no COSTCTX_CODEC, so every read the watch sees is a real one.
SESSION_CODEC = os.environ.get(codec_guard.VARIABLE)
CODEC_SKIP = codec_guard.skip_list() if SESSION_CODEC is None else []
CODEC_USES = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not codec_guard.is_listed(item.path, CODEC_SKIP):
        return (yield)
    with codec_guard.Watch(SESSION_CODEC) as watch:
        item.stash[CODEC_USES] = watch.uses
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    uses = item.stash.get(CODEC_USES, None)
    if uses and call.when in ("call", "teardown") and report.passed:
        report.outcome = "failed"
        report.longrepr = (f"{item.path.relative_to(codec_guard.REPO)} is in .ci/python-codec-skip (left out of "
                           f"CI's COSTCTX_CODEC=python run), but this test uses the environment's codec:\n  "
                           + "\n  ".join(dict.fromkeys(uses))
                           + "\nTake the file off the list (it must run on both codecs), or pin its codec.")
        uses.clear()
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not WALL_CLOCK:
        return (yield)
    with shifted_wall_clock(parse_wall_clock(WALL_CLOCK)):
        return (yield)


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with PatientSink(http_port=0) as s:
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


# A test using one of these (directly or through another fixture) runs a real sidecar and a sink.
E2E_FIXTURES = frozenset({"sink", "make_sidecar"})


def pytest_collection_modifyitems(config, items):
    """Mark end-to-end tests `e2e` (`pytest -m "not e2e"` is the fast inner loop): those using a
    sidecar-plus-sink fixture here; modules starting sidecars otherwise carry the mark themselves.
    Tests marked `runs_last` (the validate/run agreement over every recorded config) run after the rest."""
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)
