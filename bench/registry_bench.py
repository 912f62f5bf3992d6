#!/usr/bin/env python
"""The two-sidecar point: what the shared context registry adds per span, against the same
run without it.

    python bench/registry_bench.py [--traces 50] [--fanout 5] [--rounds 20] [--redis-url URL]

Two `inherit` processors stand for two sidecars sharing one real Redis (a redis-server is
started on a free loopback port unless --redis-url is given). Each round, sidecar A gets A's
spans (a root and a CLIENT span per trace, carrying the envelope: it registers them), then
sidecar B gets B's spans, whose parent is A's CLIENT span (unknown to B): B holds them,
asks the registry once for the batch, and releases them repaired. The same round runs with
`backend: memory` (B holds the spans, learns nothing, and releases them as they are: the
release is timed as their timeout would do it, so both runs do the same release work). Reported per B span: CPU time of
the batch (process + the lookup's callback) and wall time until B has released the batch,
median round, registry vs memory, with the round trips counted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from bench.inherit_bench import CONTEXT, OTHER  # noqa: E402
from costctx.component.processor import ProcessorContext  # noqa: E402
from costctx.pdata import TraceBatch  # noqa: E402
from costctx.processors.inherit.processor import InheritConfig, InheritProcessor  # noqa: E402
from costctx.survival.recorder import SurvivalRecorder  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402

_ids = itertools.count(1)


def _request(service: str, spans: list[tuple[bytes, int, int | None, int, dict]]) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for trace_id, span_id, parent, kind, attributes in spans:
        span = ss.spans.add()
        span.name, span.kind = f"span-{span_id}", kind
        span.trace_id, span.span_id = trace_id, span_id.to_bytes(8, "big")
        if parent is not None:
            span.parent_span_id = parent.to_bytes(8, "big")
        for key, value in attributes.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
    return request.SerializeToString()


def round_batches(traces: int, fanout: int) -> tuple[bytes, bytes, int]:
    a, b = [], []
    for _ in range(traces):
        trace_id = uuid.uuid4().bytes
        root, client = next(_ids), next(_ids)
        a.append((trace_id, client, root, Span.SPAN_KIND_CLIENT, {**OTHER, **CONTEXT}))
        a.append((trace_id, root, None, Span.SPAN_KIND_SERVER, {**OTHER, **CONTEXT}))
        server = next(_ids)
        b.append((trace_id, server, client, Span.SPAN_KIND_SERVER, dict(OTHER)))
        b += [(trace_id, next(_ids), server, Span.SPAN_KIND_CLIENT, dict(OTHER)) for _ in range(fanout - 1)]
    return _request("svc-a", a), _request("svc-b", b), len(b)


def sidecar(registry: dict) -> InheritProcessor:
    context = ProcessorContext(metrics=SidecarMetrics(), survival=SurvivalRecorder())
    config = InheritConfig.model_validate({"wait_duration": "30s", "registry": registry})
    processor = InheritProcessor("inherit", config, context)
    released: list[int] = []
    processor.bind(lambda batch: released.append(batch.span_count()))
    processor.released = released  # type: ignore[attr-defined]
    return processor


async def one_round(a: InheritProcessor, b: InheritProcessor, traces: int, fanout: int, shared: bool
                    ) -> tuple[float, float, int]:
    raw_a, raw_b, b_spans = round_batches(traces, fanout)
    a.process(_batch(raw_a))
    await a.registry.registry.flush()
    b.released.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    out = b.process(_batch(raw_b))
    left = out.span_count() if out is not None else 0
    if shared:
        while sum(b.released) + left < b_spans:  # the lookup's answer releases them
            await asyncio.sleep(0)
    else:
        b.shutdown()  # what their timeout does later: release the held spans (timed, the same work)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / b_spans, wall / b_spans, sum(b.released)


def _batch(raw: bytes) -> TraceBatch:
    request = ExportTraceServiceRequest()
    request.ParseFromString(raw)
    return TraceBatch(request)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(args, url: str) -> dict:
    prefix = f"{{bench{uuid.uuid4().hex[:6]}}}:"
    redis = {"backend": "redis", "redis": {"url": url, "key_prefix": prefix}}
    results = {}
    for name, registry in (("memory", {"backend": "memory"}), ("registry", redis)):
        a, b = sidecar(registry), sidecar(registry)
        cpus, walls = [], []
        for _ in range(args.rounds):
            cpu, wall, _ = await one_round(a, b, args.traces, args.fanout, name == "registry")
            cpus.append(cpu)
            walls.append(wall)
        results[name] = {"cpu_us_per_span": statistics.median(cpus) * 1e6,
                         "wall_us_per_span": statistics.median(walls) * 1e6,
                         "round_trips": b.registry.registry.counts.round_trips,
                         "repaired_by_registry": b.registry.registry.counts.hits_remote}
        await a.close()
        await b.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=50)
    parser.add_argument("--fanout", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    proc = None
    url = args.redis_url
    if url is None:
        binary = shutil.which("redis-server")
        if binary is None:
            print("redis-server not found; give --redis-url", file=sys.stderr)
            return 2
        port = _free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.3)
    try:
        results = asyncio.run(measure(args, url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    spans = args.traces * args.fanout
    print(f"B batch: {args.traces} traces x {args.fanout} spans ({spans} spans), median of {args.rounds} rounds")
    for name, row in results.items():
        print(f"  {name:8} cpu {row['cpu_us_per_span']:6.1f} us/span  wall {row['wall_us_per_span']:6.1f} us/span  "
              f"round trips {row['round_trips']}  registry hits {row['repaired_by_registry']}")
    added = results["registry"]["cpu_us_per_span"] - results["memory"]["cpu_us_per_span"]
    print(f"  added by the registry: {added:+.1f} us CPU per span (both release B's spans: memory as they are, "
          f"when their wait runs out; registry: repaired, as soon as the lookup answers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
