"""No subprocess is started with a preexec_fn, in the sidecar, its tests or its benchmarks (read
from the source with ast). A preexec_fn makes subprocess fork() rather than vfork(); once the
process has used gRPC (1.81+), gRPC's fork handler restarts its poller in the child, close_fds then
closes the poller's epoll fd, and the child aborts before exec ("epoll_wait error: Bad file
descriptor", grpc/grpc#43055): about 1 child in 20 in a test process that ran a sidecar."""

from __future__ import annotations

import ast

from tests.support.paths import REPO

SOURCE_ROOTS = ("sidecar", "tests", "bench", "scripts")


def calls_with_preexec_fn() -> list[str]:
    found = []
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and any(kw.arg == "preexec_fn" for kw in node.keywords):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_subprocess_is_started_with_a_preexec_fn():
    assert calls_with_preexec_fn() == []
