"""Run the default traces pipeline in process on a list of requests and record what comes out.

The record is what the golden files hold: per step (each request, each tick, the final
shutdown) the spans handed to the exporter, each as its own one-span request with attributes
sorted by key (the order of attributes is not part of the contract), and the partial-success
count answered to the client; then the Prometheus exposition of the sidecar's registry and
the survival counts and report.

Time is a stand-in clock advanced by hand, so holds, timeouts, reservation expiry and hour
windows are the same on every run.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import generate_latest

from costctx.pdata.signals import TRACES
from costctx.service.app import Sidecar
from costctx.service.config.loader import build_config
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS
from costctx.survival.report import survival_report

DATA = Path(__file__).parent / "data"
START = 1_790_000_000.0    # the workload's epoch (bench/workload.py BASE_TIME_NS), in seconds
STEP = 0.05                # stand-in seconds between requests
TICK_EVERY = 16            # requests between ticks, as bench/inprocess.py
FINAL_WAIT = 600.0         # seconds before the last tick: every hold and reservation is due

BUDGET = {
    "policies": [{
        "id": "default-budget",
        "workflow_names": ["support.answer"],
        "workflow": {"cost_usd": 0.05, "steps": 6},
        "tenant": {"hour_usd": 2.0},
        "retry_max": 1,
    }],
}


def golden_config() -> dict:
    processors = list(DEFAULT_TRACE_PROCESSORS)
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {name: (BUDGET if name == "budget" else None) for name in processors},
        "exporters": {"otlp": {"endpoint": "127.0.0.1:9", "insecure": True}},  # never started
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["otlp"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


class StandInClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@contextmanager
def stand_in_time(clock: StandInClock) -> Iterator[None]:
    """time.time, time.time_ns and time.monotonic read the stand-in clock (code that calls
    them at run time)."""
    saved = time.time, time.time_ns, time.monotonic
    time.time = clock  # type: ignore[assignment]
    time.time_ns = lambda: round(clock() * 1e9)  # type: ignore[assignment]
    time.monotonic = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        time.time, time.time_ns, time.monotonic = saved


@dataclass
class Recorder:
    """Stands in for the queued exporters: keeps every payload of the current step."""

    payloads: list[bytes] = field(default_factory=list)

    def has_capacity(self) -> bool:
        return True

    def submit(self, signal, payload: bytes, items: int, acknowledged: bool = False) -> bool:
        self.payloads.append(payload)
        return True


def normalized_spans(payload: bytes) -> list[bytes]:
    """Each span of a request as a one-span request, attributes sorted by key (stable)."""
    request = ExportTraceServiceRequest.FromString(payload)
    out = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                one = ExportTraceServiceRequest()
                r = one.resource_spans.add()
                r.schema_url = rs.schema_url
                r.resource.CopyFrom(rs.resource)
                _sort(r.resource.attributes)
                s = r.scope_spans.add()
                s.schema_url = ss.schema_url
                s.scope.CopyFrom(ss.scope)
                s.spans.add().CopyFrom(span)
                _sort(s.spans[0].attributes)
                out.append(one.SerializeToString(deterministic=True))
    return out


def _sort(attributes) -> None:
    ordered = sorted(attributes, key=lambda kv: kv.key)
    copies = [type(kv)() for kv in ordered]
    for copy, kv in zip(copies, ordered, strict=True):
        copy.CopyFrom(kv)
    del attributes[:]
    attributes.extend(copies)


def _timed(line: str) -> bool:
    """Samples that measure time taken (duration histograms' buckets and sums) or creation
    times: they differ from run to run whatever the pipeline does. Counts stay."""
    name = line.split("{", 1)[0].split(" ", 1)[0]
    return "_created" in name or name.endswith(("_seconds_bucket", "_seconds_sum"))


def _codec(line: str) -> bool:
    """Which codec ran (costctx_codec_info): the output must be the same whichever it is."""
    return "costctx_codec_info" in line


def metrics_text(sidecar: Sidecar) -> str:
    """The exposition, lines sorted (label sets come out in first-seen order, which string
    hashing varies between processes), without samples of time taken (`_timed`) or the codec's name."""
    lines = generate_latest(sidecar.metrics.registry).decode().splitlines()
    return "\n".join(sorted(line for line in lines if not _timed(line) and not _codec(line))) + "\n"


def run(requests: list[bytes]) -> dict[str, Any]:
    return asyncio.run(_run(requests))


async def _run(requests: list[bytes]) -> dict[str, Any]:
    sidecar = Sidecar(build_config(golden_config(), environ={}))
    pipeline = sidecar.traces
    assert pipeline is not None
    recorder = Recorder()
    pipeline.exporters = [recorder]
    clock = StandInClock(START)
    for processor in pipeline.processors:
        if hasattr(processor, "use_clock"):
            processor.use_clock(clock)
        engine = getattr(processor, "engine", None)
        if engine is not None and hasattr(engine.store, "clock"):
            engine.store.clock = clock
    sidecar.survival.clock = clock
    await pipeline.start()
    steps: list[dict[str, Any]] = []

    def step(name: str, rejected: int = 0) -> None:
        spans = sorted(s for p in recorder.payloads for s in normalized_spans(p))
        recorder.payloads.clear()
        steps.append({"step": name, "rejected": rejected, "spans": spans})

    with stand_in_time(clock):
        for i, raw in enumerate(requests):
            clock.now += STEP
            try:
                request = ExportTraceServiceRequest.FromString(raw)
            except Exception:
                steps.append({"step": f"request {i}", "rejected": -1, "spans": []})
                continue
            response = sidecar.ingest.export(TRACES, request, raw, "grpc")
            step(f"request {i}", response.partial_success.rejected_spans)
            if i % TICK_EVERY == TICK_EVERY - 1:
                pipeline.tick(clock.now)
                step(f"tick after {i}")
        clock.now += FINAL_WAIT
        pipeline.tick(clock.now)
        step("final tick")
        pipeline.shutdown()
        step("shutdown")
        counts = sidecar.survival.snapshot_counts()
        report = survival_report(sidecar.survival.snapshot_all())
        metrics = metrics_text(sidecar)
    await pipeline.close()
    return {
        "steps": steps,
        "metrics": metrics,
        "survival_counts": sorted([list(k), v] for k, v in counts.items()),
        "survival_report": json.loads(json.dumps(report, sort_keys=True, default=str)),
    }


# -- golden files: gzip-compressed JSON, span bytes in base64 --------------------------------
def dump(record: dict[str, Any], path: Path) -> None:
    encoded = dict(record)
    encoded["steps"] = [
        {**s, "spans": [base64.b64encode(b).decode() for b in s["spans"]]} for s in record["steps"]
    ]
    path.write_bytes(gzip.compress(json.dumps(encoded, sort_keys=True, indent=0).encode(), mtime=0))


def load(path: Path) -> dict[str, Any]:
    record = json.loads(gzip.decompress(path.read_bytes()))
    record["steps"] = [{**s, "spans": [base64.b64decode(b) for b in s["spans"]]} for s in record["steps"]]
    return record
