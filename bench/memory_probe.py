"""`costctx` under a memory probe: bench/memory_profile.py starts the sidecar with this instead of
`python -m costctx` to look inside it while it runs.

With tracemalloc started before any import (`PYTHONTRACEMALLOC` in the environment or
`--frames`), SIGUSR1 writes, to `<dir>/probe-<n>.pickle`, what the process holds at that
moment: a tracemalloc snapshot, /proc/self/smaps_rollup, the live objects counted by type, the
sizes of the GC generations, then the objects a full collection finds unreachable (and RSS after it).
The probe adds no code path to the sidecar itself.

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


def anonymous_by_kind() -> dict[str, int]:
    """Resident kB of anonymous memory by what it most likely is: the main malloc heap (brk),
    glibc's per-thread malloc arenas (64 MiB reservations), thread stacks (8 MiB), and other
    mmaps: CPython's 1 MiB object arenas (the kernel merges adjacent ones into larger
    mappings, so most of them land in `other_mmap`) and large allocations."""
    out: dict[str, int] = {}
    kind = None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                size_kb = (end - start) // 1024
                name = parts[5] if len(parts) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif name:
                    kind = None  # file-backed or [stack]/[vdso]: not ours to split
                elif start % (64 << 20) == 0 or size_kb in (65536, 131072):
                    kind = "malloc_arena"  # an arena's heap, or its first half
                elif size_kb in (8192, 8196):
                    kind = "thread_stack"
                else:
                    kind = "other_mmap"
            elif parts[0] == "Rss:" and kind is not None:
                out[kind] = out.get(kind, 0) + int(parts[1])
    return out


def malloc_info() -> dict[str, int]:
    """glibc's own account (mallinfo2, all arenas), in kB: `arena` bytes taken from the OS by
    brk/arenas, `in_use` by live allocations, `free` held free inside them, `mmapped` in
    mmap'd chunks. {} when not glibc."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {"arena": info.arena // 1024, "in_use": info.uordblks // 1024, "free": info.fordblks // 1024,
            "mmapped": info.hblkhd // 1024}


def malloc_trim() -> bool:
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def live_objects_by_type() -> dict[str, int]:
    return dict(collections.Counter(type(o).__name__ for o in gc.get_objects()))


def queued_requests() -> dict[str, int]:
    """Requests the exporters' QueueItems keep alive (whether queued, being sent, or only still
    referenced): their count and payload bytes. An idle consumer once kept its last batch here."""
    from costctx.exporters.exporterhelper.queue import QueueItem

    items = [o for o in gc.get_objects() if isinstance(o, QueueItem)]
    return {"items": len(items), "payload_bytes": sum(len(item.payload) for item in items)}


def install(directory: Path) -> None:
    count = [0]

    def dump(signum: int, frame: object) -> None:
        count[0] += 1
        frozen = gc.get_freeze_count()
        # The running sidecar freezes what survives every 100 ms (service/gc_tuning.py), and
        # gc.get_objects() and gc.collect() skip frozen objects: count and collect them all
        # (its next step freezes them again).
        gc.unfreeze()
        probe = {
            "smaps_rollup": smaps_rollup(),
            "anonymous_by_kind": anonymous_by_kind(),
            "malloc": malloc_info(),
            "gc_counts": gc.get_count(),
            "gc_frozen": frozen,
            "objects_by_type": live_objects_by_type(),
            "queued_requests": queued_requests(),
            "tracemalloc": tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None,
        }
        # Cyclic garbage the collector's thresholds let accumulate: found by a full collection
        # now (which frees it, so the next window starts without it), with RSS after it.
        probe["gc_unreachable"] = gc.collect()
        probe["smaps_rollup_after_gc"] = smaps_rollup()
        # What glibc holds free inside its heaps and would give back if asked (malloc_trim
        # also returns free pages in the middle of the heap, not only at its top).
        probe["malloc_trimmed"] = malloc_trim()
        probe["smaps_rollup_after_trim"] = smaps_rollup()
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
