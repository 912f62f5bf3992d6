#!/usr/bin/env python
"""The in-process stage at the default point, about a minute: processors us/span on the mixed
workload and on complete spans, beside the same-run protobuf floor, and per processor.

    COSTCTX_CODEC=native|python python bench/stage_quick.py

The same measurement as figure 4 of `run.py` (bench/inprocess.measure: 100 spans/batch, +4
attributes, 20 requests, 5 alternating rounds, median, CPU time of this process), on the codec
the environment selects, without the end-to-end figures: the loop to run while changing a processor.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import measure  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


async def main() -> None:
    out = {}
    for complete in (False, True):
        pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
        result = await measure(pool, 100, list(DEFAULT_TRACE_PROCESSORS), 5, 1000 if complete else 0)
        out["complete" if complete else "mixed"] = {
            "processors_us_per_span": round(result["processor_us_per_span"], 2),
            "floor_us_per_span": round(result["floor_us_per_span"], 2),
            "each": {name: round(us, 1) for name, us in result["processor_us_per_span_each"].items()},
            "delivered": result["spans_delivered_full"],
            "expected": result["spans_expected_full"],
        }
    print(os.environ.get("COSTCTX_CODEC", "auto"), json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
