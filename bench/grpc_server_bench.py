#!/usr/bin/env python
"""What a gRPC server costs per OTLP export call, by kind of server, with nothing behind it.

    python bench/grpc_server_bench.py [--rate 10000] [--seconds 6] [--kinds aio-unary,aio-stream,...]

Each kind runs in its own process as an OTLP TraceService/Export that takes the raw request
bytes and answers an empty ExportTraceServiceResponse (what the sidecar's receiver does around
its pipeline); bench/loadgen.py offers the bench pool (100 spans/batch, +4 attrs) at `--rate`
spans/s. Prints the server's CPU % of a core and per call, and the calls' p50 / p99: the floor
under the sidecar's processors-off CPU (issue 15: at most 5% of a core at 10,000 spans/s).

- aio-unary: grpc.aio server, unary-unary handler (the receiver without admission checks);
- aio-unary-interceptor: the same with a pass-through server interceptor (as the receiver's
  AdmissionInterceptor, which it installs with or without admission checks);
- aio-stream: grpc.aio server, stream-unary handler (the receiver with a memory limiter);
- sync-unary: grpc's thread-pool server, unary-unary handler (4 worker threads);
- aio-unary+<tuning>[+<tuning>...]: aio-unary with HTTP/2 settings of TUNINGS (no BDP probe,
  4 MiB frames, a 4 MiB window): none moved the CPU per call beyond the runs' spread (e2e9);
  `+uvloop` runs the aio server on uvloop's event loop instead of asyncio's;
- native, native-call, native-inline (+uvloop, +window): the bench-only tonic receiver of
  bench/native_grpc_probe (build it first: its README), the request's bytes handed to the loop
  and the call answered once Python acks it; `+window` sets 4 MiB HTTP/2 windows and frames.
  ~220 vs ~580 us per call for aio-unary+uvloop (exp16; figures in that README).

Also prints each server thread's CPU % (by thread name: the loop's `python`, grpc's
`event_engine`, the probe's `grpc-probe`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EMPTY = b""  # an ExportTraceServiceResponse with no partial success serializes to nothing


# HTTP/2 settings tried on the aio-unary server (kind `aio-unary+<name>`).
TUNINGS = {
    "nobdp": [("grpc.http2.bdp_probe", 0)],
    "frame": [("grpc.http2.max_frame_size", 4 * 2**20)],
    "window": [("grpc.http2.lookahead_bytes", 4 * 2**20)],
}


def serve(kind: str, port: int) -> None:
    options = [("grpc.max_receive_message_length", 4 * 2**20), ("grpc.so_reuseport", 0)]
    kind, _, tunings = kind.partition("+")
    names = list(filter(None, tunings.split("+")))
    for name in names:
        options += TUNINGS.get(name, [])
    if kind.startswith("native"):
        serve_native(kind, port, "uvloop" in names, 4 * 2**20 if "window" in names else None)
        return
    if kind == "sync-unary":
        def export(request: bytes, context) -> bytes:
            return EMPTY

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(export)})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()
        return

    async def main() -> None:
        async def unary(request: bytes, context) -> bytes:
            return EMPTY

        async def stream(requests, context) -> bytes:
            async for _ in requests:
                break
            return EMPTY

        class PassThrough(grpc.aio.ServerInterceptor):
            async def intercept_service(self, continuation, handler_call_details):
                return await continuation(handler_call_details)

        method = (grpc.unary_unary_rpc_method_handler(unary) if kind.startswith("aio-unary")
                  else grpc.stream_unary_rpc_method_handler(stream))
        server = grpc.aio.server(handlers=[grpc.method_handlers_generic_handler(SERVICE, {"Export": method})],
                                 interceptors=[PassThrough()] if kind.endswith("-interceptor") else None,
                                 options=options)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    if "uvloop" in names:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def serve_native(kind: str, port: int, uvloop_loop: bool, window: int | None) -> None:
    """The bench-only native receiver (bench/native_grpc_probe): tonic on its own thread."""
    import costctx_grpc_probe as probe

    async def handle(data: bytes, ack) -> None:  # the receiver's coroutine per call, as grpc.aio runs
        ack.send(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "native-call":
            def on_call(data: bytes, ack) -> None:
                loop.create_task(handle(data, ack))

            server = probe.Server(f"127.0.0.1:{port}", "call", loop, on_call, window=window)
        else:
            server = probe.Server(f"127.0.0.1:{port}", "queue", window=window)
            inline = kind == "native-inline"

            def drain() -> None:
                for data, ack in server.take():
                    if inline:
                        ack.send(0)
                    else:
                        loop.create_task(handle(data, ack))

            loop.add_reader(server.fileno(), drain)
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            server.stop()

    if uvloop_loop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far by thread name (/proc comm: the probe's `grpc-probe`, grpc's pollers)."""
    out: dict[str, float] = {}
    for thread in psutil.Process(pid).threads():
        try:
            name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + thread.user_time + thread.system_time
    return out


def measure(kind: str, pool: Path, rate: float, seconds: float) -> dict:
    from bench.run import PY, REPO, cpu_seconds, free_port

    port = free_port()
    server = subprocess.Popen([PY, __file__, "--serve", kind, "--port", str(port)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert server.stdout.readline().strip() == "ready"
        ps = psutil.Process(server.pid)
        load = subprocess.Popen([PY, str(REPO / "bench" / "loadgen.py"), "rate", "--target", f"127.0.0.1:{port}",
                                 "--pool", str(pool), "--duration", str(seconds + 2), "--warmup", "1.5",
                                 "--rate", str(rate)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(1.5)
        cpu0, threads0, t0 = cpu_seconds(ps), thread_cpu(server.pid), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(ps) - cpu0) / elapsed
        threads = {name: round(100 * (spent - threads0.get(name, 0.0)) / elapsed, 2)
                   for name, spent in thread_cpu(server.pid).items()}
        out, _ = load.communicate(timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
    calls_per_s = result["spans_per_s"] / result["spans_per_batch"]
    return {"kind": kind, "cpu_pct": round(100 * cpu, 2),
            "cpu_us_per_call": round(1e6 * cpu / calls_per_s, 1) if calls_per_s else None,
            "p50_ms": round(result["latency_ms"]["p50"], 3), "p99_ms": round(result["latency_ms"]["p99"], 3),
            "errors": result["errors"], "threads_pct": {k: v for k, v in threads.items() if v > 0}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2, help="each kind this many times, alternating")
    parser.add_argument("--kinds", default="aio-unary,aio-stream,sync-unary")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    from bench.run import Plan, Pools

    with tempfile.TemporaryDirectory(prefix="costctx-grpc-") as tmp:
        plan = Plan(quick=False)
        pool = Pools(Path(tmp), plan).path(plan.default_batch, plan.default_attrs)
        for _ in range(args.rounds):
            for kind in args.kinds.split(","):
                print(json.dumps(measure(kind, pool, args.rate, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
