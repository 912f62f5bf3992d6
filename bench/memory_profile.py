"""Where the sidecar's memory goes: after start-up and after N seconds at a fixed rate.

Starts the bench sink and one `costctx run` (bench/run.py's sidecar config, the default point)
under bench/memory_probe.py, then reads the process at three moments: right after start-up,
and after `--duration` seconds of load at `--rate` spans/s (twice: the second read after a
further `--duration`, to tell what settles from what keeps growing). For each: RSS, anonymous
and file-backed memory (/proc/PID/smaps_rollup), the peak (VmHWM), and, with `--frames`,
tracemalloc's largest growths by file:line and the object types that grew.

Usage: python bench/memory_profile.py [--mode on|off] [--codec native|python] [--rate 10000]
       [--duration 10] [--frames 1] [--top 25] [--workdir DIR] [--json out.json]
tracemalloc slows the sidecar ~2x and adds its own memory: read RSS figures from a run
without `--frames`, allocation sites from one with it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, REPO, Plan, Pools, SidecarProcess, SinkProcess, Window, cpu_seconds, run_load  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def probe(sidecar: SidecarProcess, directory: Path, n: int, timeout: float = 120.0) -> dict:
    os.kill(sidecar.proc.pid, signal.SIGUSR1)
    path = directory / f"probe-{n}.pickle"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or sidecar.proc.poll() is not None:
            raise RuntimeError(f"no probe from the sidecar; see {sidecar.log_path}")
        time.sleep(0.1)
    with path.open("rb") as f:
        out = pickle.load(f)
    out["vm_hwm_mb"] = vm_hwm_mb(sidecar.proc.pid)
    return out


def summary(p: dict) -> dict:
    s = p["smaps_rollup"]
    return {"rss_mb": s["Rss"] / 1024, "anon_mb": s["Anonymous"] / 1024,
            "file_mb": (s["Rss"] - s["Anonymous"]) / 1024, "peak_mb": p["vm_hwm_mb"],
            "anon_by_kind_mb": {k: v / 1024 for k, v in sorted(p.get("anonymous_by_kind", {}).items())},
            "malloc_mb": {k: v / 1024 for k, v in p.get("malloc", {}).items()},
            "gc_unreachable": p.get("gc_unreachable"),
            "queued_requests": p.get("queued_requests"),
            "delivered_spans_per_s": p.get("delivered_spans_per_s"), "cpu_pct": p.get("cpu_pct"),
            "rss_after_gc_mb": p["smaps_rollup_after_gc"]["Rss"] / 1024 if "smaps_rollup_after_gc" in p else None,
            "rss_after_trim_mb": p["smaps_rollup_after_trim"]["Rss"] / 1024 if "smaps_rollup_after_trim" in p else None}


def growth(before: dict, after: dict, top: int) -> dict:
    out: dict = {}
    if before["tracemalloc"] is not None:
        stats = after["tracemalloc"].compare_to(before["tracemalloc"], "lineno")
        out["traced_mb"] = (sum(s.size for s in after["tracemalloc"].statistics("filename")) / 2**20)
        out["lines"] = [{"where": f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}",
                         "size_diff_kb": s.size_diff / 1024, "size_kb": s.size / 1024,
                         "count_diff": s.count_diff} for s in stats[:top]]
    a, b = after["objects_by_type"], before["objects_by_type"]
    types = sorted(a, key=lambda t: a[t] - b.get(t, 0), reverse=True)[:top]
    out["object_types"] = {t: {"count": a[t], "diff": a[t] - b.get(t, 0)} for t in types}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["on", "off"], default="on")
    parser.add_argument("--codec", default=None)
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--workdir")
    parser.add_argument("--json")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="costctx-mem-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan(quick=False, codecs=["native"])
    pools = Pools(workdir, plan)
    pool = pools.path(plan.default_batch, plan.default_attrs)
    processors = list(DEFAULT_TRACE_PROCESSORS) if args.mode == "on" else []

    class ProbedSidecar(SidecarProcess):
        command = [PY, str(REPO / "bench" / "memory_probe.py"), "--dir", str(workdir),
                   "--frames", str(args.frames), "--"]

    sink = SinkProcess(workdir)
    try:
        sidecar = ProbedSidecar(workdir, f"mem-{args.mode}", processors, sink.port, codec=args.codec)
        try:
            time.sleep(1.0)
            probes = [probe(sidecar, workdir, 1)]
            for i in (2, 3):
                window = Window({"cpu": lambda: cpu_seconds(sidecar.ps), "forwarded": sidecar.forwarded}, sidecar.ps)
                run_load("rate", sidecar.target, pool, plan, window, duration=args.duration, rate=args.rate,
                         workdir=workdir)
                probes.append(probe(sidecar, workdir, i))
                # Memory grows with what was processed: below the offered rate, the figures are lower.
                probes[-1]["delivered_spans_per_s"] = window.rate("forwarded")
                probes[-1]["cpu_pct"] = 100 * window.rate("cpu")
        finally:
            sidecar.stop()
    finally:
        sink.stop()
    result = {"mode": args.mode, "codec": args.codec, "rate": args.rate, "duration_s": args.duration,
              "frames": args.frames,
              "after_start": summary(probes[0]), "after_load": summary(probes[1]),
              "after_load_twice": summary(probes[2]),
              "growth_first": growth(probes[0], probes[1], args.top),
              "growth_second": growth(probes[1], probes[2], args.top)}
    for name in ("after_start", "after_load", "after_load_twice"):
        r = result[name]
        if r["delivered_spans_per_s"] is not None:
            print(f"{name:>16}: delivered {r['delivered_spans_per_s']:,.0f} spans/s at {r['cpu_pct']:.0f}% of a core")
        print(f"{name:>16}: RSS {r['rss_mb']:.1f} MB (anon {r['anon_mb']:.1f}, file {r['file_mb']:.1f}), "
              f"peak {r['peak_mb']:.1f} MB; a full collection then found {r['gc_unreachable']} unreachable "
              f"objects (RSS {r['rss_after_gc_mb']:.1f} MB after it; {r['rss_after_trim_mb'] or 0:.1f} MB "
              f"after malloc_trim)")
        print(" " * 18 + "anonymous: " + ", ".join(f"{k} {v:.1f}" for k, v in r["anon_by_kind_mb"].items()))
        print(" " * 18 + "malloc: " + ", ".join(f"{k} {v:.1f}" for k, v in r["malloc_mb"].items()))
        queued = r["queued_requests"]
        if queued is not None:
            print(" " * 18 + f"exporter requests alive: {queued['items']} "
                  f"({queued['payload_bytes'] / 2**20:.1f} MB; queued, being sent or still referenced)")
    for name in ("growth_first", "growth_second"):
        g = result[name]
        print(f"\n{name}: " + (f"traced {g['traced_mb']:.1f} MB" if "traced_mb" in g else ""))
        for line in g.get("lines", []):
            print(f"  {line['size_diff_kb']:+9.1f} kB {line['count_diff']:+8d}  {line['where']}")
        print("  objects: " + ", ".join(f"{t} {v['diff']:+d}" for t, v in g["object_types"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
