#!/usr/bin/env python
"""Budget decision latency: p50 and p99 of a Check, in-memory store vs Redis.

Runs the sidecar as its own process (`python -m costctx run`) and calls it from this
process over gRPC, as an agent loop would. Every figure stands beside a baseline from the
same run: an empty OTLP Export to the same sidecar (one gRPC round trip with no budget
work), so the table shows what the decision itself adds. For Redis a redis-server is
started on a free loopback port (or --redis-url). Each check reserves (ALLOW) under a
limit high enough never to block; the reservations expire on their own.

    python bench/budget_latency.py [--calls 3000] [--concurrency 16] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from costctx.client.budget import BudgetClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server) and no --redis-url given")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_sidecar(workdir: Path, backend: str, redis_url: str | None) -> tuple[subprocess.Popen, int]:
    grpc_port, admin_port, sink_port = free_port(), free_port(), free_port()
    budget = {"backend": backend, "reservation_ttl": "5s", "policies": [{
        "id": "bench", "workflow": {"cost_usd": 1e9, "steps": 10**9},
        "tenant": {"day_usd": 1e9}, "feature": {"month_usd": 1e9},
    }]}
    if redis_url:
        budget["redis"] = {"url": redis_url}
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "processors": {"budget": budget},
        # Nothing listens there; the bench sends no spans, only empty exports.
        "exporters": {"otlp": {"endpoint": f"127.0.0.1:{sink_port}", "insecure": True}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["budget"], "exporters": ["otlp"]}},
                    "telemetry": {"metrics": {"address": f"127.0.0.1:{admin_port}"}, "logs": {"level": "warn"}}},
    }
    path = workdir / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "costctx", "run", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, grpc_port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"sidecar ({backend}) did not become ready")


def measure(fn, calls: int, concurrency: int) -> list[float]:
    """Latencies in ms of `calls` calls of fn(i), spread over `concurrency` threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = calls // concurrency

    def worker(w: int) -> None:
        mine = []
        for i in range(per_thread):
            t0 = time.perf_counter()
            fn(w * per_thread + i)
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def bench_backend(backend: str, grpc_port: int, calls: int, concurrency: int) -> list[tuple]:
    target = f"127.0.0.1:{grpc_port}"
    channel = grpc.insecure_channel(target)
    export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
    empty = trace_service_pb2.ExportTraceServiceRequest()
    client = BudgetClient(target, channel=channel)

    def check(i: int) -> None:
        d = client.check(model="gpt-4o", estimated_cost_usd=0.01, workflow_id=f"wf-{i % 500}", tenant=f"t-{i % 20}",
                         feature="bench", policy_id="bench")
        assert d.allowed, d.reason

    def baseline(i: int) -> None:
        export(empty, timeout=5)

    for fn in (baseline, check):  # warm up connections, script cache, JIT-free but still
        measure(fn, 200, 4)
    rows = []
    for conc in sorted({1, concurrency}):
        base = measure(baseline, calls, conc)
        dec = measure(check, calls, conc)
        rows.append((backend, conc, len(dec), pct(base, 50), pct(base, 99), pct(dec, 50), pct(dec, 99)))
    channel.close()
    return rows


def bench_in_process(backend: str, redis_url: str | None, calls: int) -> tuple:
    """The decision alone: BudgetEngine.check awaited on one event loop, no gRPC."""
    import asyncio

    from costctx.budget.engine import BudgetEngine
    from costctx.extensions.budgetservice.service import validate
    from costctx.processors.budget.config import BudgetConfig
    from costctx.processors.budget.metrics import budget_metrics
    from costctx.proto_gen.costctx.v1 import budget_pb2 as pb
    from costctx.proto_gen.costctx.v1 import envelope_pb2 as epb
    from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics

    section = {"backend": backend, "reservation_ttl": "5s", "policies": [{
        "id": "bench", "workflow": {"cost_usd": 1e9, "steps": 10**9},
        "tenant": {"day_usd": 1e9}, "feature": {"month_usd": 1e9}}]}
    if backend == "redis":
        section["redis"] = {"url": redis_url, "key_prefix": "{inproc}:"}
    config = BudgetConfig.model_validate(section)

    async def run() -> list[float]:
        engine = BudgetEngine(config, budget_metrics(ComponentMetrics(SidecarMetrics(), "processor", "budget")))
        requests = [pb.CheckRequest(model="gpt-4o", estimated_cost_usd=0.01, envelope=epb.Envelope(
            workflow_id=f"wf-{i % 500}", policy_id="bench", owner=epb.Owner(tenant=f"t-{i % 20}", feature="bench")))
            for i in range(calls)]
        out = []
        for i, request in enumerate(requests + requests[:200]):
            t0 = time.perf_counter()
            validate(request)
            response = await engine.check(request)
            if i >= 200:  # the first 200 warm up
                out.append((time.perf_counter() - t0) * 1000)
            assert response.decision == pb.ALLOW, response.reason
        await engine.store.close()
        return out

    lat = asyncio.run(run())
    return backend, pct(lat, 50), pct(lat, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url", default=os.environ.get("COSTCTX_TEST_REDIS_URL"))
    parser.add_argument("--quick", action="store_true", help="tiny run: keeps the script working, numbers mean nothing")
    args = parser.parse_args()
    calls = 200 if args.quick else args.calls
    rows = []
    inproc = []
    redis_proc = None
    with tempfile.TemporaryDirectory() as tmp:
        redis_url = args.redis_url
        if redis_url is None:
            redis_proc, redis_url = start_redis()
        try:
            for backend in ("memory", "redis"):
                inproc.append(bench_in_process(backend, redis_url if backend == "redis" else None, calls))
            for backend in ("memory", "redis"):
                proc, port = start_sidecar(Path(tmp), backend, redis_url if backend == "redis" else None)
                try:
                    rows += bench_backend(backend, port, calls, args.concurrency)
                finally:
                    proc.terminate()
                    proc.wait(20)
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(10)
    print(f"Budget decision in process (BudgetEngine.check, no RPC), ms, {calls} calls:")
    print(f"{'store':8} {'p50':>8} {'p99':>8}")
    for backend, p50, p99 in inproc:
        print(f"{backend:8} {p50:>8.3f} {p99:>8.3f}")
    print()
    print(f"Budget Check latency over gRPC, ms ({calls} calls per row; baseline: an empty OTLP Export "
          "to the same sidecar)")
    header = f"{'store':8} {'callers':>7} {'base p50':>9} {'base p99':>9} {'check p50':>10} {'check p99':>10} "
    header += f"{'p50 added':>10} {'p99 added':>10}"
    print(header)
    for backend, conc, _, bp50, bp99, p50, p99 in rows:
        print(f"{backend:8} {conc:>7} {bp50:>9.3f} {bp99:>9.3f} {p50:>10.3f} {p99:>10.3f} {p50 - bp50:>10.3f} "
              f"{p99 - bp99:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
