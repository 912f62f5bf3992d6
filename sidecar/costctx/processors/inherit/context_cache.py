"""What the `inherit` processor remembers about spans it has passed on: envelope fields only.

The SDK exports a span when it ends, so children mostly arrive BEFORE their parents; held
children are matched to a parent as it arrives. The cache serves the other cases: a child
that arrives after its parent (async work that outlives it, a late batch), and the parent a
held child is released against. It keeps a few values per span (never the span itself),
bounded by entries and by age.
"""

from __future__ import annotations

import time
from collections import Counter as CounterType
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

NO_FIELDS: frozenset[str] = frozenset()


class Known:
    """A span as it left the sidecar: its effective context fields, service and hop depth."""

    __slots__ = ("fields", "hop", "depth", "fallback")

    def __init__(self, fields: dict[str, Any], hop: str, depth: int | None, fallback: frozenset[str]) -> None:
        # Shared, never mutated: a child that inherited everything reuses its parent's dict.
        self.fields = fields
        self.hop = hop
        self.depth = depth
        # Fields whose value came from the trace-level fallback rather than an ancestor, so a
        # descendant that inherits them is counted under the same source.
        self.fallback = fallback


# Sources (services) with a share of their own; further ones share one, so a sender inventing
# service names cannot make the per-source bookkeeping unbounded or crowd out known services.
MAX_SOURCES = 256
OTHER_SOURCES = "(other)"
# Entries that can repair nothing (a span with no context fields) are evicted first.
NO_CONTEXT = "(no context)"


class ContextCache:
    """(trace id + span id) -> Known, bounded by `max_entries` and by `ttl` seconds.

    Keyed by the 24-byte concatenation, not a tuple of two: about half the memory per entry.

    Partitioned by source (the span's service, `Known.hop`) so a flood from one service cannot
    evict another's ancestors: when full, the entry evicted is the oldest of, first, the spans
    that carry no context (they can never repair a descendant), then the inserting source if it
    holds at least its fair share (max_entries / sources), else the largest source. Evictions
    are tallied per source in `evicted`.

    A second span under the ids of a known one, with a different value for a field both carry
    (a spoofed or re-sent parent id), makes the entry disputed: it repairs nothing from then on
    (`get` answers None) and is tallied in `disputed`, rather than the last writer winning.
    """

    def __init__(self, max_entries: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                 max_sources: int = MAX_SOURCES) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._timer = timer
        self._max_sources = max_sources
        # source -> entries in insertion order (one TTL for all: also expiry order)
        self._parts: dict[str, OrderedDict[bytes, tuple[Known | None, float]]] = {}
        self._where: dict[bytes, OrderedDict[bytes, tuple[Known | None, float]]] = {}
        self._source_of: dict[int, str] = {}  # id(partition) -> source
        self.evicted: CounterType[str] = CounterType()
        self.disputed = 0

    def get(self, key: bytes) -> Known | None:
        part = self._where.get(key)
        if part is None:
            return None
        known, expires = part[key]
        if self._timer() >= expires:
            return None  # aged out; expire() removes it
        return known

    def put(self, key: bytes, known: Known) -> None:
        now = self._timer()
        where = self._where
        old_part = where.get(key)
        if old_part is not None:
            old, expires = old_part.pop(key)
            del where[key]
            if now < expires and (old is None or _disagree(old.fields, known.fields)):
                # Disputed: remembered as such (None) until it ages out, under its first source.
                self.disputed += old is not None
                old_part[key] = (None, expires)
                where[key] = old_part
                return
        part = self._partition(known.hop if known.fields else NO_CONTEXT)
        part[key] = (known, now + self.ttl)
        where[key] = part
        if len(where) > self.max_entries:
            self._evict(part)

    def _partition(self, source: str) -> OrderedDict[bytes, tuple[Known | None, float]]:
        part = self._parts.get(source)
        if part is None:
            if len(self._parts) >= self._max_sources + 1 and source != NO_CONTEXT:  # +1: NO_CONTEXT
                return self._partition(OTHER_SOURCES)
            part = self._parts[source] = OrderedDict()
            self._source_of[id(part)] = source
        return part

    def _evict(self, inserting: OrderedDict) -> None:
        parts = self._parts
        victim = parts.get(NO_CONTEXT)
        if not victim:
            sizes = [p for p in parts.values() if p]
            fair = self.max_entries / max(len(sizes), 1)
            victim = inserting if len(inserting) >= fair else max(sizes, key=len)
        key, _ = victim.popitem(last=False)
        del self._where[key]
        self.evicted[self._source_of[id(victim)]] += 1

    def expire(self) -> None:
        now = self._timer()
        where = self._where
        for source, part in list(self._parts.items()):
            while part:
                key = next(iter(part))
                if now < part[key][1]:
                    break
                del part[key]
                del where[key]
            if not part and source not in (NO_CONTEXT, OTHER_SOURCES):
                del self._parts[source]
                del self._source_of[id(part)]

    def __len__(self) -> int:
        return len(self._where)


def _disagree(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Two spans under one id name a different value for a field both carry."""
    if first is second:
        return False
    get = second.get
    return any((theirs := get(field)) is not None and theirs != value for field, value in first.items())


def _vote_key(value: Any) -> Any:
    """A hashable stand-in for a value: kvlist and array values (dicts, lists) vote by content."""
    try:
        hash(value)
    except TypeError:
        return ("unhashable", repr(value))
    return (type(value).__name__, value)


class TraceValues:
    """trace id -> values of the trace-fallback fields carried by spans of the trace, with how
    many spans carried each.

    The fallback takes a value only when the spans agree on it: carried by more spans than
    every other value together. One span carrying a foreign `workflow.id` can neither take a
    trace over nor, against two or more spans that agree, deny it its fallback; an even split
    (two workflows in one trace) gives none, as guessing would book spend to the wrong one.
    """

    def __init__(self, max_traces: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        # trace id -> field -> vote key -> [spans carrying it, the value]
        self._traces: TTLCache[bytes, dict[str, dict[Any, list]]] = TTLCache(maxsize=max_traces, ttl=ttl, timer=timer)
        self.max_traces = max_traces
        self._last: tuple[bytes, str, Any] | None = None
        self._last_vote: list | None = None

    def record(self, trace_id: bytes, key: str, value: Any) -> None:
        vote_key = _vote_key(value)
        last = (trace_id, key, vote_key)
        if last == self._last and self._last_vote is not None:
            self._last_vote[0] += 1  # spans of one trace come together: skip the cache lookup
            return
        self._last = last
        values = self._traces.get(trace_id)
        if values is None:
            values = self._traces[trace_id] = {}
        votes = values.get(key)
        if votes is None:
            votes = values[key] = {}
        vote = votes.get(vote_key)
        if vote is None:
            vote = votes[vote_key] = [0, value]
        vote[0] += 1
        self._last_vote = vote

    def lookup(self, trace_id: bytes, key: str) -> Any | None:
        values = self._traces.get(trace_id)
        if values is None:
            return None
        votes = values.get(key)
        if not votes:
            return None
        count, value = max(votes.values(), key=lambda vote: vote[0])
        return value if 2 * count > sum(vote[0] for vote in votes.values()) else None

    def expire(self) -> None:
        self._traces.expire()

    def __len__(self) -> int:
        return len(self._traces)
