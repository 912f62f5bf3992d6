#!/usr/bin/env python
"""What the envelope processor's survival, readiness and spend counting costs, as ratios.

    python bench/envelope_bench.py [--spans 100] [--rounds 40]

Per workload (a batch of `--spans` spans), the fastest round (on a shared machine
contention only adds time; the median is noise there) of:
- floor: parse the request, build the shared span index, serialize (paid by every sidecar);
- first: floor + the first envelope processor (schema stamp, missing list, one Counter
  update per (hop, field, outcome) and span), kept here as the baseline;
- off: floor + the envelope processor with `record_outcomes: false` (stamps only);
- on: floor + the envelope processor as shipped (one signature per span, readiness and
  spend tallies, one recorder update per batch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.requests import build_request  # noqa: E402
from costctx.component.host import Host  # noqa: E402
from costctx.envelope import ENVELOPE  # noqa: E402
from costctx.pdata import TraceBatch  # noqa: E402
from costctx.processors.envelope.processor import EnvelopeConfig, EnvelopeProcessor  # noqa: E402
from costctx.survival.recorder import SurvivalRecorder  # noqa: E402
from costctx.telemetry.metrics import SidecarMetrics  # noqa: E402

CONTEXT = {"workflow.id": "wf-1", "workflow.name": "answer", "request.id": "r-1", "owner.tenant": "acme",
           "owner.feature": "chat", "owner.user": "u-1", "policy.id": "p-1", "http.route": "/v1/chat",
           "http.request.method": "POST", "server.address": "api.internal", "thread.id": 7, "code.lineno": 12}
LLM = {"workflow.id": "wf-1", "workflow.name": "answer", "request.id": "r-1", "owner.tenant": "acme",
       "owner.feature": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
       "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
       "cost.usd": 0.00045, "cost.price_source": "builtin@2026-11-01#3f2a9c1d"}
BARE = {"http.route": "/v1/chat", "http.request.method": "POST", "thread.id": 7}
REPAIRED = ("workflow.id", "workflow.name", "request.id", "owner.tenant", "owner.feature")
# name -> (attributes, notes left by earlier processors)
WORKLOADS = {
    "context spans": (CONTEXT, None),
    "LLM spans, priced": (LLM, None),
    "repaired spans (notes)": (LLM, {"repaired": set(REPAIRED), "renamed": {"gen_ai.provider.name"}}),
    "bare spans (all missing)": (BARE, None),
}


class FirstEnvelope:
    """The first envelope processor's per-span work, the baseline of this benchmark."""

    def __init__(self, survival: SurvivalRecorder) -> None:
        self.survival = survival
        self.required = ENVELOPE.default_required
        self.fields = ENVELOPE.context_keys

    def process(self, batch: TraceBatch) -> None:
        outcomes: Counter = Counter()
        for span in batch.records:
            attrs = span.attrs
            span.set("costctx.schema", "1")
            missing = [key for key in self.required if key not in attrs or not span.has(key)]
            if missing:
                span.append_strings("costctx.missing", missing)
            notes = span.notes
            renamed = notes.get("renamed", ()) if notes else ()
            repaired = notes.get("repaired", ()) if notes else ()
            conflict = notes.get("conflict", ()) if notes else ()
            for key in self.fields:
                if key in conflict:
                    outcome = "conflict"
                elif key in repaired:
                    outcome = "inherited"
                elif key in renamed:
                    outcome = "renamed"
                elif span.has(key):
                    outcome = "present"
                else:
                    outcome = "missing"
                outcomes[(span.hop, key, outcome)] += 1
        self.survival.record_many(outcomes)


def one_round(raw: bytes, notes: dict | None, processor) -> float:
    start = time.perf_counter()
    request = ExportTraceServiceRequest()
    request.ParseFromString(raw)
    batch = TraceBatch(request, raw)
    records = batch.records
    if notes:
        # What normalize and inherit would have left (outside the timed stage in real use
        # too: they pay for their own notes).
        pause = time.perf_counter()
        for rec in records:
            rec.notes = {name: set(keys) for name, keys in notes.items()}
        start += time.perf_counter() - pause
    if processor is not None:
        processor.process(batch)
    batch.request.SerializeToString()
    return time.perf_counter() - start


def envelope(record: bool) -> EnvelopeProcessor:
    context = Host(SidecarMetrics(), SurvivalRecorder())
    return EnvelopeProcessor("envelope", EnvelopeConfig(record_outcomes=record), context)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    variants = {
        "floor": None,
        "first": FirstEnvelope(SurvivalRecorder()),
        "off": envelope(False),
        "on": envelope(True),
    }
    print(f"{args.spans} spans per batch, fastest of {args.rounds} rounds; us per batch, and the stage's "
          "extra time over the floor per span")
    print(f"{'workload':26} {'floor':>7} {'first':>7} {'off':>7} {'on':>7} "
          f"{'first us/sp':>11} {'on us/sp':>9} {'on/first':>9}")
    for name, (attributes, notes) in WORKLOADS.items():
        raw = build_request([attributes], args.spans)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):  # interleaved, so a load spike hits every variant
            for variant, processor in variants.items():
                times[variant].append(one_round(raw, notes, processor))
        # The fastest round: the machine is shared, and contention only ever adds time.
        med = {v: min(t) for v, t in times.items()}
        extra_first = (med["first"] - med["floor"]) / args.spans
        extra_on = (med["on"] - med["floor"]) / args.spans
        print(f"{name:26} {med['floor'] * 1e6:7.0f} {med['first'] * 1e6:7.0f} {med['off'] * 1e6:7.0f} "
              f"{med['on'] * 1e6:7.0f} {extra_first * 1e6:11.2f} {extra_on * 1e6:9.2f} "
              f"{extra_on / extra_first:9.2f}")


if __name__ == "__main__":
    main()
