#!/usr/bin/env python
"""Where an export call's latency comes from, call by call (issue 15's p99).

    python bench/latency_trace.py [--processors all|off] [--rate 5000] [--duration 20] [--codec native]

Runs the benchmark's sink, a sidecar under bench/latency_probe.py and the load generator at a
fixed rate (run.py's latency part: complete spans, 100 spans/batch, +4 attrs), then matches each
call the load generator timed with what the sidecar recorded meanwhile. Per call: `queued`
(sent -> the handler runs: the client's send, gRPC, and waiting for the event loop), `scan`
and `pipeline` (inside the handler), `handler_other`, `after` (handler returned -> the client
has the answer), the GC pauses inside the call by generation, and the event-loop callbacks
other than its own that ran while it waited. Prints percentiles of each part and the slowest
calls taken apart.
"""

from __future__ import annotations

import argparse
import bisect
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, REPO, Plan, Pools, SidecarProcess, SinkProcess  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def analyse(calls: list[tuple[float, float]], rec: dict, top: int) -> dict:
    handlers = sorted(rec["handler"])
    starts = [h[0] for h in handlers]
    consume = sorted(rec["consume"])
    received = sorted(rec["received"])
    rows = []
    for sent, done in calls:
        i = bisect.bisect_left(starts, sent)
        if i >= len(handlers) or handlers[i][0] > done:
            continue
        h0, h1 = handlers[i]
        pipe = sum(overlap(c0, c1, h0, h1) for c0, c1 in consume if c0 < h1 and c1 > h0)
        scan = sum(overlap(r0, r1, h0, h1) for r0, r1 in received if r0 < h1 and r1 > h0)
        gcs = {0: 0.0, 1: 0.0, 2: 0.0}
        for gen, g0, g1, _ in rec["gc"]:
            if g0 < done and g1 > sent:
                gcs[gen] += overlap(g0, g1, sent, done)
        others = [(s0, s1, name) for s0, s1, name in rec["slow"]
                  if s0 < h0 and s1 > sent and not (s0 >= h0 - 1e-4 and s1 <= h1 + 1e-4)]
        waited_behind = sum(overlap(s0, s1, sent, h0) for s0, s1, _ in others)
        rows.append({
            "total": (done - sent) * 1e3, "queued": (h0 - sent) * 1e3, "scan": scan * 1e3, "pipeline": pipe * 1e3,
            "handler_other": (h1 - h0 - pipe - scan) * 1e3, "after": (done - h1) * 1e3,
            "gc0": gcs[0] * 1e3, "gc1": gcs[1] * 1e3, "gc2": gcs[2] * 1e3,
            "behind_other_callbacks": waited_behind * 1e3,
            "behind": sorted({f"{name.split(' at 0x')[0][:90]} {(s1 - s0) * 1e3:.1f}ms" for s0, s1, name in others
                              if overlap(s0, s1, sent, h0) > 0}),
        })
    parts = ["total", "queued", "scan", "pipeline", "handler_other", "after", "gc0", "gc1", "gc2",
             "behind_other_callbacks"]
    summary = {p: {q: round(pct([r[p] for r in rows], v), 3) for q, v in (("p50", .5), ("p90", .9), ("p99", .99))}
               for p in parts}
    gc_by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for gen, g0, g1, _ in rec["gc"]:
        gc_by_gen[gen].append((g1 - g0) * 1e3)
    slowest = sorted(rows, key=lambda r: -r["total"])[:top]
    in_calls = [r["gc0"] + r["gc1"] + r["gc2"] for r in rows]
    summary["gc_in_a_call"] = {"max": round(max(in_calls, default=0.0), 2),
                               "calls_over_1ms": sum(v > 1 for v in in_calls),
                               "calls_over_5ms": sum(v > 5 for v in in_calls)}
    return {"calls": len(rows), "summary_ms": summary,
            "at_exit": {k: rec.get(k) for k in ("frozen_at_exit", "counts_at_exit", "unreachable_at_exit")},
            "leak_checks": rec.get("leak_checks", []),
            "gc_pauses_ms": {g: {"count": len(v), "max": round(max(v), 2) if v else 0,
                                 "p50": round(pct(v, .5), 3)} for g, v in gc_by_gen.items()},
            "ticks": {"count": len(rec["tick"]), "max_ms": round(max(((b - a) * 1e3 for a, b in rec["tick"]),
                                                                      default=0), 3)},
            "slowest": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in slowest]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processors", default="all", help="all, off, or a comma-separated list")
    parser.add_argument("--rate", type=float, default=5_000.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--codec", default=None)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--no-full", action="store_true", help="the sidecar's GcScheduler makes no full collection")
    parser.add_argument("--leak-checks", type=int, default=0,
                        help="this many full collections over the frozen heap during the load (SIGUSR2)")
    args = parser.parse_args(argv)
    processors = {"all": list(DEFAULT_TRACE_PROCESSORS), "off": []}.get(args.processors,
                                                                       args.processors.split(","))
    plan = Plan(quick=False)
    with tempfile.TemporaryDirectory(prefix="costctx-lat-") as tmp:
        workdir = Path(tmp)
        probe_out = workdir / "probe.json"
        trace_out = workdir / "calls.json"

        class Probed(SidecarProcess):
            command = [PY, str(REPO / "bench" / "latency_probe.py"), "--out", str(probe_out),
                       *(["--no-full"] if args.no_full else []), "--"]

        pools = Pools(workdir, plan)
        pool = pools.path(plan.default_batch, plan.default_attrs, complete=True)
        sink = SinkProcess(workdir)
        try:
            sidecar = Probed(workdir, "probed", processors, sink.port, codec=args.codec)
            try:
                load = subprocess.Popen([PY, str(REPO / "bench" / "loadgen.py"), "rate", "--target", sidecar.target,
                                         "--pool", str(pool), "--duration", str(args.duration), "--warmup",
                                         str(plan.warmup_s), "--rate", str(args.rate), "--trace", str(trace_out),
                                         "--cycle-offset", "7000"], stdout=subprocess.DEVNULL, cwd=REPO)
                for _ in range(args.leak_checks):
                    time.sleep(args.duration / (args.leak_checks + 1))
                    sidecar.proc.send_signal(signal.SIGUSR2)
                if load.wait() != 0:
                    raise RuntimeError("load generator failed")
            finally:
                sidecar.stop()
        finally:
            sink.stop()
        out = analyse(json.loads(trace_out.read_text()), json.loads(probe_out.read_text()), args.top)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
