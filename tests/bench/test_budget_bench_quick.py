"""bench/budget_latency.py keeps working (`--quick`: its numbers mean nothing here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.e2e  # runs the budget benchmark script



def test_budget_latency_bench_runs_quick(redis_url):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "budget_latency.py"), "--quick", "--redis-url", redis_url],
        capture_output=True, text=True, timeout=300, env={**os.environ}, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()]
    stores = [r[0] for r in rows if r and r[0] in ("memory", "redis")]
    assert stores.count("memory") == 3 and stores.count("redis") == 3  # in process + 1 and 16 callers
