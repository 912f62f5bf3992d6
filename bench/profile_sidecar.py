#!/usr/bin/env python
"""Profile the sidecar process under saturating load with py-spy (sampling, from outside).

    python bench/profile_sidecar.py [--processors off|all|normalize,inherit] [--seconds 8] [--rate 10000]

Starts the benchmark's sink, a sidecar and a load generator (saturating, or at a fixed `--rate`
of spans/s as figures 2 and 3 offer it), records the sidecar with `py-spy record --format raw`,
and prints the sidecar's CPU over the window, where its samples go by phase (receive, the
pipeline's processors, export, the event loop and grpc's own threads), by sidecar module (the
share of samples whose stack passes through it) and the functions with the most own samples.
Needs `py-spy` (pip install py-spy) and permission to ptrace the child process.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, REPO, Plan, Pools, SinkProcess, cpu_seconds, start_sidecar  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^:()]+)(?::\d+)?\)$")

# The first marker (innermost first) found in a stack names its phase.
PHASES = (
    ("pipeline: processors", "Processor.process_view"),
    ("pipeline: processors", "Processor.process "),
    ("pipeline: payload (encode)", "ViewBatch.payload"),
    ("pipeline: other", "TracesPipeline._run"),
    ("receive: ingest (outside the pipeline)", "Ingest."),
    ("receive: grpc handler", "_export_handler"),
    ("export: queue, sender", "QueuedExporter"),
    ("export: queue, sender", "GrpcSender"),
    ("ticks, samplers", "_tick_loop"),
    ("ticks, samplers", "_sample_loop"),
    ("grpc poller thread", "Thread.run"),
)


def phase_of(stack: str) -> str:
    for name, marker in PHASES:
        if marker in stack:
            return name
    return "event loop, grpc callbacks (no costctx frame)"


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [FRAME.match(f) for f in stack.split(";")]
        names = [(m.group("func"), m.group("file")) if m else (f, "") for m, f in zip(frames, stack.split(";"),
                                                                                       strict=True)]
        func, file = names[-1]
        own[f"{func} ({file})"] += n
        phases[phase_of(stack)] += n
        for module in {file for _, file in names if file.startswith("costctx/") or "/" in file and
                       not file.startswith(("asyncio/", "grpc/", "<"))}:
            modules[module] += n
    if not total:
        return "no samples (is ptrace allowed?)"
    lines = [f"{total} samples", "", "share of samples by phase:"]
    lines += [f"  {100 * n / total:5.1f}%  {p}" for p, n in phases.most_common()]
    lines += ["", "share of samples through each sidecar module:"]
    lines += [f"  {100 * n / total:5.1f}%  {m}" for m, n in modules.most_common(top)]
    lines += ["", "functions with the most own samples:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processors", default="all", help="off, all (the defaults), or a comma-separated list")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--attrs", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", help="keep py-spy's raw output here")
    parser.add_argument("--native", action="store_true", help="py-spy --native: C frames too (gc, grpc core)")
    parser.add_argument("--sample-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--rate", type=float, help="spans/s offered at a fixed rate (default: saturate)")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    processors = {"off": [], "all": list(DEFAULT_TRACE_PROCESSORS)}.get(args.processors)
    if processors is None:
        processors = args.processors.split(",")
    with tempfile.TemporaryDirectory(prefix="costctx-profile-") as tmp:
        workdir = Path(tmp)
        pool = Pools(workdir, Plan(quick=False)).path(args.batch, args.attrs)
        raw = Path(args.raw) if args.raw else workdir / "pyspy.txt"
        sink = SinkProcess(workdir)
        sidecar = start_sidecar(workdir, "profile", processors, sink.port)
        try:
            mode = ["rate", "--rate", str(args.rate)] if args.rate else ["saturate"]
            load = subprocess.Popen(
                [PY, str(REPO / "bench" / "loadgen.py"), *mode, "--target", sidecar.target, "--pool", str(pool),
                 "--duration", str(args.seconds + 4), "--warmup", "1"],
                stdout=subprocess.PIPE, cwd=REPO, text=True)
            time.sleep(2)
            cpu_before, wall_before = cpu_seconds(sidecar.ps), time.monotonic()
            # py-spy refuses --native with --nonblocking: native stacks are read with the process paused.
            spy = subprocess.run([pyspy, "record", "--pid", str(sidecar.proc.pid), "--duration",
                                  str(int(args.seconds)), "--format", "raw", "--rate", str(args.sample_rate),
                                  "-o", str(raw), *(["--native"] if args.native else ["--nonblocking"])],
                                 capture_output=True, text=True)
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {spy.stderr.strip()[-500:]}")
            cpu = (cpu_seconds(sidecar.ps) - cpu_before) / (time.monotonic() - wall_before)
            out, _ = load.communicate(timeout=60)
        finally:
            sidecar.stop()
            sink.stop()
        report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        rate = report.get("spans_per_s") or 0.0
        latency = report.get("latency_ms", {})
        print(f"sidecar CPU {100 * cpu:.1f}% of a core (py-spy attached, which slows it a little) at "
              f"{rate:,.0f} spans/s delivered: {1e6 * cpu / rate if rate else float('nan'):.1f} us of CPU per span; "
              f"export call p50 / p99 {latency.get('p50') or 0:.2f} / {latency.get('p99') or 0:.2f} ms")
        print(f"processors: {processors or 'none'}; batch {args.batch}, +{args.attrs} attributes")
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
