"""Run a Sidecar: in the foreground until a signal (the `run` command), or on a thread (demo, tests)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from costctx.attribution.inprocess import InProcessShare
from costctx.service.app import Sidecar
from costctx.service.config.model import SidecarConfig
from costctx.service.event_loop import loop_factory
from costctx.service.gc_tuning import GcScheduler
from costctx.service.malloc_tuning import fix_mmap_threshold, limit_arenas, trim

log = logging.getLogger("costctx")


async def serve(config: SidecarConfig, grace: float | None = None) -> None:
    """Start, then wait for SIGTERM or SIGINT and stop gracefully within `grace` seconds
    (default: the config's `service.shutdown_grace`)."""
    if grace is None:
        grace = config.service.shutdown_grace
    fix_mmap_threshold()  # this process's heap only: the `run` command (malloc_tuning.py)
    limit_arenas()
    sidecar = Sidecar(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sidecar.start()
    # What exists by now lives as long as the process; from here on, collections run between
    # requests on this loop, never a full one inside a request (issue 15's p99).
    collector = GcScheduler()
    collector.start()
    trim()  # what start-up freed (after the collection above) goes back to the kernel
    try:
        await stop.wait()
        log.info("costctx: stopping (grace %.1fs)", grace)
    finally:
        await sidecar.stop(grace)
        await collector.stop()


class SidecarThread:
    """A Sidecar on its own event loop thread; `start` returns once it listens."""

    def __init__(self, config: SidecarConfig, in_process: InProcessShare | None = None,
                 beside: SidecarThread | None = None) -> None:
        """`in_process`: stores shared with other sidecars of this process; they must then run
        on one loop: `beside` runs this sidecar on that runner's loop thread (stop this one first)."""
        self.config = config
        self.in_process = in_process
        # The loop `costctx run` would serve on (service/event_loop.py): tests run what ships.
        self.loop = loop_factory()[1]() if beside is None else beside.loop
        self.sidecar: Sidecar | None = None
        self._thread = (threading.Thread(target=self.loop.run_forever, name="costctx-sidecar", daemon=True)
                        if beside is None else None)

    def start(self, timeout: float = 15.0) -> Sidecar:
        if self._thread is not None:
            self._thread.start()

        async def build_and_start() -> Sidecar:
            sidecar = Sidecar(self.config, self.in_process)
            await sidecar.start()
            return sidecar

        self.sidecar = asyncio.run_coroutine_threadsafe(build_and_start(), self.loop).result(timeout)
        return self.sidecar

    def call(self, fn, *args, timeout: float = 15.0):
        """Run a plain function on the sidecar's loop (its state is not thread-safe)."""

        async def wrapper():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        if self.sidecar is not None:
            asyncio.run_coroutine_threadsafe(self.sidecar.stop(grace), self.loop).result(grace + 10)
        if self._thread is None:
            return  # the loop is the other runner's
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> SidecarThread:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
