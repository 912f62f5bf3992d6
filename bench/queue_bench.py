"""Cost of the persistent sending queue per batch, as a ratio to the in-memory queue.

Runs put -> get -> ack for N batches of a realistic traces payload through MemoryQueue and
PersistentQueue (fsync always / batch / never) in one process, in one run, on the directory
given (default: a temp dir; point it at the real volume to measure that disk).

    python bench/queue_bench.py [--batches 2000] [--spans 100] [--dir /var/lib/costctx]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costctx.exporters.exporterhelper.persistent_queue import PersistentQueue  # noqa: E402
from costctx.exporters.exporterhelper.queue import MemoryQueue, QueueItem  # noqa: E402
from costctx.pdata.signals import TRACES  # noqa: E402
from tests.support.otlp_client import trace_request  # noqa: E402


async def cycle(queue, payload: bytes, batches: int) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        queue.put(QueueItem(TRACES, payload, 1))
        item = await queue.get()
        queue.ack(item)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    payload = trace_request([f"span-{i}" for i in range(args.spans)], pad=200)
    base = Path(args.dir or tempfile.mkdtemp(prefix="costctx-queue-bench-"))
    print(f"{args.batches} batches of {len(payload)} bytes ({args.spans} spans), directory {base}")
    results = {"memory": asyncio.run(cycle(MemoryQueue(10**9), payload, args.batches))}
    for fsync in ("never", "batch", "always"):
        queue = PersistentQueue(base / fsync, "bench", 10**9, 10**12, fsync)
        results[f"sqlite fsync={fsync}"] = asyncio.run(cycle(queue, payload, args.batches))
        queue.close()
    memory = results["memory"]
    for name, seconds in results.items():
        per = seconds / args.batches * 1e6
        print(f"{name:22s} {per:9.1f} us/batch  {args.batches / seconds:9.0f} batches/s  x{seconds / memory:8.1f}")


if __name__ == "__main__":
    main()
