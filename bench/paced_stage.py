#!/usr/bin/env python
"""The in-process stage back to back and paced as the sidecar sees requests at 10,000 spans/s.

    python bench/paced_stage.py [--gap-ms 9] [--rounds 2] [--requests 100]

bench/inprocess.py runs requests back to back: the processors' code and tables stay in the
CPU's caches. The sidecar at 10,000 spans/s offered gets one 100-span request every 10 ms, and
between two of them runs gRPC, the event loop and (on a shared machine) other processes. Here
the same pipeline, the same requests (the 200-request bench pool, fresh ids per round), once
back to back and once with `--gap-ms` of sleep before each request (the sleep is not counted:
CPU time of this process), in alternating rounds. The difference is what running cold costs,
with no sidecar code involved: most of what the sidecar's CPU per span is above the in-process
figure plus the processors-off path (bench/cpu_account.py times it inside the sidecar).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import inprocess  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def run(stage: inprocess.StagePipeline, bodies: list[bytes], gap: float, breakdown: bool) -> float | dict:
    """One request at a time after `gap` s: CPU us/span of the whole pipeline (as
    inprocess.time_pipeline times it), or with `breakdown` per processor (its timers cost a little)."""
    spans = len(bodies) * 100
    total = 0.0
    each: dict[str, float] = {}
    for i, body in enumerate(bodies):
        if gap:
            time.sleep(gap)
        if breakdown:
            for name, us in inprocess.processor_breakdown(stage, [body], spans).items():
                each[name] = each.get(name, 0.0) + us
        else:
            total += inprocess.time_pipeline(stage, [body])
        if i % 10 == 9:
            stage.pipeline.tick(time.monotonic())  # the sidecar's ticker: every 100 ms at 10,000 spans/s
    return each if breakdown else total / spans * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gap-ms", type=float, default=9.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=100, help="requests per round")
    args = parser.parse_args()
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=200))
    stage = await inprocess.build_stage(list(DEFAULT_TRACE_PROCESSORS))
    inprocess.time_pipeline(stage, inprocess.fresh_ids(pool, 999))  # warm-up: tables filled
    for r in range(args.rounds):
        for gap in (0.0, args.gap_ms / 1000):
            cycle = 1000 + 4 * r + 2 * (gap > 0)
            total = run(stage, inprocess.fresh_ids(pool, cycle)[: args.requests], gap, False)
            each = run(stage, inprocess.fresh_ids(pool, cycle + 1)[: args.requests], gap, True)
            print(f"gap {gap * 1000:4.1f} ms: pipeline {total:6.2f} us/span; per processor "
                  + ", ".join(f"{k} {v:.2f}" for k, v in each.items()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
