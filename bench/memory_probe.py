"""`costctx` under a memory probe: bench/memory_profile.py starts the sidecar with this instead of
`python -m costctx` to look inside it while it runs.

With tracemalloc started before any import (`PYTHONTRACEMALLOC` in the environment or
`--frames`), SIGUSR1 writes, to `<dir>/probe-<n>.pickle`, what the process holds at that
moment: a tracemalloc snapshot, /proc/self/smaps_rollup, the live objects counted by type, and
the sizes of the GC generations. The probe adds no code path to the sidecar itself.

Usage: python bench/memory_probe.py --dir DIR [--frames N] -- run --config costctx.yaml
"""

from __future__ import annotations

import argparse
import collections
import gc
import pickle
import signal
import sys
import tracemalloc
from pathlib import Path


def smaps_rollup() -> dict[str, int]:
    """kB per field of /proc/self/smaps_rollup (Rss, Anonymous, Private_Dirty, ...)."""
    out: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def live_objects_by_type() -> dict[str, int]:
    return dict(collections.Counter(type(o).__name__ for o in gc.get_objects()))


def install(directory: Path) -> None:
    count = [0]

    def dump(signum: int, frame: object) -> None:
        count[0] += 1
        probe = {
            "smaps_rollup": smaps_rollup(),
            "gc_counts": gc.get_count(),
            "gc_frozen": gc.get_freeze_count(),
            "objects_by_type": live_objects_by_type(),
            "tracemalloc": tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None,
        }
        path = directory / f"probe-{count[0]}.pickle"
        with open(path.with_suffix(".tmp"), "wb") as f:
            pickle.dump(probe, f)
        path.with_suffix(".tmp").rename(path)  # the reader waits for the final name

    signal.signal(signal.SIGUSR1, dump)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=0, help="start tracemalloc with this many frames")
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.frames and not tracemalloc.is_tracing():
        tracemalloc.start(args.frames)
    install(args.dir)
    from costctx.cli.main import main as costctx_main

    return costctx_main(rest)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
