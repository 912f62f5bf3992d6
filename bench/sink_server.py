"""A minimal OTLP/gRPC traces sink for the benchmark, run as its own process.

It answers Export with an empty response without parsing the request (a sink must not be
the bottleneck), and counts requests and bytes, readable through `/bench.Sink/Stats`.
Prints `{"port": N}` on stdout once it listens; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import grpc

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EMPTY_RESPONSE = b""  # an ExportTraceServiceRequest with no fields set serializes to nothing


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0


def handlers(counts: Counts) -> list[grpc.GenericRpcHandler]:
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        counts.requests += 1
        counts.bytes += len(request)
        return EMPTY_RESPONSE

    async def stats(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return json.dumps({"requests": counts.requests, "bytes": counts.bytes}).encode()

    def raw(fn):
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)

    return [
        grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": raw(export)}),
        grpc.method_handlers_generic_handler("bench.Sink", {"Stats": raw(stats)}),
    ]


async def serve(port: int) -> None:
    server = grpc.aio.server(
        handlers=handlers(Counts()),
        options=[("grpc.max_receive_message_length", 256 * 1024 * 1024), ("grpc.so_reuseport", 0)],
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(json.dumps({"port": bound}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def read_stats(target: str, timeout: float = 5.0) -> dict[str, int]:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Sink/Stats", request_serializer=None, response_deserializer=None)
        return json.loads(call(b"", timeout=timeout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
