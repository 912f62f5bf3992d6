#!/usr/bin/env python
"""envelope's per-batch reading (`read_shapes`) alone, Rust and Python, on what the envelope
processor meets in the default pipeline at the default point (100 spans/batch, +4 attrs).

    python bench/envelope_read_bench.py [--rounds 7] [--batches 20]

The pipeline runs once with the native codec, each batch's `read_shapes` arguments kept; then
each implementation is timed over them (least CPU time of `--rounds` passes, us/span). Spans
are stamped by the first call, so the timed calls find them stamped (no stamp written): the
figures are the reading, counting and tallying. `process_view` as a whole: bench/ne_quick.py.
`--batches`: requests per pass (100 spans each); 200 is run.py's pool, where the spans' dicts
outgrow the caches (as the live sidecar sees them).
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
os.environ["COSTCTX_CODEC"] = "native"

from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.processors.envelope import processor as envelope_processor  # noqa: E402
from costctx.processors.envelope.shapes import native_read_shapes, read_shapes  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def least(function, calls: list[tuple], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for args in calls:
            function(*args)
        best = min(best, time.process_time() - start)
    return best


async def one_point(complete: bool, rounds: int, batches: int = 20) -> dict:
    calls: list[tuple] = []

    def keep(*args):
        calls.append(args)
        return native_read_shapes(*args)

    envelope_processor.native_read_shapes = keep
    try:
        pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=batches))
        stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
        time_pipeline(stage, fresh_ids(pool, 0))
        stage.pipeline.shutdown()
        await stage.pipeline.close()
    finally:
        envelope_processor.native_read_shapes = native_read_shapes
    spans = sum(len(args[3]) for args in calls)  # (rows, row keys, columns, indices, ...)
    return {name: round(least(function, calls, rounds) / spans * 1e6, 3)
            for name, function in (("native", native_read_shapes), ("python", read_shapes))}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    if native_read_shapes is None:
        sys.exit("costctx_native is not built")
    print(json.dumps({"mixed": await one_point(False, args.rounds, args.batches),
                      "complete": await one_point(True, args.rounds, args.batches)}))


if __name__ == "__main__":
    asyncio.run(main())
