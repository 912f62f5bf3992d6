"""`costctx` under a latency probe: bench/latency_trace.py starts the sidecar with this instead of
`python -m costctx` to see where each export call's time goes.

Records, with time.perf_counter() (CLOCK_MONOTONIC on Linux: comparable with the load
generator's own timestamps in another process):
- every gRPC Export handler run (entry, exit) and, inside it, the codec's scan (`received`) and
  the pipeline run (`consume`);
- every cyclic GC collection (generation, start, end) through gc.callbacks;
- every event-loop callback that held the loop longer than `--slow-ms` (what a request that
  arrived meanwhile waited behind), named by its callback;
- every processor tick.
Written as JSON to `--out` when the process exits. SIGUSR2 runs a full collection over
everything frozen and records what it found (cycles that formed among frozen objects). The
probe adds no code path to the sidecar itself: it wraps functions before the sidecar is built.

Usage: python bench/latency_probe.py --out FILE [--slow-ms 0.5] -- run --config costctx.yaml
"""

from __future__ import annotations

import argparse
import asyncio.events
import atexit
import functools
import gc
import json
import signal
import sys
import time
from pathlib import Path

now = time.perf_counter


def callback_name(callback) -> str:
    """A task's coroutine for a task wake-up or step, else the callback's repr."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', coro)!s}"
    return repr(callback)[:160]


def install(out: Path, slow_s: float, no_full: bool = False) -> None:
    from costctx.receivers.otlp import grpc as grpc_receiver
    from costctx.receivers.otlp.ingest import Ingest
    from costctx.service.pipeline import TracesPipeline

    record: dict[str, list] = {"handler": [], "received": [], "consume": [], "gc": [], "slow": [], "tick": []}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = now()
        else:
            record["gc"].append((info["generation"], gc_started[0], now(), info["collected"]))

    gc.callbacks.append(on_gc)

    original_export = grpc_receiver._export

    async def export(*args, **kwargs):
        entered = now()
        try:
            return await original_export(*args, **kwargs)
        finally:
            record["handler"].append((entered, now()))

    grpc_receiver._export = export

    def timed(name: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            started = now()
            try:
                return fn(*args, **kwargs)
            finally:
                record[name].append((started, now()))

        return wrapper

    TracesPipeline.received = timed("received", TracesPipeline.received)
    TracesPipeline.consume = timed("consume", TracesPipeline.consume)
    TracesPipeline.tick = timed("tick", TracesPipeline.tick)
    del Ingest  # imported so that its module is loaded before the receiver binds names

    original_run = asyncio.events.Handle._run

    def run(self):
        started = now()
        try:
            return original_run(self)
        finally:
            ended = now()
            if ended - started >= slow_s:
                record["slow"].append((started, ended, callback_name(self._callback)))

    asyncio.events.Handle._run = run

    def dump() -> None:
        record["frozen_at_exit"] = gc.get_freeze_count()
        record["counts_at_exit"] = gc.get_count()
        gc.unfreeze()
        # What a full collection finds at the end: cycles that formed among frozen objects.
        record["unreachable_at_exit"] = gc.collect()
        out.write_text(json.dumps(record))

    atexit.register(dump)

    def leak_check(*_args) -> None:
        # While the sidecar still runs: what a full collection finds among everything frozen.
        started = now()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        record.setdefault("leak_checks", []).append({"unreachable": found, "ms": (now() - started) * 1e3})

    signal.signal(signal.SIGUSR2, leak_check)
    if no_full:
        from costctx.service import gc_tuning

        original_full = gc_tuning.GcScheduler.full

        def first_full_only(self) -> None:
            if self.full_collections == 0:
                original_full(self)
            else:
                self.full_collections += 1
                gc.collect(1)
                gc.freeze()

        gc_tuning.GcScheduler.full = first_full_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--slow-ms", type=float, default=0.5)
    parser.add_argument("--no-full", action="store_true", help="GcScheduler: no full collection after start-up")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    install(Path(args.out), args.slow_ms / 1000, args.no_full)
    from costctx.cli.main import main as costctx_main

    return costctx_main(rest)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
