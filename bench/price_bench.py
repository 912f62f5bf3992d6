#!/usr/bin/env python
"""What the price processor costs, as ratios against the codec floor of the same run.

    python bench/price_bench.py [--spans 100] [--rounds 30]     # per workload, on the view
    python bench/price_bench.py --stage [--rounds 9]            # price, limits, settle in the pipeline

Per workload (a batch of `--spans` spans), on the codec COSTCTX_CODEC selects:
- floor: scan the request into the batch view, encode it back: paid by every sidecar;
- price: the same plus the price processor on the view (rates once per distinct model names,
  exact pico-USD arithmetic, workflow running total, de-duplication by span id).
Reports the median round of each and price's extra time in us per span.

`--stage`: the bench workload (bench/workload.py, 100 spans/batch, +4 attributes, mixed and
complete spans) through every default processor in process, CPU us per span in price, limits
and settle (bench/inprocess.processor_breakdown), the minimum and median over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.requests import build_request  # noqa: E402
from costctx.component.host import Host  # noqa: E402
from costctx.pdata.codec import select_codec  # noqa: E402
from costctx.pdata.view_batch import ViewBatch  # noqa: E402
from costctx.processors.price.processor import PriceConfig, PriceProcessor  # noqa: E402
from costctx.survival.recorder import SurvivalRecorder  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402

PLAIN = {"http.route": "/v1/chat", "http.request.method": "POST", "http.response.status_code": 200,
         "server.address": "api.internal", "workflow.id": "wf-1", "request.id": "r-1",
         "owner.tenant": "acme", "owner.feature": "chat", "thread.id": 7, "code.lineno": 12}
LLM = {**PLAIN, "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
       "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1200,
       "gen_ai.usage.cache_read.input_tokens": 400, "gen_ai.usage.output_tokens": 300}
UNKNOWN = {**LLM, "gen_ai.response.model": "mystery-model", "gen_ai.request.model": "mystery-model"}
WORKLOADS = {"plain (no GenAI key)": [PLAIN], "1 LLM span in 10": [LLM] + [PLAIN] * 9,
             "LLM spans, priced": [LLM], "LLM spans, unknown model": [UNKNOWN]}


def run_once(codec, payload: bytes, watched: frozenset[str], processor: PriceProcessor | None) -> float:
    start = time.perf_counter()
    batch = ViewBatch(codec, payload, watched)
    _ = batch.view
    if processor is not None:
        processor.process_view(batch)
    batch.payload()
    return time.perf_counter() - start


def stage(rounds: int) -> None:
    import asyncio

    from bench.inprocess import build_stage, fresh_ids, processor_breakdown, time_pipeline
    from bench.workload import WorkloadSpec, build_requests
    from costctx.service.registry import DEFAULT_TRACE_PROCESSORS

    async def run() -> None:
        for complete in (False, True):
            pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
            built = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
            time_pipeline(built, fresh_ids(pool, 1))  # warm up
            seen: dict[str, list[float]] = {}
            for r in range(rounds):
                for name, us in processor_breakdown(built, fresh_ids(pool, 2 + r), len(pool) * 100).items():
                    seen.setdefault(name, []).append(us)
            label = "complete" if complete else "mixed"
            print(f"{built.pipeline.codec.name} {label:8} " + "  ".join(
                f"{name} {min(seen[name]):.2f} / {statistics.median(seen[name]):.2f}"
                for name in ("limits", "price", "settle")) + "   (us/span, min / median)")

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stage", action="store_true", help="price, limits and settle in the default pipeline")
    args = parser.parse_args()
    if args.stage:
        stage(min(args.rounds, 9))
        return 0
    import logging

    logging.disable(logging.WARNING)  # the unknown-model workload warns once; keep output clean
    context = Host(metrics=SidecarMetrics(), survival=SurvivalRecorder())
    processor = PriceProcessor("price", PriceConfig(), context)
    codec = select_codec()
    watched = processor.watched_keys()
    print(f"{args.spans} spans per batch, median of {args.rounds} rounds, {codec.name} codec")
    print(f"{'workload':28} {'floor us':>10} {'price us':>10} {'us/span':>8}")
    for name, mix in WORKLOADS.items():
        payloads = [build_request(mix, args.spans, trace_round=r) for r in range(args.rounds * 2)]
        # Interleaved, so a busy neighbour slows both sides of the ratio alike.
        floor, priced = [], []
        for r in range(args.rounds):
            floor.append(run_once(codec, payloads[2 * r], watched, None))
            priced.append(run_once(codec, payloads[2 * r + 1], watched, processor))
        f, p = statistics.median(floor), statistics.median(priced)
        print(f"{name:28} {f * 1e6:10.0f} {p * 1e6:10.0f} {(p - f) / args.spans * 1e6:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
