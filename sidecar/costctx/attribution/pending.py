"""Spend that left without its workflow or owner, remembered until its context is known.

One compact entry per priced span (ids, parent, hop, cost, tokens, what the spend view
recorded it under), bounded in entries, in bytes and in age (the attribution window):
past a bound the oldest entries are dropped, counted, and their spend stays `unknown`.
The span itself left long ago; only these few values are kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# What an entry costs beyond its strings and shared resource: the slots object, its tuple
# fields, the two index entries (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD_BYTES = 400


@dataclass(slots=True, eq=False)
class PendingSpan:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    hop: str
    resource: bytes                 # the span's Resource, serialized (shared between siblings)
    cost_pico: int
    input_tokens: int
    output_tokens: int
    price_source: str
    spend_key: tuple[str | None, tuple[str, ...]]  # (workflow.name, spend dimensions) as recorded
    fields: dict[str, str]          # the context fields the span did carry when it left
    missing: tuple[str, ...]        # the context fields it lacked
    start_ns: int
    end_ns: int
    added_at: float                 # the ledger's clock
    nbytes: int = 0


def entry_size(entry: PendingSpan) -> int:
    strings = (len(entry.hop) + len(entry.price_source) + sum(len(k) + len(v) for k, v in entry.fields.items())
               + sum(len(d or "") for d in entry.spend_key[1]) + len(entry.spend_key[0] or ""))
    return ENTRY_OVERHEAD_BYTES + strings


class PendingLedger:
    """(trace id + span id) -> PendingSpan, oldest first, with a per-trace index."""

    def __init__(self, max_entries: int, max_bytes: int, window: float,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.window = window
        self.timer = timer
        self._entries: OrderedDict[bytes, PendingSpan] = OrderedDict()
        self._by_trace: dict[bytes, set[bytes]] = {}
        # Serialized resources shared by their entries: bytes -> [the stored copy, entries using it].
        self._resources: dict[bytes, list] = {}
        self.nbytes = 0
        self.pending_pico = 0
        self.dropped = 0   # by the entry or byte bound
        self.expired = 0   # past the attribution window

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def traces(self) -> list[bytes]:
        return list(self._by_trace)

    def pending_traces(self):
        """The traces with spans pending, as a set-like view (no copy)."""
        return self._by_trace.keys()

    def has_trace(self, trace_id: bytes) -> bool:
        return trace_id in self._by_trace

    def add(self, entry: PendingSpan) -> bool:
        """Remember it; False when the same span is already pending (a resend)."""
        key = entry.trace_id + entry.span_id
        if key in self._entries:
            return False
        entry.resource = self._intern(entry.resource)
        entry.nbytes = entry_size(entry)
        self._entries[key] = entry
        self._by_trace.setdefault(entry.trace_id, set()).add(key)
        self.nbytes += entry.nbytes
        self.pending_pico += entry.cost_pico
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._pop_oldest()
            self.dropped += 1
        return True

    def _intern(self, resource: bytes) -> bytes:
        """The one stored copy of this resource (siblings share it), counted once in bytes."""
        found = self._resources.get(resource)
        if found is None:
            self._resources[resource] = [resource, 1]
            self.nbytes += len(resource)
            return resource
        found[1] += 1
        return found[0]

    def _release_resource(self, resource: bytes) -> None:
        found = self._resources.get(resource)
        if found is None:
            return
        found[1] -= 1
        if found[1] <= 0:
            del self._resources[resource]
            self.nbytes -= len(resource)

    def _remove(self, key: bytes) -> PendingSpan | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        keys = self._by_trace.get(entry.trace_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_trace[entry.trace_id]
        self.nbytes -= entry.nbytes
        self.pending_pico -= entry.cost_pico
        self._release_resource(entry.resource)
        return entry

    def _pop_oldest(self) -> None:
        key = next(iter(self._entries))
        self._remove(key)

    def take_trace(self, trace_id: bytes) -> list[PendingSpan]:
        """Remove and return the trace's pending spans (its context just became known)."""
        keys = self._by_trace.get(trace_id)
        if not keys:
            return []
        return [e for e in (self._remove(k) for k in list(keys)) if e is not None]

    def expire(self) -> int:
        """Drop entries older than the window (oldest first); returns how many."""
        now = self.timer()
        dropped = 0
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if now - entries[key].added_at < self.window:
                break
            self._remove(key)
            dropped += 1
        self.expired += dropped
        return dropped
