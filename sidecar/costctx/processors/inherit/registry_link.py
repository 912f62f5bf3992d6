"""How `inherit` uses the shared context registry (costctx/attribution/registry.py).

- learn: a span that arrives carrying `workflow.id` (its kind, ids and fields read from
  the batch view) registers its context for its trace
  (once per trace) and, when it is a CLIENT or PRODUCER span (the parent a remote child
  names), for itself;
- know: before a span is held, its parent is looked for in the registry's local cache
  (a budget check registers the caller's span there at once);
- ask: spans just held are looked up in the store, one round trip per batch; a span-level
  hit releases their waiters now, a trace-level hit is used when the hold times out
  (the nearest ancestor, if it arrives in time, still wins);
- flush: learned contexts are written to the store, one round trip at a time.
Store errors are counted and logged; repair then is today's local repair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from costctx.attribution.build import build_registry
from costctx.attribution.registry import ContextRegistry, Counts
from costctx.budget.store import StoreUnavailable
from costctx.component.host import Host
from costctx.processors.inherit.context_cache import NO_FIELDS, Known
from costctx.processors.inherit.learn_plan import learn_plan, native_learn_plan
from costctx.telemetry.metrics import SidecarMetrics

log = logging.getLogger("costctx.attribution")
REGISTRY_HOP = ""  # a context from the registry: its service is not known here


class RegistryMetrics:
    """The sidecar's one registry's metrics (not per processor: there is one registry)."""

    def __init__(self, metrics: SidecarMetrics, context_registry: ContextRegistry) -> None:
        family = metrics.family
        self.errors = family(Counter, "costctx_registry_errors", "Context registry store errors, by operation.",
                             ["operation"])
        self.lookups = family(Counter, "costctx_registry_lookups", "Context registry lookups, by result "
                              "(local, remote, miss).", ["result"])
        self.round_trips = family(Counter, "costctx_registry_round_trips", "Store round trips for registry reads.",
                                  [])
        self.written = family(Counter, "costctx_registry_written", "Contexts written to the shared store.", [])
        family(Gauge, "costctx_registry_entries", "Contexts in the registry's local cache.",
               []).set_function(lambda: len(context_registry))
        family(Gauge, "costctx_registry_pending_writes", "Contexts learned and not yet written.",
               []).set_function(lambda: context_registry.pending_writes)
        self.context_registry = context_registry
        self._seen = Counts()  # the registry's counts already added to the counters above

    def sync(self) -> None:
        """Add what the registry counted since the last sync (its counts are plain ints)."""
        counts, seen = self.context_registry.counts, self._seen
        for attr, inc in (("hits_local", self.lookups.labels("local").inc),
                          ("hits_remote", self.lookups.labels("remote").inc),
                          ("misses", self.lookups.labels("miss").inc),
                          ("round_trips", self.round_trips.inc), ("written", self.written.inc)):
            delta = getattr(counts, attr) - getattr(seen, attr)
            if delta:
                inc(delta)
                setattr(seen, attr, getattr(counts, attr))


def shared_registry(host: Host, config) -> tuple[ContextRegistry, RegistryMetrics]:
    """The sidecar's one registry, in the host's `context_registry` slot (the budget check
    registers into the same one); built by the first `inherit` processor, from its config."""
    registry = host.context_registry
    if registry is None:
        shared_here = host.in_process.registry_backend if host.in_process is not None else None
        registry = host.context_registry = build_registry(config, shared_here)
        registry.metrics = RegistryMetrics(host.metrics, registry)
    return registry, registry.metrics


def known_of(fields: dict[str, Any]) -> Known:
    return Known(fields, REGISTRY_HOP, None, NO_FIELDS)


class RegistryLink:
    def __init__(self, host: Host, config, on_known: Callable[[list[bytes]], None]) -> None:
        self.registry, self.metrics = shared_registry(host, config)
        self._on_known = on_known
        self._local = self.registry.local  # per span: a bound method of the cache
        self._tasks: set[asyncio.Task] = set()
        self._flushing = False
        self._learned: set[bytes] = set()  # traces learned in the batch being processed
        self._shared = self.registry.shared  # its backend's, fixed when built

    # -- per batch: what the batch's spans teach the registry --------------------------------
    def learn_batch(self, learning: list[tuple], native: bool = False) -> None:
        """A batch's spans carrying workflow.id, in the order they were decided: (span, own) for
        a span, (spans, own) for spans alike (a list), `own` its fields. One call per batch:
        its steps planned in one pass (learn_plan.py; natively with `native`), each trace
        learned once, the CLIENT and PRODUCER spans of traces learned already registered in
        runs of one fields dict, then taught to the registry in one call (`learn_steps`)."""
        plan = (native_learn_plan if native and native_learn_plan is not None else learn_plan)(
            learning, self._learned)
        if plan:
            self.registry.learn_steps(plan)

    def known(self, wait_key: bytes) -> Known | None:
        fields = self._local(wait_key)
        return known_of(fields) if fields is not None else None

    def trace_known(self, trace_id: bytes) -> Known | None:
        fields = self.registry.local_trace(trace_id)
        return known_of(fields) if fields is not None else None

    # -- per batch -------------------------------------------------------------------------
    def before_batch(self) -> None:
        self._learned.clear()

    def after_batch(self, wait_keys: Iterable[bytes]) -> None:
        if self._shared:  # the memory backend answers nothing: no ask made
            wanted = [(k[:16], k[16:]) for k in wait_keys]
            if wanted:
                self._spawn(self._ask(wanted))
        if self.registry.pending_writes and not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    def _spawn(self, coro) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()  # called outside the pipeline's loop (a unit test): nothing shared to ask
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, wanted: list[tuple[bytes, bytes]]) -> None:
        try:
            hits = await self.registry.lookup(wanted)
        except StoreUnavailable as exc:
            self.metrics.errors.labels("lookup").inc()
            log.warning("context registry unreachable on lookup; local repair only: %s", exc)
            return
        finally:
            self.metrics.sync()
        if hits:
            self._on_known([t + s for t, s in hits])

    async def _flush(self) -> None:
        try:
            await self.registry.flush()
        except StoreUnavailable as exc:
            self.metrics.errors.labels("write").inc()
            log.warning("context registry unreachable on write: %s", exc)
        finally:
            self._flushing = False
            self.metrics.sync()

    def tick(self) -> None:
        self.registry.expire()
        if self.registry.pending_writes and not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
