"""In-process throughput: the processor stage against the protobuf floor, on the same bytes.

- floor: `ParseFromString` + `SerializeToString` of each request, nothing else: what any
  Python implementation of an OTLP-in, OTLP-out sidecar pays at least.
- off: parse, wrap in a TraceBatch, run a traces pipeline with no processors, serialize.
- full: the same with the configured processors (the defaults of the registry), with the
  codec `select_codec()` picks, or once per codec named in `codecs` (same rounds, alternating).

The pipeline is the real one, built by `Sidecar` from a real config; only its exporters are
swapped for a counter, so nothing is sent. Floor and pipelines run in alternating rounds, so
a load spike on a shared machine hits all of them; the median round is reported. Times are
this process's CPU time (`time.process_time`), not wall time, so other processes competing
for the cores slow the figures less (caches and frequency still vary).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.workload import ID_MARKER, marker_for
from costctx.pdata.codec import select_codec
from costctx.service.app import Sidecar
from costctx.service.config.loader import build_config
from costctx.service.gc_tuning import GcScheduler
from costctx.service.pipeline import TracesPipeline


class CountingExporter:
    """Stands in for the queued exporters: counts what the pipeline hands over."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def has_capacity(self) -> bool:
        return True

    def submit(self, signal, payload: bytes, items: int, acknowledged: bool = False) -> bool:
        self.spans += items
        self.bytes += len(payload)
        return True


