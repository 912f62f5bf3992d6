#!/usr/bin/env python
"""The sidecar's own Python per request outside the processors, in process: receive (Ingest),
the pipeline with no processors, the exporter's submit and its merging consumer.

    python bench/receive_path_bench.py [--requests 20000] [--rounds 5]

A real Ingest, TracesPipeline and QueuedExporter (memory queue, the bench config's merge:
flush_timeout 200 ms, min_size 2,048 spans, 10 consumers) on one event loop; the sender only
answers (nothing leaves the process). Each request is handed to `Ingest.export_protobuf` as
the gRPC handler does, then the loop runs one iteration (as a new call would), so the
consumers wake as they do in the sidecar. Prints CPU microseconds per request (least of the
rounds): what grpc.aio's own per call cost (~330-370 us) and the processors' come on top of.
Compare two trees by running it with each one's `sidecar/` on PYTHONPATH, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse  # noqa: E402

from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.exporters.otlp.config import OtlpGrpcExporterConfig  # noqa: E402
from costctx.exporters.otlp.exporter import QueuedExporter  # noqa: E402
from costctx.exporters.otlp.metrics import ExporterMetrics  # noqa: E402
from costctx.pdata.signals import TRACES  # noqa: E402
from costctx.receivers.otlp.ingest import Ingest  # noqa: E402
from costctx.receivers.otlp.metrics import ReceiverMetrics  # noqa: E402
from costctx.service.pipeline import TracesPipeline  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402


class AnsweringSender:
    description = "nowhere"

    def __init__(self) -> None:
        self.sent = 0

    async def start(self) -> None: ...

    async def send(self, signal, payload: bytes):
        self.sent += 1
        return ExportTraceServiceResponse()

    async def close(self) -> None: ...


def exporter_config() -> OtlpGrpcExporterConfig:
    return OtlpGrpcExporterConfig.model_validate({
        "endpoint": "127.0.0.1:1", "insecure": True, "compression": "none",
        "sending_queue": {"num_consumers": 10, "queue_size": 1000,
                          "batch": {"flush_timeout": "200ms", "min_size": 2048}}})


async def one_round(bodies: list[bytes], count: int) -> float:
    metrics = SidecarMetrics()
    exporter = QueuedExporter("otlp", exporter_config(), ExporterMetrics(metrics), sender=AnsweringSender())
    pipeline = TracesPipeline([], [exporter], metrics)
    ingest = Ingest(pipeline, {}, ReceiverMetrics(metrics), max_items=50_000)
    await exporter.start()
    try:
        started = time.process_time()
        for i in range(count):
            ingest.export_protobuf(TRACES, bodies[i % len(bodies)], "grpc").SerializeToString()
            await asyncio.sleep(0)
        await exporter.drain(10)
        return (time.process_time() - started) / count
    finally:
        await exporter.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=50))
    figures = [asyncio.run(one_round(bodies, args.requests)) for _ in range(args.rounds)]
    print(f"receive + pipeline (no processors) + exporter: {1e6 * min(figures):.1f} us of CPU per request "
          f"(least of {args.rounds}; all: {', '.join(f'{1e6 * f:.1f}' for f in figures)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
