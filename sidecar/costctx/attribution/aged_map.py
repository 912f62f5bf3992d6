"""A map bounded by entries and by age, at the cost of a plain dict entry per key.

The registry's local cache held every entry in a `cachetools.TTLCache`: a dict slot, an
OrderedDict slot, a `_Link` object and a float per key, ~300 bytes beside the key and the
value; at 10,000 spans/s its 100,000 entries were ~60 MB. Here the entries live in two
generations of plain dicts (~50 bytes per key): new keys go to the young one; when it holds
half the bound, or is half the TTL old, it becomes the old one and the previous old one is
dropped whole. So:

- never more than `max_entries` keys, and the newest `max_entries // 2` are always kept;
- an entry is served for at least `ttl / 2` after it was set (unless pushed out by the size
  bound) and never once `ttl` has passed: forgotten between ttl/2 and ttl, not at exactly ttl;
- setting a key again moves it to the young generation (its age restarts), as a TTLCache does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class AgedMap(Generic[K, V]):
    __slots__ = ("max_entries", "ttl", "_timer", "_young_cap", "_old_cap", "_young", "_old",
                 "_young_since", "_old_since", "_check_at")

    def __init__(self, max_entries: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries and ttl must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self._timer = timer
        self._young_cap = max(1, max_entries // 2)
        self._old_cap = max_entries - self._young_cap  # >= _young_cap, except 0 when max_entries == 1
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}
        now = timer()
        self._young_since = self._old_since = now
        self._check_at = now + ttl / 2  # the next moment a generation may be due to age out

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def __contains__(self, key: K) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def get(self, key: K, default=None):
        if self._timer() >= self._check_at:
            self.expire()
        value = self._young.get(key, _MISSING)
        if value is _MISSING:
            value = self._old.get(key, default)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        now = self._timer()
        if now >= self._check_at:
            self.expire()
        self._store(key, value, now)

    def _store(self, key: K, value: V, now: float) -> None:
        """Set `key` in the young generation, rotating first when it is full."""
        young = self._young
        if key not in young:
            if len(young) >= self._young_cap:
                self._rotate(now)
                young = self._young
            self._old.pop(key, None)  # one copy of a key: len() stays exact
        young[key] = value

    def put_absent(self, key: K, value: V) -> bool:
        """`if self.get(key) is None: self[key] = value`, the clock read once: whether it was set."""
        now = self._timer()
        if now >= self._check_at:
            self.expire()
        young = self._young
        found = young.get(key, _MISSING)
        if found is _MISSING:
            found = self._old.get(key)
        if found is not None:
            return False
        self._store(key, value, now)
        return True

    def set_many(self, keys: list[K], value: V) -> None:
        """`self[key] = value` for each key in order, the clock read once (set_pairs)."""
        self.set_pairs([(key, value) for key in keys])

    def set_pairs(self, pairs: list[tuple[K, V]]) -> None:
        """`self[key] = value` for each (key, value) in order, the clock read once: when the young
        generation has room for them all (no rotation can fall between two), one dict update."""
        if not pairs:
            return  # no set: nothing expires either
        now = self._timer()
        if now >= self._check_at:
            self.expire()
        young = self._young
        if len(young) + len(pairs) > self._young_cap:
            for key, value in pairs:  # a rotation may fall between two: one at a time, as __setitem__
                self._store(key, value, now)
            return
        old = self._old
        if old and not old.keys().isdisjoint([key for key, _ in pairs]):
            for key, _ in pairs:
                old.pop(key, None)  # one copy of a key: len() stays exact
        young.update(pairs)

    def expire(self) -> None:
        """Drop what has aged out (also done by get and set when due)."""
        now = self._timer()
        if now - self._young_since >= self.ttl / 2:
            self._rotate(now)
        if self._old and now - self._old_since >= self.ttl:
            self._old = {}
        self._schedule()

    def _rotate(self, now: float) -> None:
        young = self._young
        if len(young) <= self._old_cap and now - self._young_since < self.ttl:
            self._old, self._old_since = young, self._young_since
        else:
            self._old = {}
        self._young, self._young_since = {}, now
        self._schedule()

    def _schedule(self) -> None:
        at = self._young_since + self.ttl / 2
        if self._old:
            at = min(at, self._old_since + self.ttl)
        self._check_at = at
