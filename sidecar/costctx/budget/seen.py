"""Spans already committed, by trace id + span id: an exporter that resends a batch after
a lost acknowledgement must not count its spend twice.

What cachetools.TTLCache(maxsize, ttl) did here, for this one use (a membership test, then
an insert of what was absent), on an OrderedDict kept in insertion order: with one TTL for
all, insertion order is expiry order, so expiry looks only at the oldest entries and the size
bound pops the oldest. ~0.3 us per span instead of ~3 us (TTLCache keeps a linked list and a
second dict in Python), and every model-call span pays it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class SeenSpans:
    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._timer = timer
        self._expires: OrderedDict[bytes, float] = OrderedDict()  # span key -> expiry, oldest first

    def __contains__(self, key: bytes) -> bool:
        """Seen and not yet expired (as TTLCache: expired the moment the TTL has passed)."""
        expires = self._expires.get(key)
        return expires is not None and self._timer() < expires

    def add(self, key: bytes) -> None:
        now = self._timer()
        entries = self._drop_expired(now)
        if key in entries:
            entries.move_to_end(key)
        else:
            self.make_room()
        entries[key] = now + self.ttl

    def __len__(self) -> int:
        return len(self._expires)

    def open_batch(self) -> tuple[OrderedDict, float]:
        """For a batch of tests and adds inline: expire once, then -> (the entries, the expiry of
        an entry added now). A key is seen when `key in entries` (every expired entry is gone);
        to add one, `make_room()` when `len(entries) >= maxsize`, then `entries[key] = expiry`."""
        now = self._timer()
        return self._drop_expired(now), now + self.ttl

    def _drop_expired(self, now: float) -> OrderedDict:
        entries = self._expires
        while entries:  # drop the expired, oldest first
            oldest = next(iter(entries))
            if now < entries[oldest]:
                break
            del entries[oldest]
        return entries

    def make_room(self) -> None:
        entries = self._expires
        while len(entries) >= self.maxsize:
            entries.popitem(last=False)  # the size bound: the oldest goes first
