"""The context registry: (trace id, span id) -> envelope, shared by every sidecar.

A sidecar writes what it learns (a budget check's envelope for the caller's span, a span
that arrives carrying its context) and reads it when a span's ancestors are unknown
locally: the parent may live in another service, seen by another sidecar.

Two levels are kept, both with a TTL:
- span: `ctx|<trace>|<span>` -> the envelope that span carried or was checked with;
- trace: `ctx|<trace>` -> the workflow's envelope as first learned for the trace (the
  "any span of the same trace" rule of ENVELOPE.md, across services).

A local cache sits in front (entries and age bounded: attribution/aged_map.py); a lookup for
what the cache lacks is one round trip (MGET) per batch. With Redis down every call raises
StoreUnavailable, which the caller counts and treats as "not known" (today's local repair). `MemoryBackend` is the
single-pod registry: the cache alone.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, Protocol

from costctx.attribution.aged_map import AgedMap
from costctx.budget.store import StoreUnavailable

log = logging.getLogger("costctx.attribution")
Fields = dict[str, Any]


def span_key(trace_id: bytes, span_id: bytes) -> bytes:
    return trace_id + span_id


class RegistryBackend(Protocol):
    async def write(self, entries: list[tuple[str, bytes]], ttl_ms: int) -> None: ...

    async def read(self, names: list[str]) -> list[bytes | None]: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """Nothing beyond the local cache: one sidecar's registry."""

    shared = False

    async def write(self, entries: list[tuple[str, bytes]], ttl_ms: int) -> None:
        return None

    async def read(self, names: list[str]) -> list[bytes | None]:
        return [None] * len(names)

    async def close(self) -> None:
        return None


# `SET KEYS[i] ARGV[i] PX ttl` for each key, the TTL (ms) the last argument: one reply per call.
_WRITE_LUA = """
local ttl = ARGV[#ARGV]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl)
end
return #KEYS
"""
# Entries per script call: Redis runs a script alone, so a big flush is cut into calls of
# ~1 ms each rather than one call holding the budgets' store for the whole flush.
WRITE_CHUNK = 500


class RedisBackend:
    """The registry on the Redis the budgets use: one script call per write (per WRITE_CHUNK
    entries; a pipeline of SETs on a cluster), one MGET per read."""

    shared = True

    def __init__(self, url: str, prefix: str, timeout: float, cluster: bool = False) -> None:
        # Imported here: the redis client is ~7 MB of RSS a sidecar on the memory backend never uses.
        from costctx.budget.redis_client import redis_client, untagged

        self.cluster = cluster
        # On a cluster, hash-tagged per trace: a trace's entries share a slot, traces spread over the nodes.
        self.prefix = untagged(prefix) if cluster else prefix
        self.client = redis_client(url, timeout, cluster)
        # One Redis: the entries of a write in one script call, so one reply to parse rather
        # than one per SET (redis-py parses replies in Python: ~40 us of CPU per entry with a
        # pipeline of SETs, most of a write's cost). A cluster's keys span slots: a pipeline.
        # register_script: EVALSHA, the script loaded again on NOSCRIPT (e.g. after a restart).
        self._write_script = None if cluster else self.client.register_script(_WRITE_LUA)

    def key(self, name: str) -> str:
        if not self.cluster:
            return self.prefix + name
        kind, trace, *span = name.split("|")
        return f"{self.prefix}{kind}|{{{trace}}}" + (f"|{span[0]}" if span else "")

    async def write(self, entries: list[tuple[str, bytes]], ttl_ms: int) -> None:
        from costctx.budget.redis_client import STORE_ERRORS

        try:
            script = self._write_script
            if script is not None:
                key = self.key
                for at in range(0, len(entries), WRITE_CHUNK):
                    chunk = entries[at:at + WRITE_CHUNK]
                    await script(keys=[key(name) for name, _ in chunk], args=[*(v for _, v in chunk), ttl_ms])
                return
            async with self.client.pipeline(transaction=False) as pipe:
                for name, value in entries:
                    pipe.set(self.key(name), value, px=ttl_ms)
                await pipe.execute()
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def read(self, names: list[str]) -> list[bytes | None]:
        from costctx.budget.redis_client import STORE_ERRORS

        try:
            keys = [self.key(n) for n in names]
            if self.cluster:
                return list(await self.client.mget_nonatomic(keys))  # one MGET per node
            return list(await self.client.mget(keys))
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()


