#!/usr/bin/env python
"""What the inherit processor costs, as ratios against the protobuf floor of the same run.

    python bench/inherit_bench.py [--traces 20] [--fanout 9] [--rounds 30]
    python bench/inherit_bench.py --memory [--spans 40000]

Each batch holds `--traces` traces of one root and `--fanout` children (children first,
as the SDK exports them). Per workload:
- floor: parse the request, build the shared span index, serialize: paid by every sidecar;
- inherit: the same plus the inherit processor.
Workloads:
- complete: every span carries the whole envelope (nothing to repair, nothing held);
- repair in batch: children lack the envelope, their root comes later in the same batch;
- repair across batches: the children come in one batch (held), the roots in the next
  (released into it); both batches are timed together.
Every round uses new trace ids, so the cache and the hold work as in production. Times are
this process's CPU time; the median round is reported, floor and inherit alternating.

`--memory`: what inherit keeps per span it remembers, with the default config, on the bench
workload (bench/workload.py, mixed and complete): the bytes tracemalloc sees retained after
`--spans` spans (fewer than the cache bound, so nothing is evicted), per ancestor-cache entry,
split by the file that allocated them (the ancestor cache, the trace votes, the registry's local
cache, the decisions' Known objects and field dicts); the native ancestor table's own bytes
and trace votes (which tracemalloc does not see) are added as `ancestors.rs (native)` and
`inherit_votes.rs (native)`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costctx.component.host import Host  # noqa: E402
from costctx.pdata import TraceBatch  # noqa: E402
from costctx.processors.inherit.processor import InheritConfig, InheritProcessor  # noqa: E402
from costctx.survival.recorder import SurvivalRecorder  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402

CONTEXT = {"workflow.id": "wf-1", "workflow.name": "chat", "request.id": "r-1", "owner.tenant": "acme",
           "owner.feature": "chat", "owner.team": "growth", "owner.user": "u-1", "owner.cost_center": "cc-9",
           "owner.version": "1.0", "policy.id": "p-1"}
OTHER = {"http.route": "/v1/chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": "120"}

_trace_ids = itertools.count(1)


def build(spans: list[tuple[int, int, int | None, dict]]) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench"
    ss = rs.scope_spans.add()
    for trace_id, span_id, parent, attributes in spans:
        span = ss.spans.add()
        span.name = f"span-{span_id}"
        span.trace_id = trace_id.to_bytes(16, "big")
        span.span_id = span_id.to_bytes(8, "big")
        if parent is not None:
            span.parent_span_id = parent.to_bytes(8, "big")
        for key, value in attributes.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
    return request.SerializeToString()


def workload(kind: str, traces: int, fanout: int) -> list[bytes]:
    """The batches of one round."""
    children, roots = [], []
    for _ in range(traces):
        t = next(_trace_ids)
        child_attrs = {**OTHER, **CONTEXT} if kind == "complete" else dict(OTHER)
        children += [(t, 1 + c, 1000, child_attrs) for c in range(1, fanout + 1)]
        roots.append((t, 1000, None, {**OTHER, **CONTEXT}))
    if kind == "repair across batches":
        return [build(children), build(roots)]
    return [build(children + roots)]


def run(raws: list[bytes], processor: InheritProcessor | None) -> float:
    start = time.process_time()
    for raw in raws:
        request = ExportTraceServiceRequest()
        request.ParseFromString(raw)
        batch = TraceBatch(request, raw)
        _ = batch.records
        if processor is not None:
            batch = processor.process(batch)
        batch.request.SerializeToString()
    return time.process_time() - start


def memory(spans: int) -> None:
    import gc
    import tracemalloc

    from bench.inprocess import fresh_ids
    from bench.workload import WorkloadSpec, build_requests

    print(f"bytes retained per span remembered, after {spans} spans (default config), by allocating file")
    for complete in (False, True):
        pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
        context = Host(metrics=SidecarMetrics(), survival=SurvivalRecorder())
        processor = InheritProcessor("inherit", InheritConfig(), context)
        processor.bind(lambda batch: None)
        processor.process(TraceBatch(ExportTraceServiceRequest.FromString(pool[0])))  # first-use allocations
        cycles = (spans + 100 * len(pool) - 1) // (100 * len(pool))
        batches = [body for cycle in range(1, cycles + 1) for body in fresh_ids(pool, cycle)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for body in batches:
            processor.process(TraceBatch(ExportTraceServiceRequest.FromString(body)))
        del body
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        entries = len(processor.cache)
        by_file: dict[str, int] = {}
        for stat in after.compare_to(before, "filename"):
            name = Path(stat.traceback[0].filename).name
            by_file[name] = by_file.get(name, 0) + stat.size_diff
        # The native ancestor table's keys and slots are not Python allocations: added by hand.
        native = getattr(processor.cache, "nbytes", 0)
        if native:
            by_file["ancestors.rs (native)"] = native
        votes = getattr(processor.trace_values, "nbytes", None)  # the native trace votes (a method)
        if callable(votes):
            by_file["inherit_votes.rs (native)"] = votes()
        total = sum(by_file.values())
        top = sorted(by_file.items(), key=lambda item: -item[1])[:7]
        kind = "complete" if complete else "mixed"
        print(f"{kind:<9} {entries} cache entries, {len(processor.trace_values)} traces, "
              f"{len(processor.registry.registry)} registry entries, {processor.hold.span_count} held: "
              f"{total / entries:.0f} B/entry ({total / 2**20:.1f} MiB); "
              + ", ".join(f"{name} {size / entries:.0f}" for name, size in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--fanout", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--memory", action="store_true", help="bytes kept per span remembered, not time")
    parser.add_argument("--spans", type=int, default=40_000)
    args = parser.parse_args()
    if args.memory:
        memory(args.spans)
        return
    context = Host(metrics=SidecarMetrics(), survival=SurvivalRecorder())
    processor = InheritProcessor("inherit", InheritConfig(wait_duration="60s"), context)
    processor.bind(lambda batch: None)
    spans = args.traces * (args.fanout + 1)
    print(f"{spans} spans per round ({args.traces} traces x (1 root + {args.fanout} children)), "
          f"{args.rounds} rounds, median CPU time per round")
    print(f"{'workload':<24}{'floor ms':>10}{'inherit ms':>12}{'extra/floor':>13}{'us/span':>10}")
    for kind in ("complete", "repair in batch", "repair across batches"):
        floor, full = [], []
        for _ in range(args.rounds):
            raws = workload(kind, args.traces, args.fanout)
            floor.append(run(raws, None))
            full.append(run(raws, processor))
        f, i = statistics.median(floor), statistics.median(full)
        held = processor.hold.span_count
        print(f"{kind:<24}{f * 1e3:>10.2f}{i * 1e3:>12.2f}{(i - f) / f:>12.2f}x{(i - f) / spans * 1e6:>10.1f}"
              + (f"  (still held: {held})" if held else ""))


if __name__ == "__main__":
    main()
