"""Spans already committed, by a key of their identity and amounts: an exporter that resends a
batch after a lost acknowledgement must not count its spend twice.

Memory, not speed, decides the layout: the set is bounded by `maxsize` keys and the bound is
reached within a minute at 10,000 spans/s. One plain dict `key -> expiry` holds every key;
`expiry` is one float per batch (`open_batch`), shared by every key that batch adds, so an
entry costs its dict slot and its key. Callers pass compact keys: `hash()` of the identity
tuple is a 64-bit int (SipHash of the ids under the process's random seed: not forgeable from
outside, and ~2e-9 odds of any collision among 200,000 live keys), ~90 bytes per entry with
the slot, where the tuple of ids and amounts was ~340 with an OrderedDict's node. Neither the
dict nor its int keys and float values are tracked by the cyclic GC.

Keys are dropped a generation at a time, never one by one from the front of the dict (which
skips the holes earlier deletions left: O(n)). The keys added since the last seal form the
young generation; it is sealed (its keys listed, newest last, read from the dict's end) once
it holds `maxsize / GENERATIONS` keys or is `ttl / GENERATIONS` old. So:

- never more than `maxsize` keys (plus at most one batch's, added between two checks), and
  the newest `maxsize * (GENERATIONS - 1) / GENERATIONS` are always kept;
- `key in seen` is exact: seen until the TTL has passed, as cachetools.TTLCache was;
- a batch's own test (`key in entries` after `open_batch`) also counts keys whose TTL passed
  less than `ttl / GENERATIONS` ago (their generation is dropped once all of it has expired):
  remembering a commit longer never counts spend twice;
- a generation dropped by the size bound before its TTL is counted (`evicted`) and logged:
  a resend of one of its spans would be counted again, so the bound must hold the exporter's
  retry horizon at the traffic the pod sees (see the budget processor's sizing).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable
from itertools import islice

log = logging.getLogger(__name__)

GENERATIONS = 8
LOG_EVERY = 60.0  # seconds between two log lines about the size bound

# The budget processor's commit-once bound. A dict whose keys come and go is resized to the
# power of two above 3 x its live keys, so its table costs 60-120 bytes per live key (plus the
# key's int, ~40) depending on where the count falls: 2**19 // 3 keys, less a few batches of
# overshoot, fill a 2**19-slot table (~10.5 MB) where 200,000 took a 2**20 one (~21 MB).
# ~100 bytes per span in all: ~17 MB at the bound, ~39 s of history at the bench's 4,480
# priced spans/s (an exporter's resend comes after its timeout, 10 s by default).
COMMITTED_SPANS = (1 << 19) // 3 - 2_048  # 172,714


class SeenSpans:
    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                 name: str = "budget commit-once set") -> None:
        if maxsize < 1 or ttl <= 0:
            raise ValueError("maxsize and ttl must be positive")
        self.maxsize = maxsize
        self.ttl = ttl
        self.name = name  # for the eviction log line
        self._timer = timer
        self._entries: dict[Hashable, float] = {}  # key -> expiry (one float per batch), oldest first
        # Sealed generations, oldest first: (their keys, the newest expiry among them).
        self._sealed: deque[tuple[list[Hashable], float]] = deque()
        self._sealed_count = 0  # keys in sealed generations; the rest of _entries are young
        self._young_since = timer()
        self._young_expiry = 0.0  # the newest expiry handed out to the young generation
        self._gen_cap = max(1, maxsize // GENERATIONS)
        self._gen_age = ttl / GENERATIONS
        if not sys.flags.hash_randomization:
            # hash() keys are only unforgeable under a seed nobody outside the process knows
            log.warning("%s: PYTHONHASHSEED is fixed, so span keys' hashes are predictable; "
                        "unset it (or set it to 'random') where spans come from untrusted clients", name)
        self.evicted = 0  # keys forgotten by the size bound before their TTL
        self._logged_at = -LOG_EVERY
        self.expired = 0  # keys forgotten after their TTL

    def __contains__(self, key: Hashable) -> bool:
        """Seen and not yet expired (as TTLCache: expired the moment the TTL has passed)."""
        expires = self._entries.get(key)
        return expires is not None and self._timer() < expires

    def add(self, key: Hashable) -> None:
        entries, expiry = self.open_batch()
        if key in entries:
            if entries[key] > self._timer():
                return  # seen and live: remembered until its first expiry
            # Its TTL passed but its generation is not dropped yet: forget it there, add it anew.
            del entries[key]
            self._forget_listed(key)
        if len(entries) >= self.maxsize:
            self.make_room()
        entries[key] = expiry

    def __len__(self) -> int:
        return len(self._entries)

    def open_batch(self) -> tuple[dict, float]:
        """For a batch of tests and adds inline: age out once, then -> (the entries, the expiry of
        a key added now). A key is seen when `key in entries`; to add one, `make_room()` when
        `len(entries) >= maxsize`, then `entries[key] = expiry` (the same float for the batch)."""
        now = self._timer()
        young = self._young_count()
        if young >= self._gen_cap or (young and now - self._young_since >= self._gen_age):
            self._seal(now)
        while (oldest := self._oldest_expiry()) is not None and oldest <= now:
            self.expired += self._drop_oldest()  # every key of the oldest generation has expired
        expiry = now + self.ttl
        self._young_expiry = expiry
        return self._entries, expiry

    def make_room(self) -> None:
        """The size bound: the oldest generation goes, whole (counted and logged)."""
        if self._oldest_expiry() is None:
            self._seal(self._timer())
        now = self._timer()
        kept_for = now - (self._oldest_expiry() - self.ttl)
        dropped = self._drop_oldest()
        self.evicted += dropped
        if now - self._logged_at < LOG_EVERY:
            return  # counted; logged at most once a minute (at the bound it happens every few s)
        self._logged_at = now
        log.warning("%s full (%d keys): %d spans forgotten after %.0f s, before their %.0f s TTL; "
                    "a resend of one of them would count again (%d so far)",
                    self.name, self.maxsize, dropped, kept_for, self.ttl, self.evicted)

    # -- the generations: a dict's tail and sealed lists here, the native table's in NativeSeenSpans
    def _young_count(self) -> int:
        return len(self._entries) - self._sealed_count

    def _oldest_expiry(self) -> float | None:
        """The newest expiry among the oldest sealed generation's keys (None: nothing sealed)."""
        return self._sealed[0][1] if self._sealed else None

    def _seal(self, now: float) -> None:
        entries = self._entries
        young = len(entries) - self._sealed_count
        if young:
            keys = list(islice(reversed(entries), young))  # the newest `young` keys, newest first
            keys.reverse()
            self._sealed.append((keys, self._young_expiry))
            self._sealed_count += young
        self._young_since = now

    def _drop_oldest(self) -> int:
        keys, newest = self._sealed.popleft()
        self._sealed_count -= len(keys)
        entries = self._entries
        dropped = 0
        for key in keys:
            expires = entries.get(key)
            if expires is not None and expires <= newest:  # not added again since (add() re-lists it)
                del entries[key]
                dropped += 1
        return dropped

    def _forget_listed(self, key: Hashable) -> None:
        """A key add() re-adds leaves its sealed generation's list (it is young again)."""
        for keys, _ in self._sealed:
            try:
                keys.remove(key)
            except ValueError:
                continue
            self._sealed_count -= 1
            return


