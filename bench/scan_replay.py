#!/usr/bin/env python
"""What the receive side's scan and the release of its records cost, alone, on the big pool.

    COSTCTX_CODEC=native|python python bench/scan_replay.py [--requests 200] [--passes 8] [--hold]

Builds the default pipeline (for its codec and watched keys), then per pass scans each of the
`--requests` requests of the bench workload (100 spans/batch, +4 attributes; fresh ids per pass)
as the traces pipeline's `received` does, in CPU time of this process, and releases the batches:
right after each scan (as the pipeline does once a request left; the records still in the
caches), or with `--hold` all at the end of the pass (what is freed is cold). Prints per pass
the us per span of the scans and of the releases, and the least of each. With 200 requests a
pass touches what run.py's pool of 20,000 spans does (the records outgrow the caches).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def one_pass(received, bodies: list[bytes], hold: bool) -> tuple[float, float]:
    """(scan seconds, release seconds) of one pass in this process's CPU time."""
    clock = time.process_time
    scanned = freed = 0.0
    kept = []
    for body in bodies:
        start = clock()
        batch = received(body)
        scanned += clock() - start
        if hold:
            kept.append(batch)
            continue
        start = clock()
        del batch
        freed += clock() - start
    start = clock()
    kept.clear()
    return scanned, freed + clock() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--hold", action="store_true", help="release every batch at the end of the pass")
    args = parser.parse_args()
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=args.requests))
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    received = stage.pipeline.received
    spans = sum(received(body).span_count() for body in pool)
    scans, frees = [], []
    for n in range(args.passes):
        bodies = fresh_ids(pool, 10 + n)
        scanned, freed = one_pass(received, bodies, args.hold)
        scans.append(scanned * 1e6 / spans)
        frees.append(freed * 1e6 / spans)
    name = stage.pipeline.codec.name
    print(f"{name} scan, us/span: " + ", ".join(f"{x:.3f}" for x in scans) + f" (least {min(scans):.3f})")
    print(f"{name} release, us/span: " + ", ".join(f"{x:.3f}" for x in frees) + f" (least {min(frees):.3f})")


if __name__ == "__main__":
    asyncio.run(main())
