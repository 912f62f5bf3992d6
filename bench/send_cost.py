#!/usr/bin/env python
"""What one merged export send costs the event loop's thread, by way of sending.

    python bench/send_cost.py [--mib 2] [--sends 150] [--rounds 3] [--mmap-threshold 131072|0]

Sends a `--mib` MiB request, joined from 100 kB parts as the exporter merges queued requests,
to the benchmark's sink (bench/sink_server.py, which does not parse it), `--sends` times:
- aio on loop: joined and sent with grpc.aio on the event loop (the exporter before);
- threads: joined on a worker thread (from 1 MiB) and sent with grpc's blocking client on another
  (what the exporter does with a request of 128 KiB or more; smaller ones it sends as "aio on loop");
- one thread: joined and sent by the same worker thread (one hand-over instead of two).
Prints the loop thread's CPU and minor page faults per send, the process's CPU and faults per send.
`--mmap-threshold` as `costctx run` fixes it (service/malloc_tuning.py, 128 KiB; 0: glibc's
dynamic default): at a fixed threshold every block above it is a fresh mapping, faulted in page
by page on first write, so each copy of a merged request costs a fault per 4 KiB page.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costctx.exporters.otlp.exporter import JOIN_OFF_LOOP  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SINK = Path(__file__).resolve().parent / "sink_server.py"


def faults(who: int) -> int:
    return resource.getrusage(who).ru_minflt


async def measure(target: str, parts: list[bytes], sends: int,
                  threaded: bool | str) -> tuple[float, float, float, float]:
    options = [("grpc.max_send_message_length", 256 * 2**20)]
    loop = asyncio.get_running_loop()
    if threaded == "one":
        channel = grpc.insecure_channel(target, options)
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        senders = ThreadPoolExecutor(1)

        async def send() -> None:
            # Joined and sent by one worker thread: one hand-over, and the join's block is
            # allocated and freed on the thread that copies it into gRPC's.
            await loop.run_in_executor(senders, lambda: call(b"".join(parts), timeout=10))
    elif threaded:
        channel = grpc.insecure_channel(target, options)
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        senders = ThreadPoolExecutor(1)

        async def send() -> None:
            # As the exporter does: joined on a thread from 1 MiB on (CPython then drops the GIL).
            if sum(map(len, parts)) >= JOIN_OFF_LOOP:
                payload = await loop.run_in_executor(None, b"".join, parts)
            else:
                payload = b"".join(parts)
            await loop.run_in_executor(senders, lambda: call(payload, timeout=10))
    else:
        channel = grpc.aio.insecure_channel(target, options)
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

        async def send() -> None:
            await call(b"".join(parts), timeout=10)

    await send()  # connected, threads started
    cpu, loop_faults, all_faults = time.thread_time(), faults(resource.RUSAGE_THREAD), faults(resource.RUSAGE_SELF)
    process = time.process_time()
    for _ in range(sends):
        await send()
    out = ((time.thread_time() - cpu) / sends, (faults(resource.RUSAGE_THREAD) - loop_faults) / sends,
           (faults(resource.RUSAGE_SELF) - all_faults) / sends, (time.process_time() - process) / sends)
    if threaded:
        channel.close()
        senders.shutdown()
    else:
        await channel.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=float, default=2.0)
    parser.add_argument("--sends", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mmap-threshold", type=int, default=128 * 1024)
    args = parser.parse_args()
    if args.mmap_threshold:
        ctypes.CDLL("libc.so.6").mallopt(-3, args.mmap_threshold)  # M_MMAP_THRESHOLD
    size = int(args.mib * 2**20)
    parts = [bytes(min(100_000, size)) for _ in range(max(1, size // 100_000))]
    # One length-delimited field 1 around zeros: a request the sink takes without parsing.
    length = sum(map(len, parts))
    varint = bytearray()
    while True:
        varint.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            break
    parts.insert(0, b"\x0a" + bytes(varint))
    sink = subprocess.Popen([sys.executable, str(SINK)], stdout=subprocess.PIPE, text=True)
    try:
        target = f"127.0.0.1:{json.loads(sink.stdout.readline())['port']}"
        for _ in range(args.rounds):
            for name, threaded in (("aio on loop", False), ("threads", True), ("one thread", "one")):
                cpu, loop_faults, all_faults, process = asyncio.run(measure(target, parts, args.sends, threaded))
                print(f"{name:12s} loop thread {1e6 * cpu:7.0f} us of CPU and {loop_faults:6.0f} page faults per "
                      f"send; process {1e6 * process:7.0f} us and {all_faults:6.0f} faults per send")
    finally:
        sink.terminate()
        sink.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
