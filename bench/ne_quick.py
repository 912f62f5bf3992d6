#!/usr/bin/env python
"""The scan, normalize and envelope at the default point, as the least CPU time of several passes.

    COSTCTX_CODEC=native|python python bench/ne_quick.py [--rounds 7] [--processors normalize,price] [--batches 20]

The whole default pipeline runs (so envelope sees what inherit and price left), each pass
with fresh ids as bench/inprocess.py does, each processor's `process_view` timed; the least
time of `--rounds` passes per processor is reported (on a shared machine contention only
adds time). `scan` is the codec's scan alone of the same requests with the pipeline's
watched keys: normalize's figure includes it, being the first processor on the view.
`--processors` runs those alone (in pipeline order, e.g. without inherit); `views` is the
number of SpanViews each processor made per span (the native codec's lazy list), 0 when
it read columns and records only.
`--batches`: requests per pass (100 spans each). 20 keeps a pass's state in the caches; run.py's
in-process point and the live sidecar see 200 (its pool of 20,000 spans), where inherit costs
about twice as much per span on the same code (its tables outgrow the caches).
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

from bench.inprocess import build_stage, fresh_ids, least_breakdown, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def _made(batch) -> int:
    """SpanViews made so far in the batch's view (every span once its list is a plain list)."""
    view = getattr(batch, "_view", None)
    if view is None:
        return 0
    spans = view.spans
    made = getattr(spans, "made_count", None)
    return made() if made is not None else len(spans)


def views_made(stage, bodies: list[bytes], spans: int) -> dict[str, float]:
    """SpanViews each processor made, per span of `bodies` (a pass with process_view wrapped)."""
    made: dict[str, int] = {}
    originals = []
    for processor in stage.pipeline.processors:
        if not processor.on_view:
            continue
        original = processor.process_view
        originals.append((processor, original))
        made[processor.name] = 0

        def counted(batch, _original=original, _name=processor.name):
            before = _made(batch)
            out = _original(batch)
            made[_name] += _made(out) - before if out is batch else 0
            return out

        processor.process_view = counted
    try:
        time_pipeline(stage, bodies)
    finally:
        for processor, original in originals:
            processor.process_view = original
    return {name: round(count / spans, 2) for name, count in made.items()}


async def one_point(complete: bool, rounds: int, cycle_base: int, processors: list[str], batches: int = 20) -> dict:
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=batches))
    spans = len(pool) * 100
    stage = await build_stage(processors)
    time_pipeline(stage, fresh_ids(pool, cycle_base))  # warm-up
    least = least_breakdown(stage, pool, spans, rounds, cycle_base)
    codec, watched = stage.pipeline.codec, stage.pipeline.watched
    scan = []
    for _ in range(rounds):
        start = time.process_time()
        for raw in pool:
            codec.scan(raw, watched)
        scan.append(time.process_time() - start)
    views = views_made(stage, fresh_ids(pool, cycle_base + 1 + rounds), spans)
    stage.pipeline.shutdown()
    await stage.pipeline.close()
    return {"scan": round(min(scan) / spans * 1e6, 2), **{k: round(v, 2) for k, v in least.items()},
            "views": views}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--processors", help="comma-separated, in pipeline order; the default pipeline if omitted")
    parser.add_argument("--batches", type=int, default=20, help="100-span requests per pass (run.py's pool: 200)")
    args = parser.parse_args()
    processors = args.processors.split(",") if args.processors else list(DEFAULT_TRACE_PROCESSORS)
    out = {"mixed": await one_point(False, args.rounds, 0, processors, args.batches),
           "complete": await one_point(True, args.rounds, 1000, processors, args.batches)}
    print(os.environ.get("COSTCTX_CODEC", "auto"), json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
