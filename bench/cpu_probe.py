"""`costctx` under a CPU probe: bench/cpu_account.py starts the sidecar with this instead of
`python -m costctx` to see where the real sidecar's CPU goes, by phase, in thread CPU time.

Wraps (in this process only, no code path added to the sidecar) the calls a request makes on
the event loop thread: the receive (Ingest.export_protobuf), the freeing of the request's batch
when the receive returns (its last reference), the scan or check
(TracesPipeline.received), each processor, the encode (ViewBatch.payload), the exporter's
submit, the pipeline's ticks, the GcScheduler's steps, and every cyclic collection, the
steps' own and automatic ones (gc.callbacks, with the unreachable objects each freed). Each
phase's time is exclusive: a phase inside another is taken out of it.
SIGUSR1 writes, to `<dir>/cpu-<n>.json`, the accumulated CPU seconds per phase, per thread
(/proc/self/task: the event loop thread, grpc's poller and the rest) and the calls counted.

Usage: python bench/cpu_probe.py --dir DIR -- run --config costctx.yaml
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

SPENT: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
FAULTS: dict[str, int] = defaultdict(int)  # minor page faults of the loop thread, by phase (exclusive)
COLLECTED: dict[str, int] = defaultdict(int)  # unreachable objects the collections freed
# [phase, started, time taken by phases inside it, faults at the start, faults inside it]
_stack: list[list] = []
_main_thread = threading.get_ident()
_clock = time.thread_time


def _faults() -> int:
    """Minor page faults of the calling thread so far (a first touch of a fresh page)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def _enter(phase: str) -> None:
    _stack.append([phase, _clock(), 0.0, _faults(), 0])


def _leave() -> None:
    phase, started, inner, faults_started, inner_faults = _stack.pop()
    faults = _faults() - faults_started
    took = _clock() - started
    SPENT[phase] += took - inner
    CALLS[phase] += 1
    FAULTS[phase] += faults - inner_faults
    if _stack:
        # The wrapper's own cost around this call (outside `took`) is the probe's, not the parent's.
        _stack[-1][2] += took + _overhead[0]
        _stack[-1][4] += faults
        SPENT[PROBE] += _overhead[0]


PROBE = "probe: its own wrappers (calibrated)"
FREED = "freeing the request's batch"
_overhead = [0.0]


def calibrate(calls: int = 20_000) -> float:
    """CPU seconds one wrapped call costs beyond the time it records (the wrapper and its
    clock reads): taken out of the enclosing phase and shown as the probe's own."""
    inner = timed("calibration", lambda: None)
    started = _clock()
    for _ in range(calls):
        inner()
    took = _clock() - started
    recorded = SPENT.pop("calibration")
    CALLS.pop("calibration")
    FAULTS.pop("calibration", None)
    return max(0.0, (took - recorded) / calls)


def timed(phase: str, fn):
    def wrapper(*args, **kwargs):
        if threading.get_ident() != _main_thread:
            return fn(*args, **kwargs)
        _enter(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()

    wrapper.__wrapped__ = fn
    return wrapper


def _gc_callback(event: str, info: dict) -> None:
    if threading.get_ident() != _main_thread:
        return
    if event == "start":
        _enter(f"gc: generation {info['generation']} collections")
    elif _stack and _stack[-1][0].startswith("gc: generation"):
        COLLECTED[f"gc: generation {info['generation']} collections"] += info["collected"]
        _leave()


def _threads_stat():
    """(name, the stat fields after the command) per thread of this process, the main thread as `main`."""
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        yield ("main" if int(tid) == os.getpid() else name), fields


def threads_cpu() -> dict[str, float]:
    """CPU seconds (user + system) per thread of this process, by name (the main thread as `main`),
    and of it in the kernel as `<name> (system)` (gRPC writes to its sockets on the calling thread)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = defaultdict(float)
    for name, fields in _threads_stat():
        out[name] += (int(fields[11]) + int(fields[12])) / ticks
        out[f"{name} (system)"] += int(fields[12]) / ticks
    return dict(out)


def threads_faults() -> dict[str, int]:
    """Minor page faults per thread of this process, by name (the main thread as `main`)."""
    out: dict[str, int] = defaultdict(int)
    for name, fields in _threads_stat():
        out[name] += int(fields[7])
    return dict(out)


def install(directory: Path) -> None:
    from costctx.exporters.otlp.exporter import QueuedExporter
    from costctx.pdata.view_batch import ViewBatch
    from costctx.receivers.otlp.ingest import Ingest
    from costctx.service import pipeline as pipeline_module
    from costctx.service.gc_tuning import GcScheduler

    # The request's batch (its view, spans, edits, notes) is freed when Ingest.export_protobuf
    # returns, its last reference gone: counted as a phase of its own, not as receive's (in
    # process ~75% of receive with every processor on; the processors' objects, not ingest's).
    held: list = []
    export, received = Ingest.export_protobuf, pipeline_module.TracesPipeline.received

    def export_then_free(self, *args, **kwargs):
        try:
            return export(self, *args, **kwargs)
        finally:
            if held:
                _enter(FREED)
                held.clear()
                _leave()

    def keep_received(self, raw):
        batch = received(self, raw)
        if threading.get_ident() == _main_thread:
            held.append(batch)
        return batch

    Ingest.export_protobuf = timed("receive: ingest, metrics", export_then_free)
    pipeline_module.TracesPipeline.received = timed("scan (or check, processors off)", keep_received)
    pipeline_module.TracesPipeline._run = timed("pipeline: run loop", pipeline_module.TracesPipeline._run)
    pipeline_module.TracesPipeline.tick = timed("ticks (processors' timers)", pipeline_module.TracesPipeline.tick)
    ViewBatch.payload = timed("encode (ViewBatch.payload)", ViewBatch.payload)
    QueuedExporter.submit = timed("exporter submit", QueuedExporter.submit)
    GcScheduler.step = timed("gc: scheduled steps", GcScheduler.step)
    original_init = pipeline_module.TracesPipeline.__init__

    def init(self, processors, *args, **kwargs):
        for processor in processors:
            for method in ("process_view", "process"):
                bound = getattr(processor, method, None)
                if bound is not None:
                    setattr(processor, method, timed(f"processor: {processor.name}", bound))
        original_init(self, processors, *args, **kwargs)

    pipeline_module.TracesPipeline.__init__ = init
    _overhead[0] = calibrate()
    gc.callbacks.append(_gc_callback)
    count = [0]

    def dump(signum: int, frame: object) -> None:
        count[0] += 1
        out = {"phases": dict(SPENT), "calls": dict(CALLS), "collected": dict(COLLECTED), "threads": threads_cpu(),
               "faults": dict(FAULTS), "thread_faults": threads_faults(),
               "process": sum(os.times()[:2]), "monotonic": time.monotonic()}
        path = directory / f"cpu-{count[0]}.json"
        path.with_suffix(".tmp").write_text(json.dumps(out))
        path.with_suffix(".tmp").rename(path)  # the reader waits for the final name

    signal.signal(signal.SIGUSR1, dump)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True, type=Path)
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]
    install(args.dir)
    from costctx.cli.main import main as costctx_main

    return costctx_main(rest)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
