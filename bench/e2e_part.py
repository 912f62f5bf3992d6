#!/usr/bin/env python
"""One end-to-end part of bench/run.py at the default point, alone: the loop to run while changing
the path a figure depends on (run.py whole takes ~15 minutes and needs a quiet machine).

    python bench/e2e_part.py rate|latency|saturation [--codec native|python] [--off] [--duration S] [--repeat N]

`rate`: CPU % and peak RSS of a fresh sidecar at 10,000 spans/s offered; `latency`: added p50/p99
of an export call at 5,000 spans/s (complete spans), direct to the sink vs through the sidecar;
`saturation`: spans/s delivered. Every processor on with the default codec unless told; `--off`
adds the processors-off mode beside it. Prints the part's JSON, as run.py computes it.
`--repeat N`: N windows, each with a fresh sidecar, over the same pools and sink (one window
varies by +-15% on a shared machine): each window's JSON, then one line per window of the
headline figure and its spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["rate", "latency", "saturation"])
    parser.add_argument("--codec", choices=["native", "python"], help="the codec with every processor on")
    parser.add_argument("--off", action="store_true", help="measure processors off too")
    parser.add_argument("--duration", type=float, help="seconds per measurement (run.py's default otherwise)")
    parser.add_argument("--workdir", help="keep configs, pools and process logs here")
    parser.add_argument("--repeat", type=int, default=1, help="windows to run, one after another")
    args = parser.parse_args(argv)
    plan = run.Plan(quick=False, e2e_sweep=False, two_sidecars=False)
    if args.codec:
        plan.codecs = [args.codec]
    if args.duration:
        plan.saturation_s = plan.rate_s = args.duration
    modes = run.full_modes(plan)
    if not args.off:
        modes.pop("off")
    run.full_modes = lambda _plan: modes  # the parts iterate over these modes
    with run.workspace(args.workdir) as workdir:
        pools = run.Pools(workdir, plan)
        sink = run.SinkProcess(workdir)
        outs = []
        try:
            for _ in range(args.repeat):
                if args.part == "rate":
                    out = run.fixed_rate_cost(sink, pools, plan, workdir)["default"]
                elif args.part == "latency":
                    out = run.latency(sink, pools, plan, workdir, plan.latency_rate, plan.points(False))["default"]
                else:
                    out = run.saturation(sink, pools, plan, workdir)["default"]
                print(json.dumps(out, indent=1, default=str), flush=True)
                outs.append(out)
        finally:
            sink.stop()
    if args.repeat > 1:
        summarize(args.part, outs)
    return 0


HEADLINES = {"rate": ("cpu_pct_per_10k_delivered", "% of a core per 10k delivered"),
             "latency": ("added_p99_ms", "added p99 ms"), "saturation": ("spans_per_s", "spans/s")}


def headlines(part: str, out: dict) -> dict[str, float]:
    """The part's headline figure by mode in one window's JSON."""
    key, _ = HEADLINES[part]
    if part == "latency":  # added_p99_ms_<mode> beside the modes' rows
        return {k.removeprefix(f"{key}_"): v for k, v in out.items() if k.startswith(f"{key}_") and v is not None}
    return {mode: v[key] for mode, v in out.items() if isinstance(v, dict) and key in v}


def summarize(part: str, outs: list[dict]) -> None:
    """The headline figure of each window and mode, then its least, median and most."""
    _, unit = HEADLINES[part]
    for mode in headlines(part, outs[0]):
        values = [headlines(part, out)[mode] for out in outs]
        print(f"{mode}: {unit}: " + ", ".join(f"{v:.2f}" for v in values)
              + f" (least {min(values):.2f}, median {statistics.median(values):.2f}, most {max(values):.2f})")


if __name__ == "__main__":
    raise SystemExit(main())
