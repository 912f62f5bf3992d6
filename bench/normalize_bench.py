#!/usr/bin/env python
"""What the normalize processor costs, as ratios against the protobuf floor of the same run.

    python bench/normalize_bench.py [--spans 100] [--rounds 30]

Per workload (a batch of `--spans` spans, 12 attributes each):
- floor: parse the request, build the shared span index, serialize: paid by every sidecar;
- normalize: the same plus the normalize processor.
Reports the median round of each and normalize's extra time as a fraction of the floor.
Also compares ways to skip a batch with no aliased key: `in` per alias key over the raw
bytes, one regex over the raw bytes, and the per-span set check the processor uses.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.requests import build_request  # noqa: E402
from costctx.component.host import Host  # noqa: E402
from costctx.pdata import TraceBatch  # noqa: E402
from costctx.processors.normalize.processor import NormalizeConfig, NormalizeProcessor  # noqa: E402
from costctx.survival.recorder import SurvivalRecorder  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402

PLAIN = {"http.route": "/v1/chat", "http.request.method": "POST", "http.response.status_code": 200,
         "server.address": "api.internal", "url.scheme": "https", "workflow.id": "wf-1", "request.id": "r-1",
         "owner.tenant": "acme", "owner.feature": "chat", "net.peer.port": 443, "thread.id": 7, "code.lineno": 12}
HTTP_ONLY = {f"http.attr.{i}": i for i in range(12)}
CANONICAL = {**dict(list(PLAIN.items())[:5]), "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
             "gen_ai.response.model": "gpt-4o-1", "gen_ai.usage.input_tokens": 120,
             "gen_ai.usage.output_tokens": 30, "gen_ai.operation.name": "chat", "owner.tenant": "acme"}
OPENINFERENCE = {**dict(list(PLAIN.items())[:5]), "llm.system": "openai", "llm.model_name": "gpt-4o-1",
                 "llm.token_count.prompt": 120, "llm.token_count.completion": 30, "llm.token_count.total": 150,
                 "openinference.span.kind": "LLM", "owner.tenant": "acme"}
WORKLOADS = {"http (no watched key)": HTTP_ONLY, "context (no aliased key)": PLAIN,
             "canonical LLM": CANONICAL, "OpenInference LLM": OPENINFERENCE}


def one_round(raw: bytes, processor: NormalizeProcessor | None) -> float:
    start = time.perf_counter()
    request = ExportTraceServiceRequest()
    request.ParseFromString(raw)
    batch = TraceBatch(request, raw)
    _ = batch.records
    if processor is not None:
        processor.process(batch)
    batch.request.SerializeToString()
    return time.perf_counter() - start


def median_rounds(fn, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    processor = NormalizeProcessor("normalize", NormalizeConfig(), Host(SidecarMetrics(),
                                                                                   SurvivalRecorder()))
    print(f"{args.spans} spans per batch, 12 attributes per span, median of {args.rounds} rounds")
    print(f"{'workload':26} {'floor us':>9} {'+normalize us':>14} {'extra/floor':>12} {'us/span':>8}")
    for name, attributes in WORKLOADS.items():
        raw = build_request([attributes], args.spans)
        floors, fulls = [], []
        for _ in range(args.rounds):  # alternate, so a load spike hits both
            floors.append(one_round(raw, None))
            fulls.append(one_round(raw, processor))
        floor, full = statistics.median(floors), statistics.median(fulls)
        print(f"{name:26} {floor * 1e6:9.0f} {full * 1e6:14.0f} {(full - floor) / floor:12.1%} "
              f"{(full - floor) / args.spans * 1e6:8.2f}")

    # Skipping a batch with no aliased key: three ways, on the plain workload's bytes.
    raw = build_request([HTTP_ONLY], args.spans)
    table = processor._base
    keys = sorted(table.alias_keys())
    needles = [k.encode() for k in keys]
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    request = ExportTraceServiceRequest()
    request.ParseFromString(raw)
    records = TraceBatch(request, raw).records
    watch = table.spans.rules.keys()
    alias_set = frozenset(watch)

    def per_key_in() -> float:
        t = time.perf_counter()
        any(n in raw for n in needles)
        return time.perf_counter() - t

    def regex() -> float:
        t = time.perf_counter()
        pattern.search(raw)
        return time.perf_counter() - t

    def per_span_set() -> float:
        t = time.perf_counter()
        for rec in records:
            alias_set.isdisjoint(rec.attrs)
        return time.perf_counter() - t

    print(f"\nskip check for a batch with no aliased key ({len(raw)} bytes, {len(needles)} alias keys):")
    for label, fn in (("`in` per alias key on raw", per_key_in), ("one regex on raw", regex),
                      ("per-span isdisjoint (used)", per_span_set)):
        print(f"  {label:28} {median_rounds(fn, args.rounds * 10) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
