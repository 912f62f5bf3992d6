#!/usr/bin/env python
"""A driver for valgrind: the default pipeline over run.py's pool (200 requests of 100 spans,
+4 attrs), fresh ids per pass, no timers, so a tool can count what inherit's native calls do,
or (`--target NAME`) everything one processor's process_view does, Python and native alike.

    COSTCTX_CODEC=native valgrind --tool=callgrind --cache-sim=yes \\
        --toggle-collect='*DecideKernel::__pymethod_run__*' \\
        --toggle-collect='*DecideKernel::__pymethod_list_level__*' \\
        --toggle-collect='*inherit::__pyfunction_read_batch*' \\
        python bench/inherit_grind.py [--batches 200] [--passes 2] [--complete]

One warm-up pass (imports, first-use allocations, tables filled), then `--passes` passes,
with the collection turned on for the passes only when `--toggle-collect` is not given
(`CALLGRIND_START_INSTRUMENTATION` is not reachable from Python: the counts then include
the warm-up; prefer the toggles). Divide the counts by 100 * batches * passes for per span.

One processor: `--target price` calls its process_view through `functools.reduce` (a C function
nothing else in the pipeline calls), put on after the warm-up, so `--toggle-collect=functools_reduce`
collects exactly that processor's cost. Under cache simulation a 200-request pass takes tens of
minutes on a loaded 2-core machine; for a quicker where-does-it-go, sample it and keep the stacks
that hold the wrapper's frame (dwarf unwinding: CPython's frames carry no frame pointers):

    COSTCTX_CODEC=native perf record -F 2500 -e cpu-clock --call-graph dwarf,16384 \
        python bench/inherit_grind.py --target budget --passes 2
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def _call(_, pair):
    method, batch = pair
    return method(batch)


def wrap_for_toggle(stage, name: str) -> None:
    """Route the named processor's process_view through functools.reduce (see the docstring)."""
    named = {p.name: p for p in stage.pipeline.processors}
    if name not in named:
        raise SystemExit(f"--target {name}: not in the pipeline ({', '.join(named)})")
    target = named[name]
    original = target.process_view
    target.process_view = lambda batch: functools.reduce(_call, [(original, batch)], None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="100-span requests per pass")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--target", help="count this processor's process_view (toggle functools_reduce)")
    parser.add_argument("--complete", action="store_true", help="the complete workload (default: mixed)")
    parser.add_argument("--processors", help="comma-separated, in pipeline order; the default pipeline if omitted")
    args = parser.parse_args()
    processors = args.processors.split(",") if args.processors else list(DEFAULT_TRACE_PROCESSORS)
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=args.complete,
                                       batches=args.batches))
    stage = await build_stage(processors)
    time_pipeline(stage, fresh_ids(pool, 1))  # warm-up
    if args.target:
        wrap_for_toggle(stage, args.target)
    took = 0.0
    for round_ in range(args.passes):
        took += time_pipeline(stage, fresh_ids(pool, 2 + round_))
    stage.pipeline.shutdown()
    await stage.pipeline.close()
    spans = len(pool) * 100 * args.passes
    print(f"{spans} spans, {took / spans * 1e6:.1f} us/span (all processors, under the tool)")


if __name__ == "__main__":
    asyncio.run(main())
