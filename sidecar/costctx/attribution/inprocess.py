"""State several sidecars in ONE process share in place of a Redis (the demo without redis-server).

The sidecars must run on one event loop thread (`SidecarThread(..., beside=...)`): the
memory budget store and this registry backend are not locked, they rely on one loop, as a
single sidecar's memory store does.

Each sidecar keeps its own `ContextRegistry` (its local cache and what it learned first-hand)
over the one `InProcessRegistryBackend`, exactly as each keeps its own over one Redis; the
budget engines share one `MemoryStore`, so counters, reservations and the commit-once marks
are common to both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import TLRUCache

from costctx.budget.memory import MemoryStore


class InProcessRegistryBackend:
    """The registry's store as a bounded in-memory map with a per-entry TTL: what
    `RedisBackend` does with SET PX and MGET, for sidecars sharing a process."""

    shared = True

    def __init__(self, max_entries: int = 200_000, timer: Callable[[], float] = time.monotonic) -> None:
        # name -> (expires at, value); the least recently used entry goes first when full.
        self._entries: TLRUCache[str, tuple[float, bytes]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, _now: value[0], timer=timer)
        self._timer = timer

    def __len__(self) -> int:
        return len(self._entries)

    async def write(self, entries: list[tuple[str, bytes]], ttl_ms: int) -> None:
        expires = self._timer() + ttl_ms / 1000.0
        for name, value in entries:
            self._entries[name] = (expires, value)

    async def read(self, names: list[str]) -> list[bytes | None]:
        found = [self._entries.get(name) for name in names]
        return [entry[1] if entry is not None else None for entry in found]

    async def close(self) -> None:
        return None  # shared: the other sidecars still use it


@dataclass
class InProcessShare:
    """What sidecars in one process share when their config says `backend: memory`."""

    budget_store: MemoryStore = field(default_factory=MemoryStore)
    registry_backend: InProcessRegistryBackend = field(default_factory=InProcessRegistryBackend)