def pipeline_config(processors: list[str]) -> dict:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {name: None for name in processors},
        "exporters": {"otlp": {"endpoint": "127.0.0.1:9", "insecure": True}},  # never started
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["otlp"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


@dataclass
class StagePipeline:
    sidecar: Sidecar
    pipeline: TracesPipeline
    counter: CountingExporter


# The collector schedule `costctx run` starts once the sidecar listens (service/gc_tuning.py):
# automatic collections of the young generations only, and a step (collect them, freeze what
# survived) every 100 ms of wall time, here between two requests as the sidecar's event loop
# runs it; its CPU is in the figures, as it is in the sidecar's. One for the process: the
# collector's state is the process's.
COLLECTOR = GcScheduler()


async def build_stage(processors: list[str], codec: str | None = None) -> StagePipeline:
    """`codec`: as COSTCTX_CODEC (None: what the environment says, as `costctx run` does)."""
    sidecar = Sidecar(build_config(pipeline_config(processors), environ={}))
    assert sidecar.traces is not None
    if codec is not None:
        sidecar.traces.codec = select_codec(codec)
    counter = CountingExporter()
    sidecar.traces.exporters = [counter]
    await sidecar.traces.start()
    COLLECTOR.take_over()  # after start-up, as `costctx run`: what exists by now is frozen
    return StagePipeline(sidecar, sidecar.traces, counter)


def fresh_ids(pool: list[bytes], cycle: int) -> list[bytes]:
    """The pool with new trace/workflow/request ids, so stateful processors see new workflows."""
    marker = marker_for(cycle)
    return [body.replace(ID_MARKER, marker) for body in pool]


def time_floor(bodies: list[bytes]) -> float:
    parse = ExportTraceServiceRequest.FromString
    start = time.process_time()
    for body in bodies:
        parse(body).SerializeToString()
    return time.process_time() - start


def time_pipeline(stage: StagePipeline, bodies: list[bytes]) -> float:
    # As the receivers do: the request's bytes in, the pipeline decides how to read them.
    batch = stage.pipeline.batch
    consume = stage.pipeline.consume
    tick = stage.pipeline.tick
    collect = COLLECTOR.step_if_due
    start = time.process_time()
    for i, body in enumerate(bodies):
        consume(batch(body))
        collect(time.monotonic())  # between requests, as the sidecar's event loop runs it
        if i % 16 == 15:
            tick(time.monotonic())  # what the sidecar's ticker does between requests
    return time.process_time() - start


def processor_breakdown(stage: StagePipeline, bodies: list[bytes], spans: int) -> dict[str, float]:
    """CPU microseconds per span spent in each processor's `process`, in pipeline order.

    One more pass with each processor's bound `process` (or `process_view`) wrapped in a timer;
    a processor's share includes switching the batch to the form it reads (parse and index for
    `process`, scan for `process_view`) when the processor before it used the other form.
    """
    spent: dict[str, float] = {}
    originals = []
    for processor in stage.pipeline.processors:
        method = "process_view" if processor.on_view else "process"
        original = getattr(processor, method)
        originals.append((processor, method, original))
        spent[processor.name] = 0.0

        def timed(batch, _original=original, _name=processor.name):
            start = time.process_time()
            try:
                return _original(batch)
            finally:
                spent[_name] += time.process_time() - start

        setattr(processor, method, timed)
    try:
        time_pipeline(stage, bodies)
    finally:
        for processor, method, original in originals:
            setattr(processor, method, original)
    return {name: seconds / spans * 1e6 for name, seconds in spent.items()}


def least_breakdown(stage: StagePipeline, pool: list[bytes], spans: int, rounds: int,
                    cycle_base: int) -> dict[str, float]:
    """`processor_breakdown` over `rounds` passes of `pool` with fresh ids each: per processor
    its least us/span (the pass least disturbed by the rest of the machine)."""
    least: dict[str, float] = {}
    for r in range(rounds):
        for name, us in processor_breakdown(stage, fresh_ids(pool, cycle_base + 1 + r), spans).items():
            least[name] = min(us, least.get(name, us))
    return least


async def measure(pool: list[bytes], spans_per_batch: int, processors: list[str], rounds: int,
                  cycle_base: int, codecs: list[str] | None = None) -> dict:
    """spans/s of floor, off and full over `rounds` alternating rounds (median round each).

    `codecs`: the full pipeline once per codec named (COSTCTX_CODEC values), measured in the
    same alternating rounds; each codec's figures are under `by_codec`, the first one's also at
    the top level (`full_*`, `processor_us_*`). None: the codec the environment selects.
    """
    fulls = {}
    for choice in codecs or [None]:
        stage = await build_stage(processors, choice)
        fulls[stage.pipeline.codec.name] = stage
    off = await build_stage([])
    spans = len(pool) * spans_per_batch
    times: dict[str, list[float]] = {"floor": [], "off": []} | {name: [] for name in fulls}
    # One warm-up pass: imports, caches and first-use allocations are not what we measure.
    warm = fresh_ids(pool, cycle_base)
    time_floor(warm)
    time_pipeline(off, warm)
    for stage in fulls.values():
        time_pipeline(stage, warm)
    for r in range(rounds):
        bodies = fresh_ids(pool, cycle_base + 1 + r)
        times["floor"].append(time_floor(bodies))
        times["off"].append(time_pipeline(off, bodies))
        for name, stage in fulls.items():
            times[name].append(time_pipeline(stage, bodies))
        await asyncio.sleep(0)  # let any task a processor scheduled run, as the sidecar's loop would
    floor = statistics.median(times["floor"])
    by_codec = {}
    for name, stage in fulls.items():
        per_processor = processor_breakdown(stage, fresh_ids(pool, cycle_base + 1 + rounds), spans)
        stage.pipeline.shutdown()
        await stage.pipeline.close()
        full = statistics.median(times[name])
        by_codec[name] = {
            "full_spans_per_s": spans / full,
            # full throughput as a fraction of the floor's (the target is >= 0.40)
            "full_vs_floor": statistics.median(f / p for f, p in zip(times["floor"], times[name], strict=True)),
            # microseconds the processors add per span, over parse + serialize
            "processor_us_per_span": (full - floor) / spans * 1e6,
            "processor_us_per_span_each": per_processor,
            "spans_delivered_full": stage.counter.spans,
            "spans_expected_full": spans * (rounds + 2),
        }
    await off.pipeline.close()
    first = next(iter(by_codec))
    return {
        "spans_per_batch": spans_per_batch,
        "spans_per_round": spans,
        "rounds": rounds,
        "floor_spans_per_s": spans / floor,
        "off_spans_per_s": spans / statistics.median(times["off"]),
        "off_vs_floor": statistics.median(f / o for f, o in zip(times["floor"], times["off"], strict=True)),
        "floor_us_per_span": floor / spans * 1e6,
        "codec": first,
        **by_codec[first],
        "by_codec": by_codec,
    }
