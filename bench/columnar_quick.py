#!/usr/bin/env python
"""The processors after inherit as they run once inherit makes no span views: normalize,
limits, price, budget, envelope and settle (no inherit), least CPU time of several passes.

    COSTCTX_CODEC=native python bench/columnar_quick.py [--rounds 7] [--views]

`--views`: price is not `columnar`, so its first read makes every span's view (the state
before price, budget, envelope and settle read the lazy list): compare the two in alternating
runs. Without inherit, spans keep their missing context, so settle remembers many of them on
the mixed workload (its figure there is not the pipeline's); `sum` adds every processor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids, least_breakdown, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402

PROCESSORS = ["normalize", "limits", "price", "budget", "envelope", "settle"]


async def one_point(complete: bool, rounds: int, cycle_base: int) -> dict:
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
    spans = len(pool) * 100
    stage = await build_stage(PROCESSORS)
    time_pipeline(stage, fresh_ids(pool, cycle_base))  # warm-up
    least = least_breakdown(stage, pool, spans, rounds, cycle_base)
    stage.pipeline.shutdown()
    await stage.pipeline.close()
    out = {k: round(v, 2) for k, v in least.items()}
    out["sum"] = round(sum(least.values()), 2)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--views", action="store_true", help="price makes every view (the state before)")
    args = parser.parse_args()
    if args.views:
        from costctx.processors.price.processor import PriceProcessor

        PriceProcessor.columnar = False
    out = {"mixed": await one_point(False, args.rounds, 0), "complete": await one_point(True, args.rounds, 1000)}
    print(os.environ.get("COSTCTX_CODEC", "auto"), "views" if args.views else "columns", json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
