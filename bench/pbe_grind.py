#!/usr/bin/env python
"""A driver for valgrind that counts one processor's process_view (Python and native alike)
over run.py's pool (200 requests of 100 spans, +4 attrs), fresh ids per pass, no timers.

    COSTCTX_CODEC=native valgrind --tool=callgrind --cache-sim=yes \\
        --toggle-collect='functools_reduce' \\
        python bench/pbe_grind.py --target price [--batches 200] [--passes 1] [--complete]

The target's process_view is called through `functools.reduce` (a C function nothing else in
the pipeline calls), so `--toggle-collect=functools_reduce` collects exactly its cost, warm-up
included only if you ask for it (it is not: the wrapper is put on after the warm-up pass).
Divide the counts by 100 * batches * passes for per span. Under cache simulation a pass of
200 requests takes tens of minutes on a loaded 2-core machine; for a quicker where-does-it-go,
sample it instead and keep the stacks that hold the wrapper's frame:

    COSTCTX_CODEC=native perf record -F 2500 -e cpu-clock --call-graph dwarf,16384 \
        python bench/pbe_grind.py --target budget --passes 2
    perf script -F ip,sym | (fold the stacks containing functools_reduce)

(dwarf unwinding: CPython's own frames carry no frame pointers, so -g alone loses the wrapper.)
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="the processor whose process_view is counted")
    parser.add_argument("--batches", type=int, default=200, help="100-span requests per pass")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--complete", action="store_true", help="the complete workload (default: mixed)")
    parser.add_argument("--processors", help="comma-separated, in pipeline order; the default pipeline if omitted")
    args = parser.parse_args()
    processors = args.processors.split(",") if args.processors else list(DEFAULT_TRACE_PROCESSORS)
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=args.complete,
                                       batches=args.batches))
    stage = await build_stage(processors)
    time_pipeline(stage, fresh_ids(pool, 1))  # warm-up
    target = next(p for p in stage.pipeline.processors if p.name == args.target)
    original = target.process_view
    target.process_view = lambda batch: functools.reduce(_call, [(original, batch)], None)
    took = 0.0
    for round_ in range(args.passes):
        took += time_pipeline(stage, fresh_ids(pool, 2 + round_))
    stage.pipeline.shutdown()
    await stage.pipeline.close()
    spans = len(pool) * 100 * args.passes
    print(f"{spans} spans, {took / spans * 1e6:.1f} us/span (all processors, under the tool)")


if __name__ == "__main__":
    asyncio.run(main())
