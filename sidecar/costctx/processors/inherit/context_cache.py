"""What the `inherit` processor remembers about spans it has passed on: envelope fields only.

The SDK exports a span when it ends, so children mostly arrive BEFORE their parents; held
children are matched to a parent as it arrives. The cache serves the other cases: a child
that arrives after its parent (async work that outlives it, a late batch), and the parent a
held child is released against. It keeps a few values per span (never the span itself),
bounded by entries and by age.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter as CounterType
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

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


class _Part:
    """One source's entries in insertion order, which is expiry order (one TTL for all): chunks
    of keys put at one time, each `[expires, key, key, ...]`, the oldest first. Each entry has
    exactly one place (a key sent again keeps its first), so `size` is what the chunks hold
    from `head` on."""

    __slots__ = ("source", "chunks", "head", "size")

    def __init__(self, source: str) -> None:
        self.source = source
        self.chunks: deque[list] = deque()
        self.head = 1  # the next key's place in chunks[0]
        self.size = 0  # live entries (disputed ones included)


class ContextCache:
    """(trace id + span id) -> Known, bounded by `max_entries` and by `ttl` seconds.

    Keyed by the 24-byte concatenation, not a tuple of two: about half the memory per entry.
    One plain dict holds the entries (sibling spans share one Known); their order of age is kept
    per source as chunks of keys put at one time (a batch's puts share one `now`, see `now`), so
    an entry costs its key and two slots, with no per-entry node, tuple or float.

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
        self._where: dict[bytes, Known | None] = {}  # None: disputed
        self._parts: dict[str, _Part] = {}
        self._next_due = math.inf  # no entry expires before this
        # The time puts are made at, when the caller has one for a whole batch (else the timer's).
        self.now: float | None = None
        self.evicted: CounterType[str] = CounterType()
        self.disputed = 0

    def get(self, key: bytes) -> Known | None:
        known = self._where.get(key)
        if known is not None and self._timer() >= self._next_due:
            self.expire()  # some entry is due: it may be this one
            known = self._where.get(key)
        return known

    def expire_due(self, now: float) -> None:
        """Drop what is due at `now`: after it, every entry is live at `now` (a batch's reads
        may then go to `entries` directly)."""
        if now >= self._next_due:
            self.expire(now)

    @property
    def entries(self) -> dict[bytes, Known | None]:
        return self._where

    @property
    def sources(self) -> list[str]:
        return list(self._parts)

    def reader(self) -> Callable[[bytes], Known | None]:
        """A batch's read of an entry, after `expire_due(now)` (no age check)."""
        return self._where.get

    def put(self, key: bytes, known: Known) -> None:
        now = self.now if self.now is not None else self._timer()
        if now >= self._next_due:
            self.expire(now)  # so that an entry found below is live
        where = self._where
        if key in where:
            # Sent again: the entry keeps its place and age (a resend cannot keep it alive).
            old = where[key]
            if old is None or _disagree(old.fields, known.fields):
                # Disputed: remembered as such (None) until it ages out.
                self.disputed += old is not None
                where[key] = None
            else:
                where[key] = known
            return
        part = self._partition(known.hop if known.fields else NO_CONTEXT)
        expires = now + self.ttl
        chunks = part.chunks
        if chunks and chunks[-1][0] == expires:
            chunks[-1].append(key)
        else:
            chunks.append([expires, key])
            if expires < self._next_due:
                self._next_due = expires
        part.size += 1
        where[key] = known
        if len(where) > self.max_entries:
            self._evict(part)

    def put_many(self, keys: list[bytes], known: Known) -> None:
        """`put(key, known)` for each key, in order (spans alike that left with one Known)."""
        for key in keys:
            self.put(key, known)

    def _partition(self, source: str) -> _Part:
        part = self._parts.get(source)
        if part is None:
            # +1: NO_CONTEXT. The shared one is made whatever the count (asking for it again
            # recursed without end once every place was taken).
            if len(self._parts) >= self._max_sources + 1 and source not in (NO_CONTEXT, OTHER_SOURCES):
                return self._partition(OTHER_SOURCES)
            part = self._parts[source] = _Part(source)
        return part

    def _evict(self, inserting: _Part) -> None:
        parts = self._parts
        victim = parts.get(NO_CONTEXT)
        if victim is None or not victim.size:
            sizes = [p for p in parts.values() if p.size]
            fair = self.max_entries / max(len(sizes), 1)
            victim = inserting if inserting.size >= fair else max(sizes, key=_size)
        chunks = victim.chunks
        chunk = chunks[0]
        key = chunk[victim.head]
        victim.head += 1
        if victim.head == len(chunk):
            chunks.popleft()
            victim.head = 1
        del self._where[key]
        victim.size -= 1
        self.evicted[victim.source] += 1

    def expire(self, now: float | None = None) -> None:
        if now is None:
            now = self._timer()
        where = self._where
        due = math.inf
        for source, part in list(self._parts.items()):
            chunks = part.chunks
            while chunks and chunks[0][0] <= now:
                chunk = chunks.popleft()
                for key in islice(chunk, part.head, None):
                    del where[key]
                part.size -= len(chunk) - part.head
                part.head = 1
            if not part.size and source not in (NO_CONTEXT, OTHER_SOURCES):
                del self._parts[source]
            elif chunks:
                due = min(due, chunks[0][0])
        self._next_due = due

    def __len__(self) -> int:
        return len(self._where)


def _size(part: _Part) -> int:
    return part.size


def _disagree(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Two spans under one id name a different value for a field both carry."""
    if first is second:
        return False
    get = second.get
    return any((theirs := get(field)) is not None and theirs != value for field, value in first.items())


def _vote_key(value: Any) -> Any:
    """A hashable stand-in for a value that is not a string (strings stand for themselves):
    typed, so 1 and True vote apart; kvlist and array values (dicts, lists) vote by content."""
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

    Bounded by `max_traces` and by `ttl` seconds from a trace's first vote. A plain dict and,
    in insertion (= expiry) order, a deque of its keys and chunks of how many were added at
    one time (a batch's votes share one `now`, see `new_batch`): no per-entry node or float,
    as cachetools' TTLCache had. When full, the trace first voted for is forgotten (the one
    nearest to expiry; TTLCache forgot the least recently used).
    """

    def __init__(self, max_traces: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        # trace id -> field -> vote key -> [spans carrying it, the value]
        self._traces: dict[bytes, dict[str, dict[Any, list]]] = {}
        self._order: deque[bytes] = deque()  # the keys of _traces, oldest first
        self._chunks: deque[list] = deque()  # [expires, keys added then], oldest first
        self.max_traces = max_traces
        self.ttl = ttl
        self._timer = timer
        self._now: float | None = None  # the batch's time (new_batch), else the timer's
        # The traces' vote dicts already looked up in the current batch (`new_batch` forgets
        # them): a span's vote is then a plain dict lookup.
        self._batch: dict[bytes, dict[str, dict[Any, list]]] = {}

    def new_batch(self) -> None:
        """A batch starts: what is due is forgotten, and its new traces share one time."""
        self._batch.clear()
        self._now = now = self._timer()
        chunks = self._chunks
        if chunks and chunks[0][0] <= now:
            self._expire(now)

    def record(self, trace_id: bytes, key: str, value: Any, count: int = 1) -> None:
        values = self._batch.get(trace_id)
        if values is None:
            values = self._get(trace_id)
            if values is None:
                values = self._add(trace_id)
            self._batch[trace_id] = values
        votes = values.get(key)
        if votes is None:
            votes = values[key] = {}
        vote_key = value if type(value) is str else _vote_key(value)
        vote = votes.get(vote_key)
        if vote is None:
            vote = votes[vote_key] = [0, value]
        vote[0] += count

    def _get(self, trace_id: bytes) -> dict | None:
        if self._now is None:  # outside a batch: forget what is due first
            now = self._timer()
            if self._chunks and self._chunks[0][0] <= now:
                self._expire(now)
        return self._traces.get(trace_id)

    def _add(self, trace_id: bytes) -> dict:
        if len(self._traces) >= self.max_traces:
            self._batch.clear()  # this insert forgets a trace the batch may hold
            self._forget_oldest()
        now = self._now if self._now is not None else self._timer()
        expires = now + self.ttl
        chunks = self._chunks
        if chunks and chunks[-1][0] == expires:
            chunks[-1][1] += 1
        else:
            chunks.append([expires, 1])
        self._order.append(trace_id)
        values: dict[str, dict[Any, list]] = {}
        self._traces[trace_id] = values
        return values

    def _forget_oldest(self) -> None:
        del self._traces[self._order.popleft()]
        chunk = self._chunks[0]
        chunk[1] -= 1
        if not chunk[1]:
            self._chunks.popleft()

    def _expire(self, now: float) -> None:
        chunks, order, traces = self._chunks, self._order, self._traces
        while chunks and chunks[0][0] <= now:
            for _ in range(chunks.popleft()[1]):
                del traces[order.popleft()]

    def lookup(self, trace_id: bytes, key: str) -> Any | None:
        values = self._get(trace_id)
        if values is None:
            return None
        votes = values.get(key)
        if not votes:
            return None
        count, value = max(votes.values(), key=lambda vote: vote[0])
        return value if 2 * count > sum(vote[0] for vote in votes.values()) else None

    def expire(self) -> None:
        self._batch.clear()
        self._now = None
        now = self._timer()
        if self._chunks and self._chunks[0][0] <= now:
            self._expire(now)

    def __len__(self) -> int:
        return len(self._traces)


class NativeContextCache:
    """ContextCache on the native table (`costctx_native._core.AncestorTable`, native/src/
    ancestors.rs): the same rules, answers and counts (ContextCache is its oracle), with keys
    held natively (no bytes object per entry) and values as native records, one per distinct
    Known content (native/src/inherit_records.rs): no Known or fields dict per entry. An
    answer is a Known equal to the one put (fields in the same order), the same object for
    one record within a batch (between two settings of `now`), not always the object put."""

    def __init__(self, max_entries: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                 max_sources: int = MAX_SOURCES) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        # Known: the class the table makes its answers with from its native records.
        self._table = _AncestorTable(max_entries, float(ttl), timer, max_sources, Known)
        self.get = self._table.get
        self.expire_due = self._table.expire_due
        self.expire = self._table.expire
        self._put = self._table.put
        # One call from Python per put: the table reads the source from the Known itself.
        self.put = self._table.put_known
        self.put_many = self._table.put_many_known
        self._evicted: CounterType[str] = CounterType()
        self._disputed = 0

    @property
    def now(self) -> float | None:
        return self._table.now

    @now.setter
    def now(self, value: float | None) -> None:
        self._table.now = value

    def reader(self) -> Callable[[bytes], Known | None]:
        """A batch's read of an entry, after `expire_due(now)` (no age check)."""
        return self._table.peek

    # put(key, known) and put_many(keys, known): the table's own methods, set in __init__.

    def _take(self) -> None:
        evicted, disputed = self._table.take_counts()
        for source, count in evicted:
            self._evicted[source] += count
        self._disputed += disputed

    @property
    def evicted(self) -> CounterType[str]:
        self._take()
        return self._evicted

    @property
    def disputed(self) -> int:
        self._take()
        return self._disputed

    @disputed.setter
    def disputed(self, value: int) -> None:
        self._take()
        self._disputed = value

    @property
    def sources(self) -> list[str]:
        return self._table.sources()

    @property
    def nbytes(self) -> int:
        """Bytes held natively (keys, slots, age chunks): not seen by tracemalloc."""
        return self._table.nbytes()

    def __len__(self) -> int:
        return len(self._table)


try:
    from costctx_native._core import AncestorTable as _AncestorTable
    from costctx_native._core import TraceVotes as _TraceVotes
except ImportError:  # built without the extension
    _AncestorTable = _TraceVotes = None


def _python_forced() -> bool:
    return os.environ.get("COSTCTX_CODEC", "auto").strip().lower() == "python"


def new_context_cache(max_entries: int, ttl: float, timer: Callable[[], float] = time.monotonic
                      ) -> ContextCache | NativeContextCache:
    """The native table when the extension is built and the Python codec is not forced
    (COSTCTX_CODEC=python keeps every structure in Python, as the fallback runs)."""
    if _AncestorTable is not None and not _python_forced():
        return NativeContextCache(max_entries, ttl, timer)
    return ContextCache(max_entries, ttl, timer)


def new_trace_values(max_traces: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> Any:
    """TraceValues on the native table (`costctx_native._core.TraceVotes`, native/src/
    inherit_votes.rs: the same rules and answers, TraceValues its oracle; a trace's votes in
    one short native list instead of three dicts and a list per vote) when the extension is
    built and the Python codec is not forced."""
    if _TraceVotes is not None and not _python_forced():
        return _TraceVotes(max_traces, float(ttl), timer, _vote_key)
    return TraceValues(max_traces, ttl, timer)
