#!/usr/bin/env python
"""Where the real sidecar's CPU goes at a fixed rate: every us per span delivered, by phase.

    python bench/cpu_account.py [--mode on|off|both] [--rate 10000 | --saturate] [--duration 10] [--codec native]
    python bench/cpu_account.py --in-process [--gaps-ms 0,9] [--rounds 3] [--codec native]

Starts the benchmark's sink and a `costctx run` sidecar under bench/cpu_probe.py (which times
each phase of a request in thread CPU time, in the sidecar process), offers `--rate` spans/s of
the default point (100 spans/batch, +4 attributes) as bench/run.py's figure 2 does, and prints,
per span delivered over the window: the process's CPU, the event loop thread's and each other
thread's (grpc's poller and the rest), and the loop thread's CPU by phase (receive, scan,
each processor, encode, exporter submit, ticks, GC), the rest of the loop thread being the
event loop, grpc.aio's callbacks and the exporter's coroutines.

`--in-process`: the same probe and phases on the same pool in this process, every processor on,
requests through the receiver's entry (Ingest.export_protobuf) with no gRPC and no other thread,
back to back (gap 0) and with each gap in `--gaps-ms` slept after every request (`spin9`: 9 ms
spent in a busy loop instead), the gaps alternating within each round (median of the rounds).
At 10,000 spans/s of 100-span requests a sidecar sees a request every 10 ms: the gap shows what
the same work costs when it starts cold (other work ran in between), apart from what the sidecar
adds around it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, REPO, Plan, Pools, SidecarProcess, SinkProcess, Window, cpu_seconds, run_load  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def snapshot(sidecar: SidecarProcess, workdir: Path, n: int) -> dict:
    path = workdir / f"cpu-{n}.json"
    sidecar.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path} from the probe; see {sidecar.log_path}")
        time.sleep(0.01)
    return json.loads(path.read_text())


def measure(mode: str, args: argparse.Namespace, workdir: Path, sink: SinkProcess, pools: Pools, plan: Plan) -> dict:
    processors = list(DEFAULT_TRACE_PROCESSORS) if mode == "on" else []
    probe_dir = workdir / f"probe-{mode}"
    probe_dir.mkdir(exist_ok=True)

    class ProbedSidecar(SidecarProcess):
        command = [PY, str(REPO / "bench" / "cpu_probe.py"), "--dir", str(probe_dir), "--"]

    sidecar = ProbedSidecar(workdir, f"cpu-{mode}", processors, sink.port, codec=args.codec if mode == "on" else None)
    snaps: list[dict] = []
    try:
        window = Window({"forwarded": sidecar.forwarded, "cpu": lambda: cpu_seconds(sidecar.ps),
                         "snap": lambda: snaps.append(snapshot(sidecar, probe_dir, len(snaps) + 1)) or 0.0}, None)
        load = run_load("saturate" if args.saturate else "rate", sidecar.target,
                        pools.path(plan.default_batch, plan.default_attrs), plan, window, duration=args.duration,
                        rate=None if args.saturate else args.rate, workdir=workdir)
    finally:
        sidecar.stop()
    before, after = snaps
    spans = window.delta("forwarded")
    per_span = 1e6 / spans if spans else float("nan")

    def diff(key: str) -> dict[str, float]:
        return {k: (v - before[key].get(k, 0.0)) * per_span for k, v in after[key].items()}

    def faults(key: str) -> dict[str, float]:  # per 100 spans delivered: per request at the default point
        return {k: (v - before.get(key, {}).get(k, 0)) * 100 / spans for k, v in after.get(key, {}).items()}

    threads = diff("threads")
    phases = diff("phases")
    main = threads.get("main", 0.0)
    return {"mode": mode, "delivered_spans_per_s": window.rate("forwarded"),
            "cpu_pct": 100 * window.rate("cpu"),
            "process_us_per_span": (after["process"] - before["process"]) * per_span,
            "threads_us_per_span": threads, "phases_us_per_span": phases,
            "loop_rest_us_per_span": main - sum(phases.values()),
            "loadgen_cpu_pct": 100 * window.rate("loadgen_cpu"), "refused_requests": load["requests_refused"],
            "calls": {k: v - before["calls"].get(k, 0) for k, v in after["calls"].items()},
            "collected": {k: v - before["collected"].get(k, 0) for k, v in after["collected"].items()},
            "faults_per_100_spans": faults("faults"), "thread_faults_per_100_spans": faults("thread_faults"),
            "machine_busy_pct": window.machine_busy_pct()}


def show(result: dict) -> None:
    print(f"\nprocessors {result['mode']}: delivered {result['delivered_spans_per_s']:,.0f} spans/s, "
          f"{result['cpu_pct']:.1f}% of a core, {result['process_us_per_span']:.2f} us of CPU per span "
          f"(machine {result['machine_busy_pct']:.0f}% busy, load generator {result['loadgen_cpu_pct']:.0f}%, "
          f"{result['refused_requests']} requests refused)")
    print("  threads, us/span: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                             sorted(result["threads_us_per_span"].items(), key=lambda kv: -kv[1])))
    print("  event loop thread by phase, us/span:")
    for phase, us in sorted(result["phases_us_per_span"].items(), key=lambda kv: -kv[1]):
        freed = f", {result['collected'][phase]} objects freed" if phase in result["collected"] else ""
        print(f"    {us:6.2f}  {phase}  ({result['calls'].get(phase, 0)} calls{freed})")
    print(f"    {result['loop_rest_us_per_span']:6.2f}  the rest: event loop, grpc.aio callbacks, exporter coroutines")
    thread_faults = result.get("thread_faults_per_100_spans", {})
    if thread_faults:
        print("  minor page faults per 100 spans delivered, by thread: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(thread_faults.items(), key=lambda kv: -kv[1]) if v >= 0.05))
        phase_faults = result["faults_per_100_spans"]
        loop = thread_faults.get("main", 0.0)
        print("    event loop thread by phase: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(phase_faults.items(), key=lambda kv: -kv[1]) if v >= 0.05)
            + f", the rest {loop - sum(phase_faults.values()):.1f}")


def in_process(args: argparse.Namespace, pool: list[bytes], spans_per_request: int) -> dict[str, dict]:
    import asyncio
    import statistics

    from bench import cpu_probe

    with tempfile.TemporaryDirectory(prefix="costctx-cpu-") as tmp:
        cpu_probe.install(Path(tmp))  # before the pipeline is built: it wraps the processors then
    from bench.inprocess import COLLECTOR, build_stage, fresh_ids
    from costctx.pdata.signals import TRACES

    stage = asyncio.run(build_stage(list(DEFAULT_TRACE_PROCESSORS), args.codec))
    export, tick = stage.sidecar.ingest.export_protobuf, stage.pipeline.tick
    gaps = [gap_of(token) for token in args.gaps_ms.split(",")]
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in gaps}

    def one_pass(cycle: int, gap: float, spin: bool) -> dict:
        bodies = fresh_ids(pool, cycle)
        for table in (cpu_probe.SPENT, cpu_probe.CALLS, cpu_probe.FAULTS):
            table.clear()
        started = time.thread_time()
        for i, body in enumerate(bodies):
            export(TRACES, body, "grpc")
            COLLECTOR.step_if_due(time.monotonic())  # between requests, as the sidecar's loop runs it
            if i % 16 == 15:
                tick(time.monotonic())
            if spin:
                until = time.perf_counter() + gap
                while time.perf_counter() < until:
                    spun[0] += 1
            elif gap:
                time.sleep(gap)
        per_span = 1e6 / (len(bodies) * spans_per_request)
        phases = {k: v * per_span for k, v in cpu_probe.SPENT.items()}
        # A spun gap is CPU of this thread: the total is the phases' then.
        total = sum(phases.values()) if spin else (time.thread_time() - started) * per_span
        return {"total": total, "phases": phases, "rest": total - sum(phases.values())}

    spun = [0]
    one_pass(1, 0.0, False)  # warm-up: imports, caches, first-use allocations
    for r in range(args.rounds):
        for g, (label, gap, spin) in enumerate(gaps):
            runs[label].append(one_pass(2 + r * len(gaps) + g, gap, spin))
    stage.pipeline.shutdown()
    out = {}
    for label, passes in runs.items():
        names = {k for p in passes for k in p["phases"]}
        out[label] = {"total": statistics.median(p["total"] for p in passes),
                    "rest": statistics.median(p["rest"] for p in passes),
                    "phases": {k: statistics.median(p["phases"].get(k, 0.0) for p in passes) for k in names}}
    return out


def gap_of(token: str) -> tuple[str, float, bool]:
    """`9` (ms slept after each request) or `spin9` (ms spent in a busy loop): (label, seconds, spun)."""
    spin = token.startswith("spin")
    ms = float(token.removeprefix("spin"))
    if ms < 0:
        raise SystemExit(f"a gap is not negative: {token}")
    return f"{ms:g} ms{' spun' if spin else ''}", ms / 1000, spin


def show_in_process(results: dict[str, dict]) -> None:
    gaps = list(results)
    print("\nin process, every processor on, us of CPU per span (median of the rounds), by gap after each request:")
    print(f"    {'':44}" + "".join(f"{gap:>12}" for gap in gaps))
    first = results[gaps[0]]
    for phase in sorted(first["phases"], key=lambda k: -first["phases"][k]):
        print(f"    {phase[:44]:44}" + "".join(f"{results[gap]['phases'].get(phase, 0.0):12.2f}" for gap in gaps))
    print(f"    {'the rest (this loop, the sleep call)':44}" + "".join(f"{results[g]['rest']:12.2f}" for g in gaps))
    print(f"    {'total':44}" + "".join(f"{results[gap]['total']:12.2f}" for gap in gaps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["on", "off", "both"], default="both")
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--codec", default="native")
    parser.add_argument("--saturate", action="store_true", help="offer as much as the sidecar takes instead")
    parser.add_argument("--in-process", action="store_true", help="the phases in this process, no sidecar")
    parser.add_argument("--gaps-ms", default="0,9", help="--in-process: ms slept after each request (spinN: spun)")
    parser.add_argument("--rounds", type=int, default=3, help="--in-process: passes over the pool per gap")
    parser.add_argument("--json")
    args = parser.parse_args()
    plan = Plan(quick=False, codecs=[args.codec])
    results = []
    with tempfile.TemporaryDirectory(prefix="costctx-cpu-") as tmp:
        workdir = Path(tmp)
        pools = Pools(workdir, plan)
        if args.in_process:
            inproc = in_process(args, pools.requests(plan.default_batch, plan.default_attrs), plan.default_batch)
            show_in_process(inproc)
            if args.json:
                Path(args.json).write_text(json.dumps(inproc, indent=1))
            return 0
        sink = SinkProcess(workdir)
        try:
            for mode in (["on", "off"] if args.mode == "both" else [args.mode]):
                results.append(measure(mode, args, workdir, sink, pools, plan))
                show(results[-1])
        finally:
            sink.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
