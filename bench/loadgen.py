"""The benchmark's load generator, run as its own process.

Sends pre-built serialized ExportTraceServiceRequests (a pool file from `workload.py`) over
one gRPC channel, without a serializer, so its own cost per call is a send and a receive.

- `saturate`: `--concurrency` calls always in flight; a refusal (UNAVAILABLE: the sidecar's
  queue is full) waits 2 ms and sends again.
- `rate`: one request every spans_per_batch / `--rate` seconds on a fixed schedule (open
  loop: a slow answer does not delay the next send), at most `--max-in-flight` at once.

Calls completing in the measurement window (after `--warmup`) are counted and timed.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import ID_MARKER, marker_for, read_pool  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Run:
    def __init__(self, pool: list[bytes], spans_per_batch: int, cycle_offset: int, warmup: float) -> None:
        self.pool = pool
        self.spans_per_batch = spans_per_batch
        self.cycle_offset = cycle_offset
        self.sent = 0
        self.ok = 0
        self.refused = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.calls: list[tuple[float, float]] = []  # (started, done) of each timed call, for --trace
        self.t0 = time.perf_counter()
        self.window_start = self.t0 + warmup
        self.window_end = float("inf")

    def next_payload(self) -> bytes:
        n = self.sent
        self.sent += 1
        cycle = n // len(self.pool) + self.cycle_offset
        body = self.pool[n % len(self.pool)]
        # A fresh set of trace, workflow and request ids on each pass over the pool.
        return body if cycle == 0 else body.replace(ID_MARKER, marker_for(cycle))

    async def call(self, stub: grpc.aio.UnaryUnaryMultiCallable, timeout: float) -> bool:
        """Send one request; True when accepted, False when refused (retry later)."""
        payload = self.next_payload()
        started = time.perf_counter()
        try:
            await stub(payload, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                if self.window_start <= started < self.window_end:
                    self.refused += 1
                return False
            if self.window_start <= started < self.window_end:
                self.errors[code.name] = self.errors.get(code.name, 0) + 1
            return False
        done = time.perf_counter()
        if self.window_start <= started and done <= self.window_end:
            self.ok += 1
            self.latencies.append(done - started)
            self.calls.append((started, done))
        return True

    def report(self, mode: str, window: float) -> dict:
        lat = sorted(self.latencies)
        ms = [v * 1000 for v in lat]
        return {
            "mode": mode,
            "window_s": window,
            "requests_ok": self.ok,
            "requests_refused": self.refused,
            "errors": self.errors,
            "spans_ok": self.ok * self.spans_per_batch,
            "spans_per_s": self.ok * self.spans_per_batch / window if window > 0 else 0.0,
            "latency_ms": {
                "count": len(ms),
                "p50": percentile(ms, 0.50),
                "p90": percentile(ms, 0.90),
                "p99": percentile(ms, 0.99),
                "max": ms[-1] if ms else None,
            },
        }


async def saturate(run: Run, stub, concurrency: int, duration: float, timeout: float) -> None:
    deadline = run.t0 + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            if not await run.call(stub, timeout):
                await asyncio.sleep(0.002)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def fixed_rate(run: Run, stub, rate: float, duration: float, timeout: float, max_in_flight: int) -> int:
    """Returns how many sends were late by more than one interval (the schedule slipped)."""
    interval = run.spans_per_batch / rate
    gate = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task] = set()
    late = 0
    next_at = time.perf_counter()
    deadline = run.t0 + duration

    async def one() -> None:
        try:
            await run.call(stub, timeout)
        finally:
            gate.release()

    while next_at < deadline:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > interval:
            late += 1
        await gate.acquire()
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += interval
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    return late


async def main_async(args: argparse.Namespace) -> dict:
    pool, spans_per_batch = read_pool(Path(args.pool))
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(args.target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        stub = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        run = Run(pool, spans_per_batch, args.cycle_offset, args.warmup)
        # Tells the orchestrator the clock started, so it can align its CPU and counter window.
        print(json.dumps({"event": "started"}), flush=True)
        run.window_end = run.t0 + args.duration
        late = 0
        if args.mode == "saturate":
            await saturate(run, stub, args.concurrency, args.duration, args.timeout)
        else:
            late = await fixed_rate(run, stub, args.rate, args.duration, args.timeout, args.max_in_flight)
        out = run.report(args.mode, args.duration - args.warmup)
        out.update({"spans_per_batch": spans_per_batch, "requests_sent": run.sent, "late_sends": late,
                    "target_rate": args.rate if args.mode == "rate" else None})
        if args.trace:
            Path(args.trace).write_text(json.dumps(run.calls))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["saturate", "rate"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, warm-up included")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=10_000.0, help="spans per second (rate mode)")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--trace", help="write each timed call's (started, done) perf_counter times here (JSON)")
    parser.add_argument("--cycle-offset", type=int, default=0, help="start the id cycles here (fresh ids per run)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
