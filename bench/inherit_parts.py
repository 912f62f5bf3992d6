#!/usr/bin/env python
"""Where inherit's time goes in the whole pipeline, by part, with plain timers (no profiler).

    COSTCTX_CODEC=native python bench/inherit_parts.py [--rounds 10] [--kinds] [--batches 20]

The default pipeline runs on the bench workload (100 spans/batch, +4 attrs, mixed then
complete, fresh ids per pass, as bench/ne_quick.py); inherit's process_view and the calls it
makes are wrapped with perf_counter timers: the native readers (read_batch: read_spans and
own_groups in one pass; parent_first), the kernel's begin / list_level / run / end, the Python
path (_resolve, _apply, _decide_rest), the hold (_detach, _release_into), _flush and the
registry's learn_batch.
`view` is the SpanViews made for inherit (ViewBatch.view before process_view runs). Figures
are us per span, summed over the passes (the wrappers add ~0.1 us per call).

A sampling profiler (pyinstrument, bench/profile_stage.py) puts much of the kernel's time
(a native call that calls no Python function) on process_view's own lines: these timers
read it where it is.

`--batches`: requests per pass (100 spans each); run.py's pool and the live sidecar see 200,
where the kernel's tables and the request bytes outgrow the caches (bench/ne_quick.py).
`--kinds`: the kernel's run timed per entry of a level, by kind (a span alone, a pair, a unit
of three or more, and entries it stops at), us per span decided (per call for stops).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import costctx.processors.inherit.processor as inherit_module  # noqa: E402
from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

spent: Counter = Counter()
counts: Counter = Counter()


def timed(name: str, function):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return call


class TimedKernel:
    """The kernel with its calls timed (`kinds`: run entry by entry, by kind)."""

    def __init__(self, kernel, kinds: bool) -> None:
        self.kernel = kernel
        self.kinds = kinds
        self.begin = timed("kernel.begin", kernel.begin)
        self.end = timed("kernel.end", kernel.end)
        self.list_level = timed("kernel.list_level", kernel.list_level)
        self._run = timed("kernel.run", kernel.run)

    def run(self, listed, start: int) -> int:
        if not self.kinds:
            return self._run(listed, start)
        for at in range(start, len(listed)):
            entry = listed[at]
            kind = "alone" if type(entry) is tuple else ("pair" if len(entry) < 12 else "unit")
            spans = 1 if kind == "alone" else (len(entry) - 3) // 3
            began = time.perf_counter()
            stopped = self.kernel.run([entry], 0)
            took = time.perf_counter() - began
            spent["kernel.run"] += took
            if stopped == 2:
                spent[f"run: {kind}"] += took
                counts[f"run: {kind}"] += spans
            else:
                spent[f"run: {kind} (stop)"] += took
                counts[f"run: {kind} (stop)"] += 1
                return 2 * at + stopped
        return 2 * len(listed)


async def one_point(complete: bool, rounds: int, kinds: bool, batches: int = 20) -> dict[str, float]:
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=batches))
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    inherit = next(p for p in stage.pipeline.processors if p.type_name == "inherit")
    originals = {name: getattr(inherit_module, name)
                 for name in ("native_read_batch", "native_parent_first")}
    for name, function in originals.items():
        setattr(inherit_module, name, timed(name.removeprefix("native_"), function))
    try:
        for name in ("_flush", "_release_into", "_detach", "_decide_rest", "_resolve", "_apply"):
            setattr(inherit, name, timed(name, getattr(inherit, name)))
        inherit.registry.learn_batch = timed("learn_batch", inherit.registry.learn_batch)
        if inherit._kernel is not None:
            inherit._kernel = TimedKernel(inherit._kernel, kinds)
        process_view = timed("process_view", inherit.process_view)

        def viewed(batch):
            start = time.perf_counter()
            batch.view  # noqa: B018 (the SpanViews inherit makes, timed apart)
            spent["view"] += time.perf_counter() - start
            return process_view(batch)

        inherit.process_view = viewed
        time_pipeline(stage, fresh_ids(pool, 1))  # warm-up
        spent.clear()
        counts.clear()
        for round_ in range(rounds):
            time_pipeline(stage, fresh_ids(pool, 2 + round_))
    finally:
        for name, function in originals.items():
            setattr(inherit_module, name, function)
        stage.pipeline.shutdown()
        await stage.pipeline.close()
    spans = len(pool) * 100 * rounds
    out = {}
    for name, seconds in spent.most_common():
        per = counts.get(name, spans)
        out[name] = round(seconds / max(per, 1) * 1e6, 2)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kinds", action="store_true", help="time the kernel's run per entry kind")
    parser.add_argument("--batches", type=int, default=20, help="100-span requests per pass (run.py's pool: 200)")
    args = parser.parse_args()
    for complete in (False, True):
        figures = await one_point(complete, args.rounds, args.kinds, args.batches)
        print("complete" if complete else "mixed", figures)


if __name__ == "__main__":
    asyncio.run(main())
