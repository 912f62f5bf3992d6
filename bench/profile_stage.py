#!/usr/bin/env python
"""Profile the in-process processor stage with pyinstrument, on the benchmark's workload.

    python bench/profile_stage.py [--batch 100] [--attrs 4] [--processors normalize,inherit] [--html out.html]

Prints the call tree of parse + pipeline (+ serialize) over the same batches `run.py` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyinstrument import Profiler  # noqa: E402

from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


async def main_async(args: argparse.Namespace) -> None:
    processors = args.processors.split(",") if args.processors else list(DEFAULT_TRACE_PROCESSORS)
    pool = build_requests(WorkloadSpec(spans_per_batch=args.batch, extra_attrs=args.attrs,
                                       complete=args.complete, batches=max(20, args.spans // args.batch)))
    stage = await build_stage(processors)
    time_pipeline(stage, fresh_ids(pool, 1))  # warm up
    profiler = Profiler(interval=0.0005)
    profiler.start()
    elapsed = sum(time_pipeline(stage, fresh_ids(pool, 2 + r)) for r in range(args.rounds))
    profiler.stop()
    spans = len(pool) * args.batch * args.rounds
    print(f"{processors}: {spans / elapsed:,.0f} spans/s ({elapsed / spans * 1e6:.2f} us/span)")
    if args.html:
        Path(args.html).write_text(profiler.output_html())
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--attrs", type=int, default=4)
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--complete", action="store_true")
    parser.add_argument("--processors", help="comma-separated; the registry's defaults if omitted")
    parser.add_argument("--html")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