class NativeSeenSpans(SeenSpans):
    """SeenSpans on the native table (`costctx_native._core.SpanKeyTable`, native/src/table.rs):
    the same rules, answers and counts (SeenSpans is its oracle), ~35 bytes per key where the
    dict took ~95. Keys must be ints (the callers' `hash()` keys)."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                 name: str = "budget commit-once set") -> None:
        super().__init__(maxsize, ttl, timer, name)
        self._entries = _SpanKeyTable()  # type: ignore[assignment]

    def _young_count(self) -> int:
        return self._entries.young_count()

    def _oldest_expiry(self) -> float | None:
        return self._entries.oldest_expiry()

    def _seal(self, now: float) -> None:
        self._entries.seal(self._young_expiry)
        self._young_since = now

    def _drop_oldest(self) -> int:
        return self._entries.drop_oldest()

    def _forget_listed(self, key: Hashable) -> None:
        self._entries.forget_listed(key)

    def nbytes(self) -> int:
        """Bytes held natively: tracemalloc does not see them."""
        return self._entries.nbytes()


try:
    from costctx_native._core import SpanKeyTable as _SpanKeyTable
except ImportError:  # built without the extension
    _SpanKeyTable = None


def new_seen_spans(maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic,
                   name: str = "budget commit-once set") -> SeenSpans:
    """The native table when the extension is built and the Python codec is not forced
    (COSTCTX_CODEC=python keeps every structure in Python, as the fallback runs)."""
    forced = os.environ.get("COSTCTX_CODEC", "auto").strip().lower() == "python"
    if _SpanKeyTable is not None and not forced:
        return NativeSeenSpans(maxsize, ttl, timer, name)
    return SeenSpans(maxsize, ttl, timer, name)
