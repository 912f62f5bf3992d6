#!/usr/bin/env python
"""The budget processor's us/span at the default point, measured as `run.py` measures it: the
in-process sweep's mixed points first, then the complete-span point, in one process, on every
codec in the same rounds (bench/inprocess.measure), plus the garbage collections that ran
inside budget's timed window of the per-processor pass and what they cost.

    python bench/budget_points.py [--points 6] [--codecs native,python]

Why the collections: the per-processor figures come from one pass per point, so a collection
(young generations hold whatever the process allocated since, from every stage alive) that
fires inside a processor is charged to it. Budget allocates the most per span, so it is where
they usually fire; compare its figure with and without the collection time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import inprocess  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

POINTS = [(100, 4), (10, 4), (512, 4), (100, 0), (100, 16), (100, 48)]  # run.py's in-process sweep


class BudgetWindowCollections:
    """Time spent in garbage collections while a budget processor's process_view runs."""

    def __init__(self) -> None:
        self.inside: str | None = None
        self.started = 0.0
        self.seconds: dict[str, float] = {}
        self.count: dict[str, int] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if self.inside is None:
            return
        if phase == "start":
            self.started = time.process_time()
        else:
            self.seconds[self.inside] = self.seconds.get(self.inside, 0.0) + time.process_time() - self.started
            self.count[self.inside] = self.count.get(self.inside, 0) + 1

    def watch(self, stage: inprocess.StagePipeline) -> None:
        budget = next(p for p in stage.pipeline.processors if p.type_name == "budget")
        name = stage.pipeline.codec.name
        original = budget.process_view

        def watched(batch):
            self.inside = name
            try:
                return original(batch)
            finally:
                self.inside = None

        budget.process_view = watched


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=len(POINTS), help="mixed points before the complete one")
    parser.add_argument("--codecs", default="native,python")
    args = parser.parse_args()
    codecs = args.codecs.split(",")
    collections = BudgetWindowCollections()
    breakdown = inprocess.processor_breakdown

    def watched_breakdown(stage, bodies, spans):
        collections.watch(stage)  # only the per-processor pass, where the figures come from
        return breakdown(stage, bodies, spans)

    inprocess.processor_breakdown = watched_breakdown
    plan = [(POINTS[i % len(POINTS)], False) for i in range(args.points)] + [((100, 4), True)]
    for i, ((batch, attrs), complete) in enumerate(plan):
        spec = WorkloadSpec(spans_per_batch=batch, extra_attrs=attrs, complete=complete,
                            batches=max(20, 20_000 // batch))
        requests = build_requests(spec)[: max(1, 6_000 // batch)]
        collections.seconds.clear()
        collections.count.clear()
        result = asyncio.run(inprocess.measure(requests, batch, list(DEFAULT_TRACE_PROCESSORS), 5,
                                               cycle_base=60_000 if complete else 50_000 + i * 100, codecs=codecs))
        spans = result["spans_per_round"]
        for name, figures in result["by_codec"].items():
            budget = figures["processor_us_per_span_each"]["budget"]
            in_gc = collections.seconds.get(name, 0.0) / spans * 1e6
            print(f"{'complete' if complete else 'mixed'} b{batch} a{attrs} {name}: processors "
                  f"{figures['processor_us_per_span']:.1f} us/span, budget {budget:.2f} us/span of which "
                  f"{in_gc:.2f} in {collections.count.get(name, 0)} garbage collection(s)", flush=True)


if __name__ == "__main__":
    main()
