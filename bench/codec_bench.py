#!/usr/bin/env python
"""The codecs side by side, per span, in one run: native (Rust) vs Python codec vs protobuf.

    python bench/codec_bench.py [--batches 20] [--spans 100] [--rounds 7] [--write-requests DIR]

Over the bench workload (bench/workload.py: agent traces, `--spans` spans a batch), the
fastest of `--rounds` passes (on a shared machine contention only adds time) of:
- protobuf parse: ExportTraceServiceRequest.FromString (upb);
- protobuf parse + serialize: the floor every protobuf-based sidecar pays;
- <codec> scan: bytes -> BatchView with the watched keys decoded;
- <codec> encode: one pass writing the edits of a typical processor chain back (a float
  stamped on every span, a rename on the spans with an old key), on views scanned before;
- <codec> scan + edits + encode: the whole round trip, building the edits included.
The Python codec is measured when `costctx.pdata.codec.python` is in the tree.
`--write-requests DIR` also writes the requests as files for the Rust-side comparison
(native/examples/compare_prost.rs: the walker against prost).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.pdata.codec.api import BatchEdits  # noqa: E402

# The keys processors read (envelope, normalize aliases, price inputs); filler app.* and
# http.* attributes are not watched.
WATCHED = frozenset({
    "service.name", "workflow.id", "workflow.name", "owner.team", "owner.tenant", "owner.user",
    "owner.feature", "request.id", "policy.id", "retry.attempt", "gen_ai.system", "gen_ai.provider.name",
    "gen_ai.request.model", "gen_ai.response.model", "gen_ai.operation.name", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cost", "llm.model_name", "llm.system",
    "llm.vendor", "llm.request.model", "llm.response.model", "llm.token_count.prompt",
    "llm.token_count.completion", "llm.usage.prompt_tokens", "llm.usage.completion_tokens",
    "openinference.span.kind", "costctx.cost_usd",
})


def typical_edits(view) -> BatchEdits:
    edits = BatchEdits()
    for i, span in enumerate(view.spans):
        e = edits.span(i)
        e.sets.append(("costctx.cost_usd", 0.00125))
        if "gen_ai.system" in span.attrs:
            e.renames.append(("gen_ai.system", "gen_ai.provider.name"))
    return edits


def best(rounds: int, fn) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def codecs() -> list:
    found = []
    try:
        from costctx.pdata.codec.native import AVAILABLE, NativeCodec

        if AVAILABLE:
            found.append(NativeCodec())
    except ImportError:
        pass
    try:
        from costctx.pdata.codec.python import PythonCodec

        found.append(PythonCodec())
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write-requests", type=Path)
    args = parser.parse_args()

    requests = build_requests(WorkloadSpec(batches=args.batches, spans_per_batch=args.spans))
    spans = sum(
        len(ss.spans)
        for raw in requests
        for rs in ExportTraceServiceRequest.FromString(raw).resource_spans
        for ss in rs.scope_spans
    )
    if args.write_requests:
        args.write_requests.mkdir(parents=True, exist_ok=True)
        for i, raw in enumerate(requests):
            (args.write_requests / f"request-{i:03d}.bin").write_bytes(raw)

    def per_span(seconds: float) -> float:
        return seconds / spans * 1e6

    rows: list[tuple[str, float]] = []

    def parse():
        for raw in requests:
            ExportTraceServiceRequest.FromString(raw)

    def parse_serialize():
        for raw in requests:
            ExportTraceServiceRequest.FromString(raw).SerializeToString()

    rows.append(("protobuf parse", per_span(best(args.rounds, parse))))
    floor = per_span(best(args.rounds, parse_serialize))
    rows.append(("protobuf parse + serialize", floor))
    for codec in codecs():
        def scan(codec=codec):
            for raw in requests:
                codec.scan(raw, WATCHED)

        views = [codec.scan(raw, WATCHED) for raw in requests]
        edits = [typical_edits(view) for view in views]

        def encode(codec=codec, views=views, edits=edits):
            for view, batch_edits in zip(views, edits, strict=True):
                codec.encode(view, batch_edits)

        def round_trip(codec=codec):
            for raw in requests:
                view = codec.scan(raw, WATCHED)
                codec.encode(view, typical_edits(view))

        rows.append((f"{codec.name} scan", per_span(best(args.rounds, scan))))
        rows.append((f"{codec.name} encode", per_span(best(args.rounds, encode))))
        rows.append((f"{codec.name} scan + edits + encode", per_span(best(args.rounds, round_trip))))

    print(f"{len(requests)} requests, {spans} spans; best of {args.rounds}; us/span")
    for label, value in rows:
        print(f"  {label:<40} {value:8.2f}   {value / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
