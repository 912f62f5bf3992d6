#!/usr/bin/env python
"""Which structures of the running pipeline hold memory, and how it grows with traffic.

Builds the in-process stage of bench/inprocess.py (every default processor, the real
pipeline, exporters swapped for a counter) and feeds it the bench workload at the default
point (100 spans/batch, +4 attributes, mixed), each pass with fresh trace/workflow ids as
bench/run.py's load does. At each checkpoint (spans fed: 100,000 = 10 s at 10,000 spans/s,
then more, towards the bounds) it walks every processor's attributes and reports each
structure: its entries (len) and its deep size (objects reachable from it and not from a
structure reported before it), largest first. A native table (one with `nbytes()`: the span-key
tables, inherit's ancestor table) is reported with the bytes it holds outside Python, marked
[native]; what it holds in Python objects is reported beside it as before.

    python bench/memory_structures.py [--checkpoints 100000,300000,1000000] [--top 25] [--json out]

Spans are fed as fast as the stage runs (~30,000 spans/s), so a structure bounded by age
(TTL) shows what the same number of spans would leave behind sooner than in real time: read
entries against spans fed, and the bounds below against `rate x TTL`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
        types.CodeType, types.FrameType)


def deep_size(root: object, seen: set[int]) -> int:
    """Bytes of `root` and everything it reaches that `seen` does not hold yet (then it does)."""
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, SKIP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def ours(obj: object) -> bool:
    return type(obj).__module__.startswith("costctx") and hasattr(obj, "__dict__") or hasattr(obj, "__slots__") \
        and type(obj).__module__.startswith("costctx")


def attributes(obj: object) -> list[tuple[str, object]]:
    names = list(getattr(obj, "__dict__", {}).items())
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                names.append((slot, getattr(obj, slot)))
    return names


def structures(root: object, path: str, seen: set[int], out: list[dict], depth: int = 0) -> None:
    """Walk our own objects' attributes; report each other object (a container, a cache) as one structure."""
    if id(root) in seen or depth > 6:
        return
    seen.add(id(root))
    for name, value in attributes(root):
        if isinstance(value, SKIP) or id(value) in seen:
            continue
        where = f"{path}.{name}"
        if ours(value):
            nbytes = getattr(value, "nbytes", None)
            if callable(nbytes):  # a native table (native/src/table.rs, ancestors.rs): its own count
                out.append({"structure": f"{where} [native]", "type": type(value).__name__,
                            "entries": len(value), "bytes": nbytes()})
            structures(value, where, seen, out, depth + 1)
            continue
        try:
            entries = len(value)  # type: ignore[arg-type]
        except TypeError:
            entries = None
        size = deep_size(value, seen)
        if size >= 4096:
            out.append({"structure": where, "type": type(value).__name__, "entries": entries, "bytes": size})


def measure(stage, spans_fed: int) -> dict:
    gc.collect()
    seen: set[int] = set()
    # What every structure may point into but does not own: modules, config, tables.
    for obj in gc.get_objects():
        if isinstance(obj, (types.ModuleType, type)):
            seen.add(id(obj))
    out: list[dict] = []
    for processor in stage.pipeline.processors:
        structures(processor, type(processor).__module__.split(".")[-2], seen, out)
    out.sort(key=lambda r: r["bytes"], reverse=True)
    # Objects the cyclic GC tracks: what a full collection walks (fewer, shorter pauses).
    return {"spans_fed": spans_fed, "structures": out, "total_bytes": sum(r["bytes"] for r in out),
            "gc_tracked": len(gc.get_objects())}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default="100000,300000,1000000")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json")
    args = parser.parse_args()
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, batches=200))
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    batch, consume, tick = stage.pipeline.batch, stage.pipeline.consume, stage.pipeline.tick
    fed, cycle, results = 0, 0, []
    started = time.monotonic()
    for checkpoint in checkpoints:
        while fed < checkpoint:
            cycle += 1
            for i, body in enumerate(fresh_ids(pool, cycle)):
                consume(batch(body))
                fed += 100
                if i % 16 == 15:
                    tick(time.monotonic())
        result = measure(stage, fed)
        result["elapsed_s"] = time.monotonic() - started
        results.append(result)
        print(f"\n{fed:,} spans fed ({result['elapsed_s']:.0f} s): structures hold "
              f"{result['total_bytes'] / 2**20:.1f} MB; the GC tracks {result['gc_tracked']:,} objects")
        for r in result["structures"][: args.top]:
            per = f"{r['bytes'] / r['entries']:.0f} B/entry" if r["entries"] else ""
            print(f"  {r['bytes'] / 2**20:7.2f} MB {r['entries'] if r['entries'] is not None else '':>9} "
                  f"{per:>13}  {r['structure']} ({r['type']})")
    await stage.sidecar.stop(1.0) if hasattr(stage.sidecar, "stop") else None
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
