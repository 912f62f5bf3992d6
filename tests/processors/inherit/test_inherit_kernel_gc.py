"""inherit's native kernel under a collection of the cyclic GC in the middle of a decision: the
kernel's __traverse__ reads the batch state that `run` holds locked while it calls into Python
(a plan's bumps iterated), so a collection there must not wait on that lock. A collection can
start at any allocation of a tracked object: in a sidecar it is rare and it froze the loop
thread for good (seen as a hang in a full test run). Here a plan whose bumps collect when
iterated makes it certain; run in a child process so a hang fails the test instead of the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costctx.pdata.codec.native import AVAILABLE
from costctx.processors.inherit.processor import _DecideKernel

pytestmark = pytest.mark.skipif(not AVAILABLE or _DecideKernel is None, reason="costctx_native not built")

ROOT = Path(__file__).resolve().parents[3]

_CHILD = textwrap.dedent("""
    import gc

    from bench.inprocess import fresh_ids
    from bench.workload import WorkloadSpec, build_requests
    from costctx.processors.inherit.processor import InheritProcessor
    from tests.processors.inherit.test_inherit_kernel import Side
    from tests.processors.inherit.test_inherit_native_pass import run_side_by_side

    class CollectingBumps:
        # The plan's bumps, as a tuple would give them; each iteration runs a full collection.
        def __init__(self, items):
            self.items = tuple(items)
            self.iterated = 0

        def __iter__(self):
            self.iterated += 1
            if self.iterated <= 5:  # a few full collections per plan: enough to meet the lock
                gc.collect()
            return iter(self.items)

    made = []
    plan = InheritProcessor._plan

    def collecting_plan(self, shape, supplied):
        found = plan(self, shape, supplied)
        bumps = CollectingBumps(found[6])
        made.append(bumps)
        return (*found[:6], bumps, *found[7:])

    InheritProcessor._plan = collecting_plan
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=False, batches=2))
    on, off = Side(True, 1000), Side(False, 1000)
    run_side_by_side(on, off, pool + fresh_ids(pool, 1), 2)
    assert on.counting.decided > 20, on.counting.decided
    assert sum(b.iterated for b in made) > 0
    print("ok", on.counting.decided)
""")


def test_a_collection_while_the_kernel_decides_does_not_hang_it():
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'sidecar'}",
                                   "COSTCTX_CODEC": "native"})
    except subprocess.TimeoutExpired:
        pytest.fail("the kernel hung: a GC collection during run() waited on a lock run() held")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok"), done.stdout
