#!/usr/bin/env python
"""What the price processor costs, as ratios against the protobuf floor of the same run.

    python bench/price_bench.py [--spans 100] [--rounds 30]

Per workload (a batch of `--spans` spans):
- floor: parse the request, build the shared span index, serialize: paid by every sidecar;
- price: the same plus the price processor (resolution cached per model, exact pico-USD
  arithmetic, workflow running total, de-duplication by span id).
Reports the median round of each and price's extra time as a fraction of the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.requests import build_request  # noqa: E402
from costctx.component.host import Host  # noqa: E402
from costctx.pdata import TraceBatch  # noqa: E402
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


def run_once(payload: bytes, processor: PriceProcessor | None) -> float:
    start = time.perf_counter()
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    batch = TraceBatch(request, raw=payload)
    _ = batch.records
    if processor is not None:
        processor.process(batch)
    batch.request.SerializeToString()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the unknown-model workload warns once; keep output clean
    context = Host(metrics=SidecarMetrics(), survival=SurvivalRecorder())
    processor = PriceProcessor("price", PriceConfig(), context)
    print(f"{args.spans} spans per batch, median of {args.rounds} rounds")
    print(f"{'workload':28} {'floor us':>10} {'price us':>10} {'extra':>8}")
    for name, mix in WORKLOADS.items():
        payloads = [build_request(mix, args.spans, trace_round=r) for r in range(args.rounds * 2)]
        # Interleaved, so a busy neighbour slows both sides of the ratio alike.
        floor, priced = [], []
        for r in range(args.rounds):
            floor.append(run_once(payloads[2 * r], None))
            priced.append(run_once(payloads[2 * r + 1], processor))
        f, p = statistics.median(floor), statistics.median(priced)
        print(f"{name:28} {f * 1e6:10.0f} {p * 1e6:10.0f} {(p - f) / f:8.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
