"""Garbage-collector settings for the long-running sidecar process.

Measured with bench/run.py (in-process, 60,000 spans through every default processor):
with CPython's defaults, cyclic collections took ~12% of the processor stage's CPU, and full
(generation 2) collections over the processors' caches paused the event loop up to ~150 ms,
which shows up directly as export-call latency. With the start-up objects frozen and the
young generation collected every 10,000 allocations instead of 700, collections took ~2%
and the longest pause was ~30 ms. Only *when* reference cycles are freed changes.

That was not enough for issue 15's p99 (bench/latency_trace.py at 5,000 spans/s, every
processor on): the processors' state tables grow by every new workflow, so what survives the
young collections piles up in generations 1 and 2, and a generation-1 collection inside a
request took up to 19 ms, a generation-2 one 23-46 ms. `GcScheduler` keeps the scanned heap
small instead: every `interval` it collects the young generations (freeing the cycles among
what was allocated since) and freezes what survived, so an automatic collection only ever
scans objects younger than one interval, and automatic generation-2 collections are off. On a
loaded 2-core machine (bench/latency_trace.py, 30 s): before, 4 generation-1 collections with
pauses up to 69-77 ms and generation-0 pauses of ~2 ms inside 1% of the calls; with steps every
100 ms (a step's pause is proportional to what survived since the last one), steps paused
0.26 ms (median) to 5.2 ms, and the most GC time inside one call fell from 90.6 to 5.2 ms.

Frozen objects are still freed by reference counting; only a cycle that forms among objects
after they were frozen (a request or a send in flight at a step) waits for the next full
collection: measured at 5,000 spans/s, a full collection over everything frozen found 20-45
such objects after 7.5 s of load (3-6 a second: ~2,000-4,000 wait for it at that rate). One runs
every `full_interval` (10 minutes). It scans the whole heap, start-up
objects included (~80-250 ms on a loaded 2-core machine): one pause per 10 minutes instead of
CPython's generation-2 pause every few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("costctx.gc")

# (generation 0 allocations, gen-0 collections per gen 1, gen-1 collections per gen 2);
# CPython's defaults are (700, 10, 10).
THRESHOLDS = (10_000, 10, 10)
# With GcScheduler: generation 2 is never collected automatically (the scheduler does it).
SCHEDULED_THRESHOLDS = (10_000, 10, 2**31 - 1)


def tune_for_throughput() -> None:
    """Call once the sidecar has started: what exists by then lives as long as the process."""
    gc.collect()
    gc.freeze()  # start-up objects (modules, config, tables) are never scanned again
    gc.set_threshold(*THRESHOLDS)


class GcScheduler:
    """Cyclic collections at chosen moments on the event loop, never a full one inside a request.

    `step` runs between two event-loop callbacks, so never inside a request's pipeline run; its
    pause is the young generations' scan (objects allocated since the last step), <1 ms at
    5,000 spans/s with every processor on."""

    def __init__(self, interval: float = 0.1, full_interval: float = 600.0) -> None:
        self.interval = interval
        self.full_interval = full_interval
        self._last_full = 0.0  # time.monotonic() of the last full collection
        self._last_step = 0.0
        self.full_collections = 0
        self.full_found = 0  # unreachable objects the full collections found (cycles among frozen ones)
        self.longest_pause = 0.0  # seconds, of any step
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Take over from CPython's automatic schedule; call on the running event loop."""
        self.take_over()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="costctx-gc")

    def take_over(self) -> None:
        """CPython's automatic schedule off (young generations only), everything there is
        frozen: what `start` does before its steps (bench/inprocess.py steps by itself)."""
        self.full()
        gc.set_threshold(*SCHEDULED_THRESHOLDS)

    def step_if_due(self, now: float) -> None:
        """A step if `interval` passed since the last one: for a loop that calls it between
        requests instead of running `start`'s task (bench/inprocess.py)."""
        if now - self._last_step >= self.interval:
            self.step()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.step()
            except Exception:  # never let a collection bug stop the schedule
                log.exception("scheduled garbage collection failed")

    def step(self) -> None:
        started = time.perf_counter()
        self._last_step = time.monotonic()
        if time.monotonic() - self._last_full >= self.full_interval:
            self.full()
        else:
            gc.collect(1)  # the young generations: cycles among new objects freed before freezing
            gc.freeze()
        self.longest_pause = max(self.longest_pause, time.perf_counter() - started)

    def full(self) -> None:
        """Every object scanned once: frees cycles that formed among frozen objects."""
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._last_full = time.monotonic()
        self.full_collections += 1
        self.full_found += found
        log.debug("full collection: %d unreachable objects freed", found)