def _name(key: bytes) -> str:
    """The store's name for a cache key: 24 bytes (trace + span) or 16 (the trace)."""
    if len(key) == 24:
        return f"ctx|{key[:16].hex()}|{key[16:].hex()}"
    return f"ctx|{key.hex()}"


# json.dumps(fields, separators=(",", ":"), sort_keys=True), its encoder made once rather than
# per call (~1.4 of ~5 us per fields dict: json.dumps builds one for any non-default option).
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _encode(fields: Fields) -> bytes:
    return _ENCODER.encode(fields).encode()


def _decode(raw: bytes | None) -> Fields | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # not ours, or damaged: treated as unknown
    return value if isinstance(value, dict) else None


class Counts:
    """What the registry did, for the caller's metrics (plain ints: read at scrape time)."""

    __slots__ = ("written", "lookups", "round_trips", "hits_local", "hits_remote", "misses", "errors")

    def __init__(self) -> None:
        self.written = self.lookups = self.round_trips = 0
        self.hits_local = self.hits_remote = self.misses = self.errors = 0


class ContextRegistry:
    """Local cache + backend. `learn` is synchronous (queued, written by `flush`); `lookup`
    answers from the cache and asks the backend once for the rest."""

    def __init__(self, backend: RegistryBackend, ttl: float, max_entries: int = 50_000,
                 timer: Callable[[], float] = time.monotonic, max_pending_writes: int = 10_000) -> None:
        self.backend = backend
        self.ttl = ttl
        self.ttl_ms = max(int(ttl * 1000), 1)
        # trace id + span id (24 bytes) or trace id (16) -> fields. Misses are not cached:
        # the context may be registered any moment. Holds the last max_entries / 2 to
        # max_entries contexts learned, each for ttl / 2 to ttl (aged_map.py).
        self._cache: AgedMap[bytes, Fields] = AgedMap(max_entries, ttl, timer)
        # Traces this sidecar has already learned at trace level (learned once each) -> whether
        # it learned the context first-hand (a budget check: True), not for the store only.
        self._traces: AgedMap[bytes, bool] = AgedMap(max_entries, ttl, timer)
        # The fields last stored: spans of one trace come together and mostly carry equal
        # fields, so equal dicts are stored as one object (~300 bytes each saved).
        self._last_fields: Fields = {}
        self._pending: dict[bytes, bytes] = {}
        self.max_pending_writes = max_pending_writes
        self.dropped_writes = 0
        self.counts = Counts()
        self.metrics: Any = None  # its Prometheus side, set by whoever publishes it (inherit's link)

    @property
    def shared(self) -> bool:
        return bool(getattr(self.backend, "shared", False))

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    # -- learning ------------------------------------------------------------------------
    def learn(self, trace_id: bytes, span_id: bytes | None, fields: Fields, *, trace_locally: bool = True) -> None:
        """Remember `fields` for the span (when given) and, once per trace, for the trace.

        `trace_locally=False`: the trace-level entry is written to the store only, not kept
        in the local cache (a span this sidecar saw: its own trace fallback already covers
        the trace, by the contract's narrower rule)."""
        if not fields or not trace_id:
            return
        if span_id:
            self._put(trace_id + span_id, fields)
        if "workflow.id" in fields and self._traces.get(trace_id) is None:
            self._traces[trace_id] = trace_locally
            self._put(trace_id, fields, locally=trace_locally)

    def learn_span(self, trace_id: bytes, span_id: bytes, fields: Fields) -> None:
        """`learn` for a span whose trace the caller has already learned (its trace-level
        entry is written, or was when the caller learned it)."""
        if fields and trace_id and span_id:
            self._put(trace_id + span_id, fields)

    def learn_spans(self, keys: list[bytes], fields: Fields) -> None:
        """`learn_span` for many spans (trace id + span id keys, both non-empty) carrying the
        same fields: `_put` for each, the fields compared and encoded once."""
        if not fields or not keys:
            return
        if fields is not self._last_fields:
            if fields == self._last_fields:
                fields = self._last_fields
            else:
                self._last_fields = fields
        self._cache.set_many(keys, fields)
        if self.shared:
            self._queue(keys, _encode(fields))

    def learn_steps(self, plan: list[tuple]) -> None:
        """A batch's learning in one call, leaving the registry as these calls in order would:
        `learn_spans(keys, fields)` for a step (keys, fields), `learn(trace_id, span_id or None,
        fields, trace_locally=False)` for a step (trace_id, span_id, fields)
        (inherit/learn_plan.py makes the steps). The local cache is set once for the batch
        (AgedMap.set_pairs), the clock read once; only the per-step work is a Python pass.
        With a shared store each fields object is encoded once per call (a workflow's spans and
        its trace share one dict, never mutated: the plan holds them, so their ids are theirs),
        not once per step."""
        last = self._last_fields
        pairs: list[tuple[bytes, Fields]] = []  # the local cache's sets, in order
        shared = self.shared
        traces = self._traces
        encoded: dict[int, bytes] = {}  # id(fields) -> _encode(fields), for this call

        def encode_once(fields: Fields) -> bytes:
            raw = encoded.get(id(fields))
            if raw is None:
                raw = encoded[id(fields)] = _encode(fields)
            return raw

        for step in plan:
            if len(step) == 2:
                keys, fields = step
                if not fields or not keys:
                    continue
                if fields is not last:
                    if fields == last:
                        fields = last  # equal and never mutated: share the one object
                    else:
                        last = fields
                pairs += zip(keys, repeat(fields))
                if shared:
                    self._queue(keys, encode_once(fields))
                continue
            trace_id, span_id, fields = step
            if not fields or not trace_id:
                continue
            if span_id:
                local = fields
                if local is not last:
                    if local == last:
                        local = last
                    else:
                        last = local
                pairs.append((trace_id + span_id, local))
                if shared:
                    self._queue((trace_id + span_id,), encode_once(fields))
            # The trace (put_absent first, whether shared or not): written to the store only,
            # not kept locally.
            if "workflow.id" in fields and traces.put_absent(trace_id, False) and shared:
                self._queue((trace_id,), encode_once(fields))
        self._last_fields = last
        self._cache.set_pairs(pairs)

    def _queue(self, keys: Iterable[bytes], encoded: bytes) -> None:
        """Writes for the next flush, as many as `max_pending_writes` allows (the rest counted)."""
        pending = self._pending
        for key in keys:
            if len(pending) >= self.max_pending_writes:
                self.dropped_writes += 1
                continue
            pending[key] = encoded

    def source(self, trace_id: bytes) -> str:
        """How the trace's context was learned: `check` (here, first-hand) or `registry` (the store)."""
        return "check" if self._traces.get(trace_id) else "registry"

    def _put(self, key: bytes, fields: Fields, locally: bool = True) -> None:
        if locally:
            if fields is self._last_fields:
                pass  # the one object already (a batch's spans alike share their fields dict)
            elif fields == self._last_fields:
                fields = self._last_fields  # equal and never mutated: share the one object
            else:
                self._last_fields = fields
            self._cache[key] = fields
        if not self.shared:
            return
        if len(self._pending) >= self.max_pending_writes:
            self.dropped_writes += 1  # the store is behind or down: local knowledge still serves
            return
        self._pending[key] = _encode(fields)

    async def flush(self) -> None:
        """Write what was learned since the last flush (one round trip)."""
        if not self._pending:
            return
        entries = [(_name(key), value) for key, value in self._pending.items()]
        self._pending = {}
        try:
            await self.backend.write(entries, self.ttl_ms)
        except StoreUnavailable:
            self.counts.errors += 1
            raise
        self.counts.written += len(entries)

    async def try_flush(self) -> bool:
        """flush(), a store error logged and counted instead of raised (the caller goes on)."""
        try:
            await self.flush()
        except StoreUnavailable as exc:
            log.warning("context registry unreachable on write: %s", exc)
            return False
        return True

    # -- reading -------------------------------------------------------------------------
    def local(self, key: bytes) -> Fields | None:
        """From the cache only, by key: trace id + span id, or the trace id alone."""
        return self._cache.get(key)

    def local_span(self, trace_id: bytes, span_id: bytes) -> Fields | None:
        """From the cache only: the envelope registered for this very span."""
        return self._cache.get(trace_id + span_id)

    def local_trace(self, trace_id: bytes) -> Fields | None:
        """From the cache only: the workflow's envelope as first learned for the trace."""
        return self._cache.get(trace_id)

    async def lookup(self, wanted: Iterable[tuple[bytes, bytes]]) -> set[tuple[bytes, bytes]]:
        """Bring what the store knows of these (trace id, span id) pairs and their traces into
        the cache, in one round trip for everything the cache lacks. Returns the pairs now
        known at span level (their traces may be known too: `local_trace`)."""
        counts = self.counts
        spans: set[tuple[bytes, bytes]] = set()
        keys: list[bytes] = []
        for trace_id, span_id in dict.fromkeys(wanted):
            counts.lookups += 1
            if self.local_span(trace_id, span_id) is not None:
                counts.hits_local += 1
                spans.add((trace_id, span_id))
                continue
            keys.append(trace_id + span_id)
            if self.local_trace(trace_id) is None:
                keys.append(trace_id)
        if not keys or not self.shared:
            counts.misses += len(keys)
            return spans
        keys = list(dict.fromkeys(keys))
        counts.round_trips += 1
        try:
            raws = await self.backend.read([_name(key) for key in keys])
        except StoreUnavailable:
            counts.errors += 1
            raise
        for key, raw in zip(keys, raws, strict=True):
            fields = _decode(raw)
            if fields is None:
                counts.misses += 1
                continue
            counts.hits_remote += 1
            self._cache[key] = fields
        for trace_id, span_id in dict.fromkeys(wanted):
            if (trace_id, span_id) not in spans and self.local_span(trace_id, span_id) is not None:
                spans.add((trace_id, span_id))
        return spans

    async def lookup_traces(self, trace_ids: Iterable[bytes]) -> set[bytes]:
        """The traces (of these) whose workflow envelope is known, asking the store once."""
        known: set[bytes] = set()
        names: list[str] = []
        ask: list[bytes] = []
        for trace_id in dict.fromkeys(trace_ids):
            self.counts.lookups += 1
            if self.local_trace(trace_id) is not None:
                self.counts.hits_local += 1
                known.add(trace_id)
            else:
                ask.append(trace_id)
                names.append(_name(trace_id))
        if not ask or not self.shared:
            self.counts.misses += len(ask)
            return known
        self.counts.round_trips += 1
        try:
            raws = await self.backend.read(names)
        except StoreUnavailable:
            self.counts.errors += 1
            raise
        for trace_id, raw in zip(ask, raws, strict=True):
            fields = _decode(raw)
            if fields is None:
                self.counts.misses += 1
                continue
            self.counts.hits_remote += 1
            self._cache[trace_id] = fields
            known.add(trace_id)
        return known

    def expire(self) -> None:
        self._cache.expire()
        self._traces.expire()

    async def close(self) -> None:
        await self.backend.close()
