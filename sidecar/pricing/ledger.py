"""Each workflow's running spend as this sidecar has seen it: bounded and age-limited.

Published as `context.services["spend_ledger"]`. Amounts are exact pico-USD ints:

    ledger.add("wf-1", pico)   -> the new running total (this amount included)
    ledger.add("wf-1", pico, span_key=trace_id + span_id)
                               -> the same, but a span seen before (a client resending a batch
                                  after a timeout) is not counted twice
    ledger.total("wf-1")       -> the running total, 0 for a workflow not seen (or expired)

A workflow is forgotten `ttl` seconds after its last priced span, or when more than
`maxsize` workflows are live (least recently updated first): a bound on memory, never
on correctness of the spans already stamped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache


class _CountingTTLCache(TTLCache):
    """TTLCache that counts entries pushed out by the size bound (not by age)."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self.evicted = 0

    def popitem(self):
        self.evicted += 1
        return super().popitem()


class SpendLedger:
    def __init__(self, maxsize: int = 100_000, ttl: float = 6 * 3600.0,
                 timer: Callable[[], float] = time.monotonic,
                 dedupe_size: int = 50_000, dedupe_window: float = 300.0) -> None:
        self._totals = _CountingTTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        # Spans counted recently, by (trace id + span id): OTLP clients retry whole batches.
        self._seen: TTLCache | None = (
            TTLCache(maxsize=dedupe_size, ttl=dedupe_window, timer=timer) if dedupe_size and dedupe_window else None
        )
        self.duplicates = 0

    def add(self, workflow_id: str, pico: int, span_key: bytes | None = None) -> int:
        seen = self._seen
        if span_key is not None and seen is not None:
            if span_key in seen:
                self.duplicates += 1
                return self._totals.get(workflow_id, 0)
            seen[span_key] = True
        total = self._totals.get(workflow_id, 0) + pico
        # Re-setting the key restarts its age: a live workflow is never expired.
        self._totals[workflow_id] = total
        return total

    def total(self, workflow_id: str) -> int:
        return self._totals.get(workflow_id, 0)

    def __len__(self) -> int:
        self._totals.expire()
        return len(self._totals)

    @property
    def evicted(self) -> int:
        return self._totals.evicted
