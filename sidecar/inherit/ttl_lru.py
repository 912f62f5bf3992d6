"""A bounded map with LRU eviction and a per-entry time to live: cachetools.TTLCache's
behaviour, at a fraction of its cost per operation.

The inherit processor does one lookup and one insert per span, so TTLCache's pure-Python
linked list, timer context manager and method chain were a tenth of its time (profiled with
bench/profile_stage.py). Two C-implemented OrderedDicts give the same semantics:
- `_values` in least-recently-used order (a hit or an insert moves the key to the end);
- `_expires` in expiry order: the ttl is the same for every entry and the clock never goes
  back, so insertion order is expiry order (a re-insert moves the key to the end).
Like TTLCache: an entry is live while `timer() < expires`; `get` of an expired entry misses
without touching its recency; `put` first drops expired entries, then evicts the least
recently used live ones while full; `len` drops expired entries first.
tests/test_inherit_ttl_lru.py checks it step by step against TTLCache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    __slots__ = ("_values", "_expires", "_due", "maxsize", "ttl", "timer")

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._values: OrderedDict[K, V] = OrderedDict()
        self._expires: OrderedDict[K, float] = OrderedDict()
        # Never later than the oldest entry's expiry (removals only make that later), so
        # `put` skips the expiry scan until it is due: one float compare per insert.
        self._due = float("-inf")
        self.maxsize = maxsize
        self.ttl = ttl
        self.timer = timer

    def get(self, key: K) -> V | None:
        values = self._values
        if key not in values:
            return None
        if self.timer() < self._expires[key]:
            values.move_to_end(key)
            return values[key]
        return None

    def put(self, key: K, value: V) -> None:
        now = self.timer()
        if now >= self._due:
            self.expire(now)
        values = self._values
        expires = self._expires
        if key in values:
            values[key] = value
            values.move_to_end(key)
            expires[key] = now + self.ttl
            expires.move_to_end(key)
            return
        if len(values) >= self.maxsize:
            popitem = values.popitem
            while len(values) >= self.maxsize:
                del expires[popitem(last=False)[0]]
        values[key] = value
        expires[key] = now + self.ttl

    def expire(self, now: float | None = None) -> None:
        """Drop the entries whose time is up (looks at the oldest first, stops at a live one)."""
        if now is None:
            now = self.timer()
        expires = self._expires
        values = self._values
        items = expires.items()
        while expires:
            key, at = next(iter(items))
            if now < at:
                self._due = at
                return
            del expires[key]
            del values[key]
        self._due = now + self.ttl  # empty: nothing expires before an entry added from now on

    def __len__(self) -> int:
        self.expire()
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values and self.timer() < self._expires[key]  # type: ignore[index]
