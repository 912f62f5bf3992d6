#!/usr/bin/env python
"""Where the sidecar's start-up RSS goes: by mapping of the running process, and by import.

1. Starts one `costctx run` with bench/run.py's sidecar config (gRPC receiver, admin port, every
   default processor; `--off`: none), waits until it is ready, and sums /proc/PID/smaps' Rss by
   mapping: each shared object, the heap, anonymous memory (CPython's object arenas and large
   blocks). Also lists which of the heavy optional modules the process has mapped.
2. In a fresh interpreter, imports what `costctx run` imports, with a hook that reads RSS before
   and after each module's execution, and reports RSS by top-level package with each module's
   own share (its children's subtracted): what an import costs, shared objects it loads included.
   A shared object is charged to the first module that loads it, and an extension module's own
   load to the module importing it (the hook sees exec_module, not create_module): `ssl` carries
   libcrypto, which hashlib would load anyway; `grpc._compression` carries gRPC's core.

    python bench/memory_startup.py [--off] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import SidecarProcess, SinkProcess  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

OPTIONAL = ("/aiohttp/", "sqlite3", "/yarl/", "/multidict/", "_ssl.", "libssl")

# Runs in a fresh interpreter: RSS per module execution, children subtracted.
IMPORT_PROBE = r"""
import importlib, importlib.abc, sys
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 / 2**20
stack, own = [], {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if loader is not None and hasattr(loader, 'exec_module'):
                run = loader.exec_module
                def exec_module(module, run=run, name=name):
                    stack.append([name, rss(), 0.0])
                    try:
                        run(module)
                    finally:
                        name_, before, children = stack.pop()
                        total = rss() - before
                        own[name_] = total - children
                        if stack:
                            stack[-1][2] += total
                try:
                    loader.exec_module = exec_module
                except (AttributeError, TypeError):
                    pass
            return spec
        return None
base = rss()
sys.meta_path.insert(0, Probe())
for module in ('costctx.cli.main', 'costctx.service.runner', 'costctx.service.app'):
    importlib.import_module(module)
print('BASE', base, rss())
for name, mb in own.items():
    print('MOD', name, mb)
"""


def by_mapping(pid: int) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts[0] == "Rss:":
                out[name] += int(parts[1])
    return out


def group(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "costctx" else parts[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--off", action="store_true", help="no processors")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="costctx-startup-"))
    sink = SinkProcess(workdir)
    try:
        processors = [] if args.off else list(DEFAULT_TRACE_PROCESSORS)
        sidecar = SidecarProcess(workdir, "startup", processors, sink.port)
        try:
            time.sleep(1.0)  # past readiness: the GC scheduler's first collection and the trim
            mappings = by_mapping(sidecar.proc.pid)
            maps = Path(f"/proc/{sidecar.proc.pid}/maps").read_text()
        finally:
            sidecar.stop()
    finally:
        sink.stop()
    total = sum(mappings.values()) / 1024
    print(f"costctx run ({'no processors' if args.off else 'every default processor'}): RSS {total:.1f} MB")
    for name, kb in mappings.most_common(args.top):
        print(f"  {kb / 1024:6.2f} MB  {name}")
    print("  optional modules mapped: " + (", ".join(m for m in OPTIONAL if m in maps) or "none"))

    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True,
                         timeout=120).stdout.splitlines()
    base_line = next(line for line in out if line.startswith("BASE"))
    base, end = (float(x) for x in base_line.split()[1:])
    own = {line.split()[1]: float(line.split()[2]) for line in out if line.startswith("MOD")}
    groups: collections.Counter = collections.Counter()
    for name, mb in own.items():
        groups[group(name)] += mb
    print(f"\nimports of `costctx run`: RSS {base:.1f} MB before, {end:.1f} MB after ({len(own)} modules)")
    for name, mb in groups.most_common(args.top):
        print(f"  {mb:6.2f} MB  {name}")
    print("  largest single modules: " + ", ".join(
        f"{name} {mb:.2f}" for name, mb in sorted(own.items(), key=lambda item: -item[1])[:10]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
