"""memory_limiter: refuse new data, retryably, while the process is above a soft memory limit.

Configured like the Collector's (`processors: memory_limiter:`, listed first in the traces
pipeline), but it acts at admission, before a request is accepted, and for every signal:
the Sidecar registers `admission_check` with the receivers. Passing spans is a no-op.

soft limit = limit_mib - spike_limit_mib (spike default: 20% of the limit). Above it, every
Export gets UNAVAILABLE with RetryInfo (gRPC) or 503 with Retry-After (HTTP) until memory
falls below it again. Memory is the process RSS, sampled every `check_interval` and also as
soon as `spike_limit_mib / 8` (at least 1 MiB) of request bytes were admitted since the last
sample, so a burst between two ticks cannot run far past the limit. Above the soft limit it also runs the
garbage collector and returns freed heap pages to the OS (glibc `malloc_trim`), otherwise a
Python process's RSS may never fall back and the refusals would never end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import time

import psutil

from costctx.component.consumer import IngestError
from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.pdata.signals import Signal
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.memory_limiter.config import MemoryLimiterConfig
from costctx.processors.memory_limiter.metrics import MemoryLimiterMetrics, memory_limiter_metrics

MiB = 1024 * 1024


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


class MemoryLimiter:
    def __init__(self, config: MemoryLimiterConfig, metrics: MemoryLimiterMetrics) -> None:
        self.config = config
        self.limit = config.limit_mib * MiB
        self.soft_limit = config.soft_limit_mib * MiB
        self._resample_bytes = max((self.limit - self.soft_limit) // 8, MiB)
        self._process = psutil.Process()
        self._trim = _malloc_trim()
        self._since_sample = 0
        self._last_collect = 0.0
        self.rss = 0
        self.refusing = False
        self._rss_gauge = metrics.rss
        self._refusing_gauge = metrics.refusing
        self._refused = metrics.refused
        metrics.soft_limit.set(self.soft_limit)
        self.sample()

    def sample(self) -> int:
        self._since_sample = 0
        rss = self._process.memory_info().rss
        now = time.monotonic()
        if rss >= self.soft_limit and now - self._last_collect >= self.config.check_interval:
            # Free what can be freed before deciding; at most once per interval (gc is not free).
            self._last_collect = now
            gc.unfreeze()  # frozen objects are never scanned (the sidecar freezes between requests)
            gc.collect()
            if self._trim is not None:
                self._trim(0)
            rss = self._process.memory_info().rss
        self.rss = rss
        self.refusing = rss >= self.soft_limit
        self._rss_gauge.set(rss)
        self._refusing_gauge.set(1 if self.refusing else 0)
        return rss

    def admission_check(self, signal: Signal, size_bytes: int) -> IngestError | None:
        self._since_sample += size_bytes
        if self._since_sample >= self._resample_bytes or self.refusing:
            self.sample()
        if not self.refusing:
            return None
        self._refused.labels(signal.name).inc()
        return IngestError(
            "unavailable",
            f"memory {self.rss // MiB} MiB is above the soft limit of {self.soft_limit // MiB} MiB; retry later",
            self.config.retry_after,
        )


class MemoryLimiterProcessor(Processor):
    type_name = "memory_limiter"
    config_model = MemoryLimiterConfig

    def __init__(self, name: str, config: MemoryLimiterConfig, host: Host) -> None:
        super().__init__(name, config, host)
        self.limiter = MemoryLimiter(config, memory_limiter_metrics(self.component_metrics()))
        # Picked up by the Sidecar and run by the receivers before a request is accepted.
        self.admission_check = self.limiter.admission_check
        self._task: asyncio.Task | None = None

    on_view = True

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        return batch  # admission already happened: nothing to read, the batch stays as it is

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sample_loop(), name=f"{self.name}-sampler")

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            self.limiter.sample()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
