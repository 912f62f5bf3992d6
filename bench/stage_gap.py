#!/usr/bin/env python
"""Where the in-process stage spends what its processors do not: the gap between the whole
pipeline's CPU time and the sum of its processors' own, split into encode and the rest.

    COSTCTX_CODEC=native|python python bench/stage_gap.py [--rounds 7] [--complete]

The default pipeline at the default point (100 spans/batch, +4 attributes, 20 requests, fresh
ids per pass, as bench/inprocess.py runs it). Per pass, CPU time of: the whole pass
(`time_pipeline`), each processor's `process_view`/`process`, and the codec's encode as the
batch leaves (`ViewBatch.payload`). `rest` is the whole minus processors minus encode: the
pipeline's own lines, the batch's creation and freeing, the collector's steps and ticks.
Each figure is the least over `--rounds` passes (contention only adds time); us per span.
run.py's in-process figure is the whole minus the protobuf floor, so `gap` here is what it
holds beyond ne_quick's per-processor sum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids, time_floor, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def timed_pass(stage, bodies: list[bytes]) -> dict[str, float]:
    """One pass of `bodies`, seconds: whole, per processor, encode."""
    spent: dict[str, float] = {"encode": 0.0}
    restore = []
    for processor in stage.pipeline.processors:
        method = "process_view" if processor.on_view else "process"
        original = getattr(processor, method)
        restore.append((processor, method))
        spent[processor.name] = 0.0

        def wrapped(batch, _original=original, _name=processor.name):
            start = time.process_time()
            try:
                return _original(batch)
            finally:
                spent[_name] += time.process_time() - start

        setattr(processor, method, wrapped)
    codec = stage.pipeline.codec
    for name in ("encode", "encode_last"):
        original = getattr(codec, name, None)
        if original is None:
            continue
        restore.append((codec, name))

        def encode(view, edits, _original=original):
            start = time.process_time()
            try:
                return _original(view, edits)
            finally:
                spent["encode"] += time.process_time() - start

        setattr(codec, name, encode)
    try:
        spent["whole"] = time_pipeline(stage, bodies)
    finally:
        for owner, name in restore:
            delattr(owner, name)  # the class's method shows again
    return spent


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--complete", action="store_true", help="complete spans (no hold) instead of the mix")
    args = parser.parse_args(argv)
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=args.complete, batches=20))
    spans = len(pool) * 100
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    time_pipeline(stage, fresh_ids(pool, 0))  # warm-up
    least: dict[str, float] = {}
    for r in range(args.rounds):
        bodies = fresh_ids(pool, 1 + r)
        passes = timed_pass(stage, bodies)
        processors = sum(v for k, v in passes.items() if k not in ("whole", "encode"))
        passes["processors"] = processors
        passes["gap"] = passes["whole"] - processors
        passes["rest"] = passes["gap"] - passes["encode"]
        passes["floor"] = time_floor(bodies)
        for name, seconds in passes.items():
            us = seconds / spans * 1e6
            least[name] = min(us, least.get(name, us))
    stage.pipeline.shutdown()
    order = ["whole", "floor", "processors", "gap", "encode", "rest"]
    out = {name: round(least[name], 2) for name in order}
    out["each"] = {name: round(us, 2) for name, us in least.items() if name not in order}
    print(os.environ.get("COSTCTX_CODEC", "auto"), "complete" if args.complete else "mixed", json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
