"""The `inherit` processor: fill missing context fields from the nearest ancestor span.

Sub-agents, async tool calls and retries lose the context, and their spend lands in an
"unknown" bucket. The sidecar repairs them from the spans it has seen, whatever order they
arrive in: the SDK exports a span when it ends, so children usually come before the root
that carries `workflow.id`, often in an earlier batch.

Per span (one pass over the batch view: ids, parent, links, the watched attributes):
- it reads the span's own context fields and looks its parent up in the ancestor cache;
- parent known, or no parent: fill what is missing from the parent's fields (which are the
  parent's own plus what it inherited, i.e. the nearest ancestor's), then from the resource
  (`owner.version` <- `service.version`), then from another span of the trace (fallback);
  stamp `costctx.repaired` and `workflow.hop_depth`; remember the result in the cache;
- parent unknown and a required field missing: hold the span (per trace, `wait_duration`)
  until the ancestor arrives; it is released, repaired, together with its held descendants;
- a span that needs no repair is never held: it leaves in the batch it came in.
A held span leaves its batch as bytes (a one-span request with its resource and scope: the
hold, its byte bounds and the journal keep those). A released span is decided on the view
recorded when it was held; the bytes then join the batch whose ancestor (or overflow) released
it, after that batch's own spans (ViewBatch.extend), or, released on timeout, shutdown or a
registry answer, form a batch of their own. Either way the repair is written as edits.
A value a span carries itself is never overwritten; a different ancestor value is a conflict.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import HOP_DEPTH_KEY, REPAIRED_KEY
from costctx.pdata import TraceBatch
from costctx.pdata.batch import ResourceView as RecordResource
from costctx.pdata.batch import SpanRecord
from costctx.pdata.codec import Codec, select_codec
from costctx.pdata.codec.api import EMPTY, BatchEdits, KvList, ResourceView, SpanEdits, SpanView
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.inherit.batch_read import (
    native_parent_first,
    native_read_batch,
    parent_first,
    read_batch,
)
from costctx.processors.inherit.config import InheritConfig
from costctx.processors.inherit.context_cache import NO_FIELDS, Known, new_context_cache, new_trace_values
from costctx.processors.inherit.hold import HeldSpan, Hold, TraceHold
from costctx.processors.inherit.hold_journal import HoldJournal
from costctx.processors.inherit.metrics import InheritMetrics
from costctx.processors.inherit.registry_link import RegistryLink
from costctx.processors.inherit.split import one_span_requests

try:
    from costctx_native._core import DecideKernel as _DecideKernel
except ImportError:  # built without the extension
    _DecideKernel = None

MiB = 1024 * 1024
_INVALID_SPAN_ID = bytes(8)
_ROOT_IDS = (b"", _INVALID_SPAN_ID)  # parent span ids of a root (all zero: invalid, W3C)
_NO_SETS: tuple = ()


class _Tally:
    """Per-batch counts, added to Prometheus once per batch rather than once per span."""

    __slots__ = ("repaired", "conflicts", "released", "missing", "held", "resource", "resource_values",
                 "resource_names", "shared")

    def __init__(self) -> None:
        # (source, fields) -> spans: one update per span, expanded per field at flush.
        self.repaired: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.conflicts: Counter[str] = Counter()
        self.released: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self.held = 0
        # The last resource seen and what it supplies to spans (spans come grouped by resource).
        self.resource: ResourceView | None = None
        self.resource_values: tuple[tuple[str, str], ...] = ()
        self.resource_names: tuple[str, ...] = ()
        # Decisions siblings share within the batch: (id(parent's fields dict), resource, depth,
        # the span's own keys) -> (that dict, the sets written, the repaired fields, the
        # fields dict it leaves with); the parent dict is held so its id stays its own.
        self.shared: dict[tuple, tuple] = {}


class InheritProcessor(Processor):
    type_name = "inherit"
    config_model = InheritConfig
    config: InheritConfig
    on_view = True
    # The spans of a unit after its first take its shared decision at once (False: each is
    # decided alone, in the same order: the oracle of the group path, in tests).
    bulk = True
    # The common spans of a level decided by the native kernel (native/src/inherit_kernel.rs)
    # with the native codec, stopping for Python's path at the first it cannot decide exactly
    # (False: every span the Python way, the kernel's oracle in tests).
    kernel = True

    # With the kernel, the native codec's spans are read from the lazy list's records (no view
    # made); views are made only for the spans Python's path takes (False: every span's view,
    # as before: the same decisions, for A/B measurements).
    read_records = True

    @property
    def columnar(self) -> bool:  # type: ignore[override]
        return self.read_records and self.kernel and self._kernel is not None

    def __init__(self, name: str, config: InheritConfig, host: Host) -> None:
        super().__init__(name, config, host)
        envelope = host.envelope
        self._fields: tuple[str, ...] = envelope.inheritable
        self._field_set = frozenset(self._fields)
        # Only inheritable fields are worth waiting for (retry.attempt never is).
        self._required = tuple(k for k in config.required_fields if k in self._fields)
        self._required_set = frozenset(self._required)
        self._resource_fallback = {
            f.key: f.resource_fallback for f in envelope.context_fields if f.resource_fallback and f.inherit
        }
        self._fallback_fields = tuple(config.trace_fallback_fields) if config.trace_fallback else ()
        self._watched = frozenset(
            (*self._fields, *self._fallback_fields, *self._resource_fallback.values(), REPAIRED_KEY, HOP_DEPTH_KEY))
        # The same repaired list on most repaired spans: one list object per distinct list.
        self._repaired_lists: dict[tuple[str, ...], list[str]] = {}
        self._str_types: dict[tuple, bool] = {}
        # Decisions by shape (field names of a span, of its parent, of its resource): _plan.
        self._plans: dict[tuple, tuple] = {}
        # Spans alike in a level of a batch form units (decided together, `bulk`); False:
        # every span alone, in level order.
        self.group_decisions = True
        self._last_shared: tuple | None = None  # the shared decision _resolve last made or reused
        self._kernel = (_DecideKernel(self, self._plans, list(self._fallback_fields), Known, SpanEdits,
                                      REPAIRED_KEY, HOP_DEPTH_KEY, NO_FIELDS) if _DecideKernel is not None else None)
        self.hold = Hold(config.wait_duration)
        self.registry = RegistryLink(host, config.registry, self._registry_known)
        self.use_clock(time.monotonic)
        self._max_spans = config.hold.max_spans
        self._max_bytes = config.hold.max_bytes
        self.metrics = InheritMetrics(self.component_metrics())
        # (family, label) -> its counter child: labels() looked up once, not per batch
        # (bounded: fields, release reasons).
        self._children: dict[tuple[Any, str], Any] = {}
        # With a persistent sending queue, held (acknowledged) spans are kept on disk too.
        storage = host.hold_storage
        self.journal = HoldJournal(storage[0], name, storage[1]) if storage else None
        self._restored: list[tuple[bytes, bytes]] = []
        # The batch being processed and spans released while it is (they leave with it).
        self._batch: ViewBatch | None = None
        # Spans carrying workflow.id decided in the batch being processed, with their own fields,
        # in order: (span, own) or (spans alike, own); learned by the registry in one call at the
        # batch's end (RegistryLink.learn_batch), not per span.
        self._learning: list[tuple] = []
        self._released: list[HeldSpan] = []
        # A direct `process` call (a TraceBatch): released spans are kept here and appended to it.
        self._direct = False
        self._followers: list[ViewBatch] = []
        # Released batches are scanned with the codec and the keys of the pipeline's batches.
        self._codec: Codec | None = None
        self._scan_keys: frozenset[str] | None = None
        m = self.metrics
        m.hold_spans.set_function(lambda: self.hold.span_count)
        m.hold_bytes.set_function(lambda: self.hold.nbytes)
        m.hold_traces.set_function(lambda: len(self.hold.traces))
        m.cache_entries.set_function(lambda: len(self.cache))
        m.trace_entries.set_function(lambda: len(self.trace_values))

    def watched_keys(self) -> frozenset[str]:
        return self._watched

    def _repaired_list(self, repaired: list[str] | tuple[str, ...]) -> list[str]:
        """The `costctx.repaired` stamp for these fields: the same list on most repaired spans,
        so one list object per distinct list (bounded)."""
        signature = tuple(repaired)
        listed = self._repaired_lists.get(signature)
        if listed is None:
            if len(self._repaired_lists) >= 1024:
                self._repaired_lists.clear()
            listed = self._repaired_lists[signature] = list(signature)
        return listed

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Set the clock for hold deadlines and cache ages (tests step one by hand).

        Empties the caches: their entries' ages were measured on the previous clock."""
        self.clock = clock
        cache = self.config.cache
        self.cache = new_context_cache(cache.max_entries, cache.ttl, clock)
        self.trace_values = new_trace_values(cache.max_traces, cache.ttl, clock)

    # -- the batch path --------------------------------------------------------------------
    def process_view(self, batch: ViewBatch) -> ViewBatch:
        if self.journal is not None:
            self.journal.flush()  # spans released before this batch have been queued by now
        self._codec = batch.codec
        self.registry.before_batch()
        self.trace_values.new_batch()
        if batch.watched is not self._scan_keys:
            self._scan_keys = batch.watched if batch.watched >= self._watched else batch.watched | self._watched
        view = batch.view
        indices = batch.indices()
        if not len(indices):
            return batch
        now = self.clock()
        cache = self.cache
        # Every entry left is live at `now`, the time the batch's puts are made at: reads of the
        # batch go to the entries directly.
        cache.expire_due(now)
        cache.now = now
        cache_get = cache.reader()
        hold = self.hold
        tally = _Tally()
        held_here: list[HeldSpan] = []
        self._batch = batch
        spans = view.spans
        resources = view.resources

        # Hoisted: this loop runs once per span.
        fields_order = self._fields
        required = self._required_set
        resolve = self._resolve
        apply = self._apply
        add_held = hold.add
        waiters = hold.waiters
        registry_known = self.registry.known
        learning = self._learning
        learning.clear()
        to_learn = learning.append
        own_of = partial(_own_fields, fields_order)
        owns: dict = {}  # (the span's field values, their types) -> its own fields, per batch
        here: dict[bytes, Known] = {}  # key -> what a span resolved in this batch left with
        here_get = here.get
        # One call per batch: each span's key, its ancestor's key and its group (spans carrying
        # the same string values share one), and per group its own fields (one dict, never
        # mutated: Known.fields), own key, complete: made once, from its first span's values.
        # (`owns` below is for spans read alone: some value of theirs is not a string, so their
        # own keys never equal a group's.)
        native = native_read_batch is not None and batch.codec.name == "native"
        keys, wait_keys, groups, by_group = (native_read_batch if native else read_batch)(
            spans, indices, fields_order, required)
        # Parent first, level by level: a span whose ancestor is in this batch is resolved after
        # it, in place, never held (children mostly come before their parents: the SDK exports
        # on end).
        order, ends = (native_parent_first if native else parent_first)(keys, wait_keys)

        def one(index: int, span: SpanView, key: bytes, wait_key: bytes | None, own: dict, own_key: tuple | None,
                complete: bool, parent: Known | None, defer: bool = False) -> tuple | None:
            """Hold or resolve one span (a span alone, or the first of a unit). `defer`: when
            its decision is shared with spans alike in this batch (_Tally.shared's entry) and
            no held span waits for it, it is not written: the entry is returned and the
            caller writes it with the rest of the unit's. `span` None: the kernel read it
            without a view (a lazy list's): made now."""
            if span is None:
                span = spans[index]
            trace_id = span.trace_id
            if parent is None and not complete:
                links = span.links
                if wait_key is None and links and links[0][1]:
                    # The root of a trace started from a remote context (a sub-agent that
                    # links to the span that spawned it): treat the link as its parent.
                    wait_key = links[0][0] + links[0][1]
                    parent = cache_get(wait_key)
                if parent is None and wait_key is not None:
                    held = HeldSpan(index, span, resources[span.resource], trace_id, key, wait_key, own, own_key)
                    if add_held(held, now):
                        held_here.append(held)
                        return None
            if "workflow.id" in own:
                to_learn((span, own))
            decision = resolve(span, resources[span.resource], own, key, trace_id, parent, tally, own_key)
            if key not in here:  # a duplicate id: its first span is the ancestor
                here[key] = decision[0]
            if defer and self._last_shared is not None and key not in waiters:
                return self._last_shared
            apply(batch, index, decision)
            if key in waiters:  # most resolved spans have no held descendant: no call
                self._cascade(key, "ancestor", tally)
            return None

        def read_alone(span: SpanView) -> tuple:
            """Own fields of a span carrying some value that is not a string: read alone. Spans
            carrying the same values share one dict (never mutated: Known.fields), made once
            per batch. (own, own_key or None, complete)"""
            values = tuple(map(span.attrs.get, fields_order))
            own_key = (values, tuple(map(type, values)))
            try:
                own = owns[own_key]
            except KeyError:
                own, shareable = own_of(values)
                if shareable:
                    owns[own_key] = own
                else:
                    own_key = None
            except TypeError:  # an array value (unhashable): read alone, decided alone
                own, _ = own_of(values)
                own_key = None
            return own, own_key, own.keys() >= required

        def list_level(start: int, end: int) -> list:
            """One level's entries, in order (the kernel's `list_level` does the same natively):
            every ancestor in the batch of its spans is decided. Spans alike (one ancestor's
            decision, own fields, resource, root or not) form a unit, decided once; spans that
            may wait or carry stamps go alone. Units in the order of their first span."""
            units: dict[tuple, int] = {}  # unit key -> its place in `listed`
            listed: list = []
            for p in order[start:end]:
                index = indices[p]
                span = spans[index]
                group = groups[p]
                if group >= 0:
                    own, own_key, complete = by_group[group]
                else:
                    own, own_key, complete = read_alone(span)
                wait_key = wait_keys[p]
                if wait_key is None:
                    parent = None
                else:
                    # An ancestor decided earlier in this batch (parent first) as it was
                    # decided here, whatever the cache holds under its ids (a resend with
                    # other values disputes the cache's entry; the batch's own span stands).
                    parent = here_get(wait_key) or cache_get(wait_key)
                    if parent is None:
                        parent = registry_known(wait_key)  # registered by a check, or by another sidecar
                attrs = span.attrs
                if (group < 0 or (parent is None and not complete) or not grouped
                        or REPAIRED_KEY in attrs or HOP_DEPTH_KEY in attrs):
                    listed.append((index, span, keys[p], wait_key, own, own_key, complete, parent))
                    continue
                root = parent is None and span.parent_span_id in _ROOT_IDS and not span.links
                unit_key = (parent, group, span.resource, root)
                at = units.get(unit_key)
                if at is None:  # alone so far: listed as a span alone
                    units[unit_key] = len(listed)
                    listed.append((index, span, keys[p], None, own, own_key, True, parent))
                    continue
                unit = listed[at]
                if type(unit) is tuple:  # its second span: a unit (own, own_key, parent, then
                    # index, span, key per span)
                    unit = listed[at] = [own, own_key, parent, unit[0], unit[1], unit[2]]
                unit += (index, span, keys[p])
            return listed

        grouped = self.group_decisions
        kernel = self._kernel if native and self.kernel else None
        if kernel is not None:
            kernel.begin(tally, here, cache.put, cache.put_many, self.trace_values.record, waiters, learning, batch,
                         resources, self.bulk)
        try:
            start = 0
            for end in ends:
                # One level: every ancestor in the batch of its spans is decided. Spans alike
                # (one ancestor's decision, own fields, resource, root or not) form a unit,
                # decided once; spans that may wait or carry stamps go alone. Units in the
                # order of their first span.
                if kernel is not None:
                    listed = kernel.list_level(order, start, end, indices, spans, keys, wait_keys, groups,
                                               by_group, cache_get, registry_known, read_alone, grouped)
                else:
                    listed = list_level(start, end)
                start = end
                at, count = 0, len(listed)
                while at < count:
                    if kernel is not None:
                        # The common spans decided natively up to the first it cannot decide
                        # exactly; that entry (or its second span) goes the Python way below.
                        stopped = kernel.run(listed, at)
                        at = stopped >> 1
                        if at >= count:
                            break
                        if stopped & 1:  # a two-span unit whose first span was decided
                            unit = listed[at]
                            at += 1
                            one(unit[6], unit[7], unit[8], None, unit[0], unit[1], True, unit[2])
                            continue
                    unit = listed[at]
                    at += 1
                    if type(unit) is tuple:
                        one(*unit)
                        continue
                    if kernel is not None:
                        for place in range(4, len(unit), 3):  # the kernel's entries: views made now
                            if unit[place] is None:
                                unit[place] = spans[unit[place - 1]]
                    if len(unit) < 12:  # two spans: decided alone costs less than a group edit
                        own, own_key, parent = unit[0], unit[1], unit[2]
                        one(unit[3], unit[4], unit[5], None, own, own_key, True, parent)
                        one(unit[6], unit[7], unit[8], None, own, own_key, True, parent)
                        continue
                    shared = one(unit[3], unit[4], unit[5], None, unit[0], unit[1], True, unit[2], self.bulk)
                    self._decide_rest(batch, unit, shared, here, one)
        except Exception:
            try:
                if kernel is not None:
                    kernel.end()  # adds its counts into the tally's Counters: may raise too
            finally:
                # The pipeline forwards this batch as it stands: spans held from it are still
                # in it, so they must leave the hold; spans released while it ran follow it.
                for held in held_here:
                    if not held.done:
                        hold.remove(held)
                self._batch = None
                cache.now = None
                self.registry.learn_batch(learning, native)  # the spans decided so far, as learned before
                learning.clear()  # holds the batch's views: not kept past it
                self._release_into(batch)
            raise

        if kernel is not None:
            kernel.end()
        self._batch = None
        cache.now = None
        self.registry.learn_batch(learning, native)
        learning.clear()
        pending = [h for h in held_here if not h.done]
        self.registry.after_batch(h.wait_key for h in pending)
        if pending:
            try:
                self._detach(batch, pending, tally)
            except Exception:
                # Still in the batch the pipeline forwards: out of the hold, as above.
                for held in pending:
                    if held.index is not None:  # not detached
                        hold.remove(held)
                self._release_into(batch)
                raise
        if hold.is_over(self._max_spans, self._max_bytes):
            self._release_oldest(tally)
        self._release_into(batch)
        self._flush(tally)
        return batch

    def _detach(self, batch: ViewBatch, pending: list[HeldSpan], tally: _Tally) -> None:
        """Take still-held spans out of the batch, as one-span requests (bytes)."""
        indices = [h.index for h in pending]
        edits = batch.edits
        if edits.groups:
            # Only the groups the held spans are in: the codec converts every group it is given.
            chosen = set(indices)
            edits = BatchEdits(edits.spans, edits.resources, edits.removed,
                               [g for g in edits.groups if not chosen.isdisjoint(g.spans)])
        raw = batch.codec.extract(batch.view, indices, edits)  # type: ignore[arg-type]
        payloads = dict(one_span_requests(raw))
        found = [payloads[held.key] for held in pending]  # all or none: a failure changes nothing
        self.hold.detach_all(pending, found, batch.notes)
        batch.edits.removed.update(indices)  # type: ignore[arg-type]
        if self.journal is not None:
            self.journal.write(pending)  # durable before the batch is acknowledged
        tally.held += len(pending)

    def _decide_rest(self, batch: ViewBatch, unit: list, shared: tuple | None, here: dict[bytes, Known],
                     one: Callable[..., tuple | None]) -> None:
        """The spans of a unit after its first (`unit`: own, own_key, parent, then index, span,
        key per span). `shared`: the decision the first shares (_Tally.shared's entry), not
        yet written on it (None: written). What `_resolve` does for each on a hit, once for
        all, and one group edit for the unit."""
        own, own_key, parent = unit[0], unit[1], unit[2]
        rest = unit[6:]
        keys = rest[2::3]
        waiters = self.hold.waiters
        if shared is None or not waiters.keys().isdisjoint(keys):
            # Decided span by span: the trace's votes may change between them, or a span of
            # the unit has held descendants to release before the next is decided.
            if shared is not None:
                self._apply(batch, unit[3], shared[1:5])
            for at in range(0, len(rest), 3):
                one(rest[at], rest[at + 1], rest[at + 2], None, own, own_key, True, parent)
            return
        indices = rest[0::3]
        members = rest[1::3]
        _, known, sets, conflicts, repaired, votes, hits, _ = shared
        hits[0] += len(indices)
        if "workflow.id" in own:
            self._learning.append((members, own))  # learned with the batch's others, in order
        if votes:
            carriers: dict[bytes, int] = {}  # trace id -> spans, in order of first
            for span in members:
                trace_id = span.trace_id
                carriers[trace_id] = carriers.get(trace_id, 0) + 1
            record = self.trace_values.record
            for trace_id, count in carriers.items():
                for field, value in votes:
                    record(trace_id, field, value, count)  # every carrier votes
        self.cache.put_many(keys, known)
        for key in keys:
            if key not in here:
                here[key] = known
        indices.insert(0, unit[3])  # the first, decided by `one` and not written
        self._apply_group(batch, indices, (known, sets, conflicts, repaired))

    @classmethod
    def _apply_group(cls, batch: ViewBatch, indices: list[int], decision: tuple) -> None:
        """`_apply` of one decision on many spans: one group edit, per span only the view's
        attrs and notes kept in step."""
        _, sets, conflicts, repaired = decision
        if sets:
            own = batch.edits.spans
            if own:
                # Re-encoded on the slow path: set writes into the replacement, span by span.
                alone = [i for i in indices if (edits := own.get(i)) is not None and edits.replace is not None]
                if alone:
                    for index in alone:
                        cls._apply(batch, index, decision)
                    alone_set = set(alone)
                    indices = [i for i in indices if i not in alone_set]
                    if not indices:
                        return
            batch.edits.add_group(SpanEdits(sets=list(sets)), indices)
            spans = batch.view.spans
            for index in indices:
                spans[index].attrs.update(sets)
        if conflicts or repaired:
            notes = batch.notes
            for index in indices:
                found = notes.get(index)
                if found is None:
                    if not conflicts:
                        notes[index] = {"repaired": set(repaired)}
                    elif repaired:
                        notes[index] = {"conflict": set(conflicts), "repaired": set(repaired)}
                    else:
                        notes[index] = {"conflict": set(conflicts)}
                    continue
                if conflicts:
                    found.setdefault("conflict", set()).update(conflicts)
                if repaired:
                    found.setdefault("repaired", set()).update(repaired)

    # -- releasing -------------------------------------------------------------------------
    def _cascade(self, key: bytes, reason: str, tally: _Tally) -> None:
        """`key` just became known: resolve the spans waiting for it, then theirs."""
        hold = self.hold
        waiters = hold.waiters
        stack = [key]
        while stack:
            known_key = stack.pop()
            if known_key not in waiters:  # a leaf, as most are: no call
                continue
            waiting = hold.take_waiters(known_key)
            if not waiting:
                continue
            parent = self.cache.get(known_key)
            batch = self._batch
            for held in waiting:
                if held.index is not None and batch is not None:
                    # Still in the batch it came in (its ancestor came later in the same
                    # batch): repaired in place, it never waited (_finish, inlined: most
                    # held spans of the mixed workload end here).
                    held.done = True
                    self._apply(batch, held.index, self._resolve(
                        held.view, held.resource, held.own, held.key, held.trace_id, parent, tally, held.own_key))
                else:
                    self._finish(held, parent, reason, tally)
                if held.key in waiters:  # no waiter is added while a cascade runs
                    stack.append(held.key)

    def _finish(self, held: HeldSpan, parent: Known | None, reason: str, tally: _Tally) -> None:
        held.done = True
        decision = self._resolve(held.view, held.resource, held.own, held.key, held.trace_id, parent, tally,
                                 held.own_key)
        if held.index is not None:
            # Still in the batch it came in (its ancestor came later in the same batch):
            # repaired in place, it never waited.
            self._apply(self._batch, held.index, decision)  # type: ignore[arg-type]
            return
        if self.journal is not None:
            self.journal.forget_later(held.key)
        _, sets, conflicts, repaired = decision
        held.sets = list(sets) if sets else None
        if conflicts or repaired:
            notes = held.notes
            if notes is None:  # most: no notes from before the hold
                held.notes = notes = {}
                if conflicts:
                    notes["conflict"] = set(conflicts)
                if repaired:
                    notes["repaired"] = set(repaired)
            else:
                if conflicts:
                    notes.setdefault("conflict", set()).update(conflicts)
                if repaired:
                    notes.setdefault("repaired", set()).update(repaired)
        self._released.append(held)
        tally.released[reason] += 1
        if not decision[0].fields.keys() >= self._required_set:
            tally.missing[reason] += 1

    def _release_trace(self, trace: TraceHold, reason: str, tally: _Tally) -> None:
        """Release a whole trace as it is, top-down so descendants inherit what is known."""
        spans = trace.spans
        pending = list(spans.values())
        roots = [h for h in pending if h.wait_key not in spans]
        hold = self.hold
        for group in (roots, pending):  # the second pass catches parent cycles
            for held in group:
                if spans.get(held.key) is held:
                    hold.remove(held)
                    # The ancestor never came: the workflow's context, if a sidecar registered it.
                    parent = self.cache.get(held.wait_key) or self.registry.trace_known(held.trace_id)
                    self._finish(held, parent, reason, tally)
                    self._cascade(held.key, reason, tally)

    def _release_oldest(self, tally: _Tally) -> None:
        hold = self.hold
        while hold.is_over(self._max_spans, self._max_bytes):
            trace = hold.overflow_victim()  # the oldest of the source holding the most
            if trace is None:
                break
            self._release_trace(trace, "overflow", tally)

    def _take_released(self) -> tuple[bytes, list[HeldSpan]] | None:
        released, self._released = self._released, []
        if not released:
            return None
        return b"".join(h.payload for h in released), released  # type: ignore[misc]

    @staticmethod
    def _apply_released(batch: ViewBatch, start: int, released: list[HeldSpan]) -> None:
        """Write the repair decided for each released span (at `start` on) and its notes. On the
        native lazy list the sets go through `edit_attrs` (applied when a view or a column
        reader needs them), so no view is made per released span; views get `attrs.update`."""
        spans = batch.view.spans
        edits = batch.edits.spans
        notes = batch.notes
        edit = None if type(spans) is list else getattr(spans, "edit_attrs", None)
        for index, held in enumerate(released, start):
            sets = held.sets
            if sets:
                edits[index] = SpanEdits(sets=sets)
                if edit is not None:
                    edit((index,), (), (), sets)
                else:
                    spans[index].attrs.update(sets)
            if held.notes:
                notes[index] = held.notes

    def _release_into(self, batch: ViewBatch) -> None:
        """Spans released while `batch` ran leave with it, appended after its own spans (the
        spans that released them), as before the batch view; a direct `process` call (a
        TraceBatch) appends them itself."""
        taken = self._take_released()
        if taken is None:
            return
        raw, released = taken
        if self._direct:
            follower = ViewBatch(batch.codec, raw, batch.watched, len(released))
            self._apply_released(follower, 0, released)
            self._followers.append(follower)
            return
        self._apply_released(batch, batch.extend(raw, len(released)), released)

    def _released_batch(self) -> ViewBatch | None:
        """The spans released so far (timeout, shutdown, registry) as one batch of their own,
        scanned from their bytes with the repair decided for each applied as edits."""
        taken = self._take_released()
        if taken is None:
            return None
        raw, released = taken
        codec = self._codec
        if codec is None:
            codec = self._codec = select_codec()
        batch = ViewBatch(codec, raw, self._scan_keys or self._watched, len(released))
        self._apply_released(batch, 0, released)
        return batch

    def _emit_released(self) -> None:
        released = self._released_batch()
        if released is not None:
            # Scanned with the pipeline's keys once a batch showed them; else the slow form,
            # which the pipeline scans with its own keys.
            self.emit(released if self._scan_keys is not None else released.trace)

    def process(self, batch: TraceBatch) -> TraceBatch | None:
        """The view path for callers holding a TraceBatch (tests, the journal's restore): the
        spans the batch released are appended to it, under their own resource and scope."""
        self._followers, self._direct = [], True
        try:
            out = super().process(batch)
        except Exception:
            # The caller forwards `batch` as it stands: what it released goes with it.
            _append_released(batch, self._followers)
            raise
        finally:
            self._direct = False
        followers, self._followers = self._followers, []
        if not followers:
            return out
        if out is None:
            out = batch
        _append_released(out, followers)
        return out


    async def start(self) -> None:
        if self.journal is not None:
            self._restored = self.journal.restore()

    def _hold_restored(self) -> None:
        """Hold again what a previous run left in the journal (the first tick: the pipeline runs)."""
        rows, self._restored = self._restored, []
        self.log.warning("holding again %d span(s) left in %s by the previous run", len(rows), self.journal.path)
        self.metrics.restored_spans.inc(len(rows))
        codec = self._codec if self._codec is not None else select_codec()
        keys = self._scan_keys
        batch = ViewBatch(codec, b"".join(payload for _, payload in rows), keys or self._watched, len(rows))
        out = self.process_view(batch)
        if keys is None:
            self._scan_keys = None  # this batch was not the pipeline's: its keys are not known
        for key, _ in rows:
            if not self.hold.is_held(key):
                self.journal.forget_later(key)  # handed on below
        if not out.is_empty():
            self.emit(out if keys is not None else out.trace)

    def tick(self, now: float) -> None:
        if self.journal is not None:
            self.journal.flush()
            if self._restored:
                self._hold_restored()
        # Drop aged entries even when no span arrives to trigger it (cheap: looks at the head).
        self.cache.expire()
        self.trace_values.expire()
        self.registry.tick()
        hold = self.hold
        trace = hold.oldest()
        if trace is None or trace.deadline > now:
            return
        tally = _Tally()
        while trace is not None and trace.deadline <= now:
            self._release_trace(trace, "timeout", tally)
            trace = hold.oldest()
        self._emit_released()
        self._flush(tally)

    def shutdown(self) -> None:
        self.trace_values.new_batch()
        tally = _Tally()
        while (trace := self.hold.oldest()) is not None:
            self._release_trace(trace, "shutdown", tally)
        self._emit_released()
        self._flush(tally)

    def _registry_known(self, keys: list[bytes]) -> None:
        """The registry answered: spans waiting for these (trace id + span id) are released."""
        self.trace_values.new_batch()
        tally = _Tally()
        for key in keys:
            if key in self.hold.waiters:
                if self.cache.get(key) is None:
                    self.cache.put(key, self.registry.known(key))
                self._cascade(key, "registry", tally)
        self._emit_released()
        self._flush(tally)

    async def close(self) -> None:
        await self.registry.close()
        if self.journal is not None:
            self.journal.close()

    # -- repair ----------------------------------------------------------------------------
    @staticmethod
    def _apply(batch: ViewBatch, index: int, decision: tuple) -> None:
        """Write a decision on span `index` of `batch` (ViewBatch.set and .note, inlined)."""
        _, sets, conflicts, repaired = decision
        if sets:
            spans = batch.edits.spans
            edits = spans.get(index)
            if edits is None:
                spans[index] = SpanEdits(sets=list(sets))
                batch.view.spans[index].attrs.update(sets)
            elif edits.replace is not None:
                # Re-encoded on the slow path (normalize, limits): set writes into the replacement.
                for key, value in sets:
                    batch.set(index, key, value)
            else:
                edits.sets.extend(sets)
                batch.view.spans[index].attrs.update(sets)
        if conflicts or repaired:
            notes = batch.notes.get(index)
            if notes is None:
                notes = batch.notes[index] = {}
                if conflicts:
                    notes["conflict"] = set(conflicts)
                if repaired:
                    notes["repaired"] = set(repaired)
                return
            if conflicts:
                found = notes.get("conflict")
                if found is None:
                    notes["conflict"] = set(conflicts)
                else:
                    found.update(conflicts)
            if repaired:
                found = notes.get("repaired")
                if found is None:
                    notes["repaired"] = set(repaired)
                else:
                    found.update(repaired)

    def _resolve(
        self, span: SpanView, resource: ResourceView, own: dict[str, Any], key: bytes, trace_id: bytes,
        parent: Known | None, tally: _Tally, own_key: tuple | None = None,
    ) -> tuple[Known, Any, list[str] | None, list[str]]:
        """Decide how `span` is filled from its parent, the resource and the trace; remember it.

        Returns (what is known of it, the attribute sets to write in order, conflicting fields,
        repaired fields). Writes nothing: the caller applies the sets to the batch it is in.
        `own_key` (the span's field values and their types, None when they cannot be compared
        safely) lets spans that decide alike share one decision."""
        attrs = span.attrs
        self._last_shared = None
        # Spans under one parent (or none, alike as roots or not) and resource carrying the same
        # fields of their own get one decision, shared within the batch when nothing in it
        # depends on the trace's votes. The decision's counts are multiplied at flush.
        shareable = own_key is not None and REPAIRED_KEY not in attrs and HOP_DEPTH_KEY not in attrs
        if shareable:
            root = parent is None and span.parent_span_id in (b"", _INVALID_SPAN_ID) and not span.links
            if parent is not None and own and own.items() <= parent.fields.items() and self._all_str(own_key[1]):
                # Its values are its parent's: siblings carrying the same fields decide alike
                # whatever the values (strings equal to one value are equal).
                shared_key = (parent, id(resource), tuple(own), root)
            else:
                shared_key = (parent, id(resource), own_key, root)
            hit = tally.shared.get(shared_key)
            if hit is not None:
                known, sets, conflicts, repaired, votes, hits = hit[1:7]
                hits[0] += 1
                self._last_shared = hit
                for field, value in votes:
                    self.trace_values.record(trace_id, field, value)  # every carrier votes
                self.cache.put(key, known)
                return known, sets, conflicts, repaired
        decided = self._decide_by_plan(own, parent, tally, trace_id, resource) if shareable else None
        if decided is None:
            decided = self._decide(attrs, resource, own, trace_id, parent, tally, shareable)
        fields, sets, conflicts, repaired, fallback, bumps, shareable = decided
        # Hop depth: service boundaries crossed from the workflow's first span; stamped
        # when known.
        stored = attrs.get(HOP_DEPTH_KEY)
        hop = resource.service
        if type(stored) is int:
            depth: int | None = stored  # set by an upstream sidecar: never overwritten
        else:
            if parent is not None:
                if parent.depth is None:
                    depth = None
                else:
                    workflow = own.get("workflow.id")
                    if workflow is not None and workflow != parent.fields.get("workflow.id"):
                        depth = 0  # a new workflow starts here
                    else:
                        depth = parent.depth + (hop != parent.hop)
            elif span.parent_span_id in (b"", _INVALID_SPAN_ID) and not span.links:
                depth = 0
            else:
                depth = None  # the ancestors are unknown: the depth is too
            if depth is not None:
                sets.append((HOP_DEPTH_KEY, depth))
        counts = tally.repaired
        for bump in bumps:
            counts[bump] += 1
        known = Known(fields, hop, depth, fallback)
        self.cache.put(key, known)
        if shareable:
            # The resource is held so its id stays its own for the batch (the parent is in the key).
            votes = tuple((f, own[f]) for f in self._fallback_fields if own.get(f) is not None)
            self._last_shared = tally.shared[shared_key] = (
                resource, known, sets, conflicts, repaired, votes, [0], bumps)
        return known, sets, conflicts, repaired

    def _decide(
        self, attrs: dict[str, Any], resource: ResourceView, own: dict[str, Any], trace_id: bytes,
        parent: Known | None, tally: _Tally, shareable: bool,
    ) -> tuple:
        """The repair of one span, field by field: (fields it leaves with, sets, conflicts,
        repaired, fields from the trace's fallback, counts to bump, still shareable)."""
        fields = own
        copied = False
        repaired: list[str] = []
        conflicts: list[str] | None = None
        fallback = NO_FIELDS
        sets: list[tuple[str, Any]] = []
        bumps: list[tuple[str, tuple[str, ...]]] = []  # counts of repaired fields, by source
        if parent is not None:
            parent_fields = parent.fields
            if parent_fields:
                if not own:
                    # Nothing of its own: every parent field is written, and the parent's
                    # dict is shared, not copied.
                    fields = parent_fields
                    repaired = list(parent_fields)
                    sets.extend(parent_fields.items())
                else:
                    own_get = own.get
                    for field, value in parent_fields.items():
                        mine = own_get(field)
                        if mine is None:
                            repaired.append(field)
                            sets.append((field, value))
                        elif mine != value:
                            if conflicts is None:
                                conflicts = []
                            conflicts.append(field)
                            tally.conflicts[field] += 1
                    if repaired:
                        fields = dict(own)
                        copied = True
                        for field in repaired:
                            fields[field] = parent_fields[field]
            if repaired:
                from_trace = parent.fallback.intersection(repaired) if parent.fallback else NO_FIELDS
                if from_trace:
                    fallback = frozenset(from_trace)
                    bumps.append(("trace", tuple(from_trace)))
                    bumps.append(("ancestor", tuple(f for f in repaired if f not in from_trace)))
                else:
                    # One count per span, by the tuple of fields; expanded per field at flush.
                    bumps.append(("ancestor", tuple(repaired)))
        if resource is not tally.resource:
            self._use_resource(resource, tally)
        for field, value in tally.resource_values:
            if field not in fields:
                if not copied:
                    fields = dict(fields)
                    copied = True
                fields[field] = value
                sets.append((field, value))
                repaired.append(field)
                bumps.append(("resource", (field,)))
        for field in self._fallback_fields:
            mine = own.get(field)
            if mine is not None:
                self.trace_values.record(trace_id, field, mine)  # every carrier votes
            elif field not in fields:
                shareable = False  # the trace's votes may change within the batch
                value = self.trace_values.lookup(trace_id, field)
                if value is not None:
                    if not copied:
                        fields = dict(fields)
                        copied = True
                    fields[field] = value
                    sets.append((field, value))
                    repaired.append(field)
                    fallback = fallback | {field}
                    bumps.append(("trace", (field,)))
        if repaired:
            stamp = attrs.get(REPAIRED_KEY)
            if stamp is None:
                sets.append((REPAIRED_KEY, self._repaired_list(repaired)))
            else:
                # Stamped by a sidecar upstream: merged (ViewBatch.append_strings' rule).
                is_array = type(stamp) is list
                existing = [v for v in stamp if type(v) is str] if is_array else []
                added = [v for v in repaired if v not in existing]
                if added or not is_array:
                    sets.append((REPAIRED_KEY, existing + added))
        return fields, sets, conflicts, repaired, fallback, bumps, shareable

    def _decide_by_plan(
        self, own: dict[str, Any], parent: Known | None, tally: _Tally, trace_id: bytes, resource: ResourceView,
    ) -> tuple | None:
        """`_decide` for a span carrying no stamps of its own, from a plan made once per shape
        (the names of its fields and its parent's, the resource's): which fields come from
        where, the stamp, the counts. Only values are read per span. None when the trace's
        fallback would be asked (its votes change within a batch: decided field by field)."""
        if resource is not tally.resource:
            self._use_resource(resource, tally)
        supplied = tally.resource_values
        parent_fields = parent.fields if parent is not None else None
        shape = (tuple(parent_fields) if parent_fields else None, tuple(own),
                 parent.fallback if parent is not None else NO_FIELDS, tally.resource_names)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan(shape, supplied)
        from_parent, common, from_resource, needs_trace, repaired, stamp, bumps, fallback = plan
        if needs_trace:
            return None
        conflicts = None
        if common:
            conflicts = [f for f in common if own[f] != parent_fields[f]] or None  # type: ignore[index]
            if conflicts:
                for field in conflicts:
                    tally.conflicts[field] += 1
        if from_parent:
            if not own:
                fields = parent_fields  # nothing of its own: the parent's dict, shared
                sets = list(parent_fields.items())  # type: ignore[union-attr]
            else:
                sets = [(f, parent_fields[f]) for f in from_parent]  # type: ignore[index]
                fields = dict(own)
                fields.update(sets)
        else:
            fields = own
            sets = []
        if from_resource:
            if fields is own or fields is parent_fields:
                fields = dict(fields)  # type: ignore[arg-type]
            for i in from_resource:
                field, value = supplied[i]
                fields[field] = value
                sets.append((field, value))
        if stamp is not None:
            sets.append((REPAIRED_KEY, stamp))
        record = self.trace_values.record
        for field in self._fallback_fields:
            mine = own.get(field)
            if mine is not None:
                record(trace_id, field, mine)  # every carrier votes
        return fields, sets, conflicts, repaired, fallback, bumps, True  # the plan's tuple: only read

    def _plan(self, shape: tuple, supplied: tuple) -> tuple:
        """What `_decide` does for spans of this shape, by field names (see _decide_by_plan)."""
        parent_names, own_names, parent_fallback, _ = shape
        own_set = set(own_names)
        from_parent = tuple(f for f in parent_names or () if f not in own_set)
        common = tuple(f for f in parent_names or () if f in own_set)
        have = own_set | set(from_parent)
        from_resource = tuple(i for i, (f, _) in enumerate(supplied) if f not in have)
        have |= {supplied[i][0] for i in from_resource}
        needs_trace = any(f not in have for f in self._fallback_fields)
        repaired = list(from_parent) + [supplied[i][0] for i in from_resource]
        bumps: list[tuple[str, tuple[str, ...]]] = []
        fallback = NO_FIELDS
        if from_parent:
            from_trace = parent_fallback.intersection(from_parent) if parent_fallback else NO_FIELDS
            if from_trace:
                fallback = frozenset(from_trace)
                bumps.append(("trace", tuple(from_trace)))
                bumps.append(("ancestor", tuple(f for f in from_parent if f not in from_trace)))
            else:
                bumps.append(("ancestor", from_parent))
        bumps += [("resource", (supplied[i][0],)) for i in from_resource]
        stamp = self._repaired_list(repaired) if repaired else None
        if len(self._plans) >= 4096:
            self._plans.clear()
        plan = self._plans[shape] = (from_parent, common, from_resource, needs_trace, repaired, stamp,
                                     tuple(bumps), fallback)
        return plan

    def _use_resource(self, resource: ResourceView, tally: _Tally) -> None:
        tally.resource = resource
        tally.resource_values = values = self._resource_values(resource)
        tally.resource_names = tuple(field for field, _ in values)

    def _all_str(self, types: tuple) -> bool:
        """Whether a span's field values are strings or absent, by their types (memoised)."""
        found = self._str_types.get(types)
        if found is None:
            if len(self._str_types) >= 1024:
                self._str_types.clear()
            found = self._str_types[types] = all(t is str or t is _NONE_TYPE for t in types)
        return found

    def _resource_values(self, resource: ResourceView) -> tuple[tuple[str, str], ...]:
        """The (field, value) pairs a resource supplies (`owner.version` <- `service.version`),
        read once per resource per batch rather than once per span."""
        found = []
        for field, resource_key in self._resource_fallback.items():
            value = resource.attrs.get(resource_key)
            if type(value) is str and value:
                found.append((field, value))
        return tuple(found)

    def _flush(self, tally: _Tally) -> None:
        """The batch's counts into Prometheus: the repaired fields' as plain ints (RepairedCounts,
        expanded per field at scrape), the others one `inc` per series counted, its child cached."""
        m = self.metrics
        repaired, conflicts, shared = tally.repaired, tally.conflicts, tally.shared
        if shared:
            # Shared decisions count once per span that took them: only entries taken (a
            # comprehension skips the rest), their counts added by plain dict reads.
            get = repaired.get
            for entry in [entry for entry in shared.values() if entry[6][0]]:
                hits = entry[6][0]
                for bump in entry[7]:
                    repaired[bump] = get(bump, 0) + hits
                if entry[3]:
                    for field in entry[3]:
                        conflicts[field] += hits
            shared.clear()
        if repaired:
            # Plain ints per (source, fields): expanded per field when the metric is collected.
            m.repaired_fields.add(repaired)
        children = self._children
        for family, counts in ((m.conflicts, conflicts), (m.released_spans, tally.released),
                               (m.missing_spans, tally.missing)):
            for label, count in counts.items():
                child = children.get((family, label))  # labels() looked up once, not per batch
                if child is None:
                    child = children[(family, label)] = family.labels(label)
                child.inc(count)
        if tally.held:
            m.held_spans.inc(tally.held)
        m.count_evictions(self.hold.evicted, self.cache)


