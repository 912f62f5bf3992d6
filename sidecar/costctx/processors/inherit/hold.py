"""The hold: spans that lack required context and whose ancestors have not arrived yet.

Grouped per trace, as the Collector's groupbytrace does: a trace's hold opens when its first
span is held and is due `wait` seconds later, so insertion order is deadline order and a tick
only looks at the front. A second index, by the (trace id, span id) each held span waits
for, lets an arriving ancestor find its waiting descendants with one dict lookup.
Bounded in spans and bytes by the caller, which releases traces on overflow: the oldest trace
of the source (service) holding the most spans, so a flood of orphans from one service releases
its own traces first and another service's held children keep waiting for their ancestors.
"""

from __future__ import annotations

import contextlib
from collections import Counter, OrderedDict
from typing import Any

from costctx.pdata.codec.api import ResourceView, SpanView

# Sources with a share of their own (as the ancestor cache): further ones share one.
MAX_SOURCES = 256
OTHER_SOURCES = "(other)"


class HeldSpan:
    """A span waiting for its ancestor. While the batch it came in is processed it is still in
    that batch (`index`, and may be resolved there); then it leaves it as bytes (`payload`: a
    one-span request with its resource and scope) plus what repair reads (`view`, `resource`:
    the batch view's records of it, small and free of the batch's bytes)."""

    __slots__ = ("trace_id", "key", "wait_key", "own", "index", "view", "resource", "payload", "notes",
                 "sets", "nbytes", "done", "source", "own_key")

    def __init__(self, index: int, view: SpanView, resource: ResourceView, trace_id: bytes, key: bytes,
                 wait_key: bytes, own: dict[str, Any], own_key: tuple | None = None) -> None:
        self.trace_id = trace_id
        self.source = resource.service  # the service it came from: overflow is shared out per source
        self.key = key
        # The (trace id + span id) of the ancestor this span waits for: its parent, or the
        # span it links to when it is the root of a new trace started from a remote context.
        self.wait_key = wait_key
        self.own = own
        # Its field values and their types, when spans may share decisions on them (see _resolve).
        self.own_key = own_key
        self.index: int | None = index
        self.view = view
        self.resource = resource
        self.payload: bytes | None = None
        self.notes: dict[str, Any] | None = None
        # What repair writes on it once released (applied to the batch it is released in).
        self.sets: list[tuple[str, Any]] | None = None
        self.nbytes = 0
        # Set once the span has been resolved (repaired or released).
        self.done = False

    def detach(self, payload: bytes, notes: dict[str, Any] | None) -> None:
        """The span leaves its batch: kept as its one-span request."""
        self.payload = payload
        self.notes = notes
        self.nbytes = len(payload)
        self.index = None


class TraceHold:
    __slots__ = ("trace_id", "deadline", "spans", "nbytes", "source")

    def __init__(self, trace_id: bytes, deadline: float, source: str = "") -> None:
        self.trace_id = trace_id
        self.source = source  # of its first held span: the trace counts against that source
        self.deadline = deadline
        self.spans: dict[bytes, HeldSpan] = {}
        self.nbytes = 0


class Hold:
    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.traces: OrderedDict[bytes, TraceHold] = OrderedDict()
        self.waiters: dict[bytes, list[HeldSpan]] = {}
        self.span_count = 0
        self.nbytes = 0
        # source -> its traces in deadline order, and the spans they hold
        self.by_source: dict[str, OrderedDict[bytes, TraceHold]] = {}
        self.source_spans: Counter[str] = Counter()
        # Spans released on overflow, per source (the processor turns them into metrics).
        self.evicted: Counter[str] = Counter()

    def __len__(self) -> int:
        return self.span_count

    def add(self, held: HeldSpan, now: float) -> bool:
        """Hold a span; False (and nothing held) if a span with the same ids is already held,
        as when a client resends a batch: the duplicate then passes through as it is."""
        trace = self.traces.get(held.trace_id)
        if trace is None:
            source = held.source
            if source not in self.by_source and len(self.by_source) >= MAX_SOURCES:
                source = OTHER_SOURCES
            trace = self.traces[held.trace_id] = TraceHold(held.trace_id, now + self.wait, source)
            self.by_source.setdefault(source, OrderedDict())[held.trace_id] = trace
        elif held.key in trace.spans:
            return False
        trace.spans[held.key] = held
        self.waiters.setdefault(held.wait_key, []).append(held)
        self.span_count += 1
        self.source_spans[trace.source] += 1
        return True

    def account(self, held: HeldSpan) -> None:
        """Count a span's bytes once it is detached from its batch."""
        trace = self.traces.get(held.trace_id)
        if trace is not None and held.key in trace.spans:
            trace.nbytes += held.nbytes
            self.nbytes += held.nbytes

    def detach_all(self, pending: list[HeldSpan], payloads: list[bytes], notes: dict[int, Any]) -> None:
        """Each pending span detached with its payload and its notes, then counted (a batch's
        held spans leave it together)."""
        for held, payload in zip(pending, payloads, strict=True):
            held.detach(payload, notes.get(held.index))  # type: ignore[arg-type]
            self.account(held)

    def take_waiters(self, key: bytes) -> list[HeldSpan]:
        """Remove and return the spans waiting for `key` (its span has just become known)."""
        waiting = self.waiters.pop(key, None)
        if not waiting:
            return []
        for held in waiting:
            self._unlink_trace(held)
        return waiting

    def remove(self, held: HeldSpan) -> None:
        self._unlink_trace(held)
        waiting = self.waiters.get(held.wait_key)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(held)
            if not waiting:
                del self.waiters[held.wait_key]

    def _unlink_trace(self, held: HeldSpan) -> None:
        trace = self.traces.get(held.trace_id)
        if trace is None or trace.spans.pop(held.key, None) is None:
            return
        self.span_count -= 1
        source = trace.source
        self.source_spans[source] -= 1
        if held.payload is not None:
            trace.nbytes -= held.nbytes
            self.nbytes -= held.nbytes
        if not trace.spans:
            del self.traces[held.trace_id]
            traces = self.by_source[source]
            del traces[held.trace_id]
            if not traces:
                del self.by_source[source]
                del self.source_spans[source]

    def is_held(self, key: bytes) -> bool:
        trace = self.traces.get(key[:16])
        return trace is not None and key in trace.spans

    def oldest(self) -> TraceHold | None:
        return next(iter(self.traces.values()), None)

    def overflow_victim(self) -> TraceHold | None:
        """The trace to release when the hold is over its bounds: the oldest of the source
        holding the most spans (tallied in `evicted`)."""
        if not self.source_spans:
            return None
        source = max(self.source_spans, key=self.source_spans.__getitem__)
        trace = next(iter(self.by_source[source].values()))
        self.evicted[source] += len(trace.spans)
        return trace

    def is_over(self, max_spans: int, max_bytes: int) -> bool:
        return self.span_count > max_spans or self.nbytes > max_bytes
