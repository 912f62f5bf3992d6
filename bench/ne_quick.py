#!/usr/bin/env python
"""The scan, normalize and envelope at the default point, as the least CPU time of several passes.

    COSTCTX_CODEC=native|python python bench/ne_quick.py [--rounds 7]

The whole default pipeline runs (so envelope sees what inherit and price left), each pass
with fresh ids as bench/inprocess.py does, each processor's `process_view` timed; the least
time of `--rounds` passes per processor is reported (on a shared machine contention only
adds time). `scan` is the codec's scan alone of the same requests with the pipeline's
watched keys: normalize's figure includes it, being the first processor on the view.
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

from bench.inprocess import build_stage, fresh_ids, processor_breakdown, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


async def one_point(complete: bool, rounds: int, cycle_base: int) -> dict:
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
    spans = len(pool) * 100
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    time_pipeline(stage, fresh_ids(pool, cycle_base))  # warm-up
    least: dict[str, float] = {}
    for r in range(rounds):
        for name, us in processor_breakdown(stage, fresh_ids(pool, cycle_base + 1 + r), spans).items():
            least[name] = min(us, least.get(name, us))
    codec, watched = stage.pipeline.codec, stage.pipeline.watched
    scan = []
    for _ in range(rounds):
        start = time.process_time()
        for raw in pool:
            codec.scan(raw, watched)
        scan.append(time.process_time() - start)
    stage.pipeline.shutdown()
    await stage.pipeline.close()
    return {"scan": round(min(scan) / spans * 1e6, 2), **{k: round(v, 2) for k, v in least.items()}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    out = {"mixed": await one_point(False, args.rounds, 0),
           "complete": await one_point(True, args.rounds, 1000)}
    print(os.environ.get("COSTCTX_CODEC", "auto"), json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
