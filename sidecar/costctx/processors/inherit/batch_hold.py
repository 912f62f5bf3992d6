"""Spans held while their batch is processed, for traces the hold does not have yet.

Most held spans wait for a parent that comes later in the same batch (the SDK exports children
first): they are released before the batch ends. For a trace the hold has no span of, such a
span is kept here, without the hold's per-trace, per-source and per-key bookkeeping; only what
still waits when the batch ends enters the hold (`settle`), leaving the hold exactly as if every
span had entered it when deferred: its traces in the order they would have been opened (a
trace emptied and reopened within the batch counts from its reopening), one deadline for the
batch, waiters in the order they were deferred.
"""

from __future__ import annotations

from costctx.processors.inherit.hold import HeldSpan, Hold


class BatchHold:
    __slots__ = ("waiters", "_spans", "_traces", "_opened")

    def __init__(self) -> None:
        # (trace id + span id) waited for -> spans waiting for it, in the order deferred
        self.waiters: dict[bytes, list[HeldSpan]] = {}
        self._spans: dict[bytes, HeldSpan] = {}  # held here, by their own key
        # trace id -> [spans of it held here, when it was (re)opened, the source that opened it]
        self._traces: dict[bytes, list] = {}
        self._opened = 0

    def add(self, held: HeldSpan) -> bool:
        """Hold a span of a trace the hold has not opened; False for a second span with the
        same ids (as Hold.add: the duplicate passes through as it is)."""
        key = held.key
        if key in self._spans:
            return False
        self._spans[key] = held
        trace = self._traces.get(held.trace_id)
        if trace is None or not trace[0]:
            self._opened += 1
            self._traces[held.trace_id] = [1, self._opened, held.source]
        else:
            trace[0] += 1
        waiting = self.waiters.get(held.wait_key)
        if waiting is None:
            self.waiters[held.wait_key] = [held]
        else:
            waiting.append(held)
        return True

    def take(self, key: bytes) -> list[HeldSpan] | None:
        """Remove and return the spans waiting for `key` (its span has just become known)."""
        waiting = self.waiters.pop(key, None)
        if waiting is not None:
            spans, traces = self._spans, self._traces
            for held in waiting:
                del spans[held.key]
                traces[held.trace_id][0] -= 1
        return waiting

    def settle(self, hold: Hold, held_here: list[HeldSpan], now: float) -> None:
        """Move what still waits into `hold` (the batch's held spans, in the order held)."""
        if self._spans:
            opened = sorted((trace[1], trace_id, trace[2]) for trace_id, trace in self._traces.items() if trace[0])
            for _, trace_id, source in opened:
                hold.open(trace_id, source, now)
            spans = self._spans
            for held in held_here:
                if held.key in spans and spans[held.key] is held:
                    hold.add(held, now)
        self.clear()

    def clear(self) -> None:
        self.waiters.clear()
        self._spans.clear()
        self._traces.clear()
        self._opened = 0
