#!/usr/bin/env python
"""What a put into inherit's native ancestor table costs, builds side by side in one process.

    python bench/inherit_puts.py [--rounds 15] [BUILD.so ...]

- replay: the puts (and batch times) the stage normalize -> limits -> inherit makes on the
  bench workload (bench/workload.py, mixed and complete, 5 passes of 20 batches) are
  logged once, then replayed into a fresh table per build: records (Known objects made by
  the table) and, for the last build, objects (the Known kept as it is, no records);
- churn: 300,000 puts of random keys through a table bounded at 50,000 (an eviction per
  put once full), then 50,000 peeks; with the table's own bytes.
Each figure is the least of `--rounds` (contention only adds time). BUILD.so: copies of
costctx_native/_core*.so from other builds (to compare a change against its base, copy the
base's .so aside before rebuilding); none: the installed one.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.machinery
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.processors.inherit import context_cache as cc  # noqa: E402


def load_tables(paths: list[str]) -> dict[str, type]:
    if not paths:
        from costctx_native._core import AncestorTable
        return {"installed": AncestorTable}
    tables = {}
    for path in paths:
        loader = importlib.machinery.ExtensionFileLoader("costctx_native._core", path)
        spec = importlib.util.spec_from_file_location("costctx_native._core", path, loader=loader)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        loader.exec_module(module)
        tables[Path(path).name] = module.AncestorTable
    return tables


def log_puts(complete: bool) -> list[tuple]:
    """(0, key, known) per put, (1, keys, known) per put_many, (2, time or None, None) per
    batch start and end, as the stage makes them."""
    log: list[tuple] = []
    original_init, original_now = cc.NativeContextCache.__init__, cc.NativeContextCache.now

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        put, put_many = self.put, self.put_many
        self.put = lambda key, known: (log.append((0, key, known)), put(key, known))
        self.put_many = lambda keys, known: (log.append((1, list(keys), known)), put_many(keys, known))

    def set_now(self, value):
        log.append((2, value, None))
        self._table.now = value

    async def run():
        pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=20))
        stage = await build_stage(["normalize", "limits", "inherit"])
        for cycle in range(1, 6):
            time_pipeline(stage, fresh_ids(pool, cycle))
        stage.pipeline.shutdown()
        await stage.pipeline.close()

    cc.NativeContextCache.__init__ = init  # type: ignore[method-assign]
    cc.NativeContextCache.now = original_now.setter(set_now)  # type: ignore[method-assign]
    try:
        asyncio.run(run())
    finally:
        cc.NativeContextCache.__init__ = original_init  # type: ignore[method-assign]
        cc.NativeContextCache.now = original_now  # type: ignore[method-assign]
    return log


def replay(table_class: type, log: list[tuple], known_class: type | None) -> float:
    table = table_class(50_000, 60.0, time.monotonic, 256, known_class)
    start = time.process_time()
    for op, keys, known in log:
        if op == 0:
            table.put_known(keys, known)
        elif op == 1:
            table.put_many_known(keys, known)
        else:
            table.now = time.monotonic() if keys is not None else None
    return time.process_time() - start


def churn(table_class: type, keys: list[bytes], knowns: list) -> tuple[float, float, int]:
    table = table_class(50_000, 600.0, time.monotonic, 256, cc.Known)
    table.now = 1.0
    start = time.process_time()
    for i, key in enumerate(keys):
        table.put_known(key, knowns[i // 100])
    put = time.process_time() - start
    start = time.process_time()
    for key in keys[-50_000:]:
        table.peek(key)
    return put, time.process_time() - start, table.nbytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("builds", nargs="*")
    args = parser.parse_args()
    tables = load_tables(args.builds)
    last = list(tables.values())[-1]
    for complete in (False, True):
        log = log_puts(complete)
        puts = sum(1 if op == 0 else len(keys) for op, keys, _ in log if op != 2)
        least: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, table_class in tables.items():
                least[name] = min(least.get(name, 9e9), replay(table_class, log, cc.Known))
            least["objects"] = min(least.get("objects", 9e9), replay(last, log, None))
        figures = ", ".join(f"{name} {seconds / puts * 1e6:.3f}" for name, seconds in least.items())
        print(f"replay {'complete' if complete else 'mixed'}, {puts} puts, us/put: {figures}")
    keys = [os.urandom(24) for _ in range(300_000)]
    knowns = [cc.Known({"workflow.id": f"wf-{i}", "owner.team": "t"}, "svc", 1, frozenset()) for i in range(3_000)]
    best = {name: [9e9, 9e9, 0] for name in tables}
    for _ in range(max(1, args.rounds // 3)):
        for name, table_class in tables.items():  # alternating, as the replay
            put, peek, nbytes = churn(table_class, keys, knowns)
            best[name] = [min(best[name][0], put), min(best[name][1], peek), nbytes]
    for name in tables:
        put, peek, nbytes = best[name]
        print(f"churn {name}: put {put / len(keys) * 1e9:.0f} ns, peek {peek / 50_000 * 1e9:.0f} ns, "
              f"table {nbytes / 1e6:.2f} MB ({nbytes / 50_000:.0f} B/entry)")


if __name__ == "__main__":
    main()
