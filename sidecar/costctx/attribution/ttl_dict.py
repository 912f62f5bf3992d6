"""A dict bounded in entries (oldest out first) and in age, cheaper per write than cachetools'
TTLCache: no per-entry link object, lock or timer context, one dict slot and one list slot per
entry. Entries set within `ttl / 4096` of the first of a run share its age (they age out up to
that much early), so a steady stream of writes costs one small list per run, not per entry.
Unlike TTLCache, a read does not make an entry recently used: the oldest written leaves first.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class TtlDict:
    __slots__ = ("maxsize", "ttl", "_timer", "_data", "_chunks", "_head", "_older", "_next_due", "_slack")

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._timer = timer
        self._data: dict[Any, Any] = {}
        # Keys in the order written, in runs: [expires, key, key, ...]; the next one at _head.
        self._chunks: deque[list] = deque()
        self._head = 1
        # Keys written again: how many older places each still has in the runs (skipped).
        self._older: dict[Any, int] = {}
        self._next_due = math.inf
        self._slack = ttl / 4096

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._data.get(key)
        if value is not None and self._timer() >= self._next_due:
            self.expire()  # something is due: it may be this one
            value = self._data.get(key)
        return default if value is None else value

    def __setitem__(self, key: Any, value: Any) -> None:
        now = self._timer()
        if now >= self._next_due:
            self.expire(now)
        data = self._data
        if key in data:
            self._older[key] = self._older.get(key, 0) + 1  # its older place is skipped
        data[key] = value
        expires = now + self.ttl
        chunks = self._chunks
        if chunks and 0 <= expires - chunks[-1][0] < self._slack:
            chunks[-1].append(key)
        else:
            chunks.append([expires, key])
            if expires < self._next_due:
                self._next_due = expires
        while len(data) > self.maxsize:
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        chunks, older = self._chunks, self._older
        while chunks:
            chunk = chunks[0]
            key = chunk[self._head]
            self._head += 1
            if self._head == len(chunk):
                chunks.popleft()
                self._head = 1
                self._next_due = chunks[0][0] if chunks else math.inf
            if older and key in older:
                self._skip(key)
                continue
            del self._data[key]
            return

    def _skip(self, key: Any) -> None:
        left = self._older[key] - 1
        if left:
            self._older[key] = left
        else:
            del self._older[key]

    def expire(self, now: float | None = None) -> None:
        if now is None:
            now = self._timer()
        chunks, data, older = self._chunks, self._data, self._older
        while chunks and chunks[0][0] <= now:
            chunk = chunks.popleft()
            for i in range(self._head, len(chunk)):
                key = chunk[i]
                if older and key in older:
                    self._skip(key)
                else:
                    del data[key]
            self._head = 1
        self._next_due = chunks[0][0] if chunks else math.inf
