#!/usr/bin/env python
"""Profile the sidecar process under saturating load with py-spy (sampling, from outside).

    python bench/profile_sidecar.py [--processors off|all|normalize,inherit] [--seconds 8]

Starts the benchmark's sink, a sidecar and a saturating load generator, records the sidecar
with `py-spy record --format raw`, and prints where its samples go: by sidecar module (the
share of samples whose stack passes through it) and the functions with the most own samples.
Needs `py-spy` (pip install py-spy) and permission to ptrace the child process.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import PY, REPO, Plan, Pools, SinkProcess, start_sidecar  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^:()]+)(?::\d+)?\)$")


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
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
        for module in {file for _, file in names if file.startswith("sidecar/")}:
            modules[module] += n
    if not total:
        return "no samples (is ptrace allowed?)"
    lines = [f"{total} samples", "", "share of samples through each sidecar module:"]
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
            load = subprocess.Popen(
                [PY, str(REPO / "bench" / "loadgen.py"), "saturate", "--target", sidecar.target, "--pool", str(pool),
                 "--duration", str(args.seconds + 4), "--warmup", "1"],
                stdout=subprocess.DEVNULL, cwd=REPO)
            time.sleep(2)
            subprocess.run([pyspy, "record", "--pid", str(sidecar.proc.pid), "--duration", str(int(args.seconds)),
                            "--format", "raw", "--nonblocking", "-o", str(raw)], check=True, capture_output=True)
            load.wait(60)
        finally:
            sidecar.stop()
            sink.stop()
        print(f"processors: {processors or 'none'}; batch {args.batch}, +{args.attrs} attributes")
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