_PLAIN = (str, int, float, bool, bytes)
_NONE_TYPE = type(None)


def _own_fields(fields: tuple[str, ...], values: tuple) -> tuple[dict[str, Any], bool]:
    """A span's own context fields from the values of `fields` on it (None: absent), and
    whether equal values mean equal fields (not so for arrays and kvlists, whose elements may
    be equal across types, 1 == True): only then may spans share the dict and decisions."""
    own: dict[str, Any] = {}
    plain = True
    for field, value in zip(fields, values, strict=True):
        if value is None:
            continue
        if type(value) is str:
            if value:  # an empty string is no value
                own[field] = value
        elif value is not EMPTY:
            if type(value) not in _PLAIN:
                plain = False
            own[field] = _python(value)
    return own, plain


def _python(value: Any) -> Any:
    """A non-string context value as the slow path read it (pdata any_value_to_python):
    kvlists as dicts (later keys win), arrays as lists, an element with no value as None."""
    if isinstance(value, KvList):
        return {k: _python(v) for k, v in value}
    if type(value) is list:
        return [_python(v) for v in value]
    if value is EMPTY:
        return None
    return value


def _append_released(out: TraceBatch, followers: list[ViewBatch]) -> None:
    """Append released batches' spans to a TraceBatch, each group under its resource and scope."""
    records = list(out.records)
    for follower in followers:
        trace = follower.trace
        notes = [rec.notes for rec in trace.records]
        start = len(out.request.resource_spans)
        out.request.resource_spans.extend(trace.request.resource_spans)
        position = 0
        for resource_spans in out.request.resource_spans[start:]:
            resource = RecordResource(resource_spans)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    rec = SpanRecord(span, resource, scope_spans)
                    rec.notes = notes[position]
                    position += 1
                    records.append(rec)
    out.set_records(records)
