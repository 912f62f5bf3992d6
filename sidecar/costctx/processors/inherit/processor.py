"""The `inherit` processor: fill missing context fields from the nearest ancestor span.

Sub-agents, async tool calls and retries lose the context, and their spend lands in an
"unknown" bucket. The sidecar repairs them from the spans it has seen, whatever order they
arrive in: the SDK exports a span when it ends, so children usually come before the root
that carries `workflow.id`, often in an earlier batch.

Per span (one pass over the batch's shared index):
- it reads the span's own context fields and looks its parent up in the ancestor cache;
- parent known, or no parent: fill what is missing from the parent's fields (which are the
  parent's own plus what it inherited, i.e. the nearest ancestor's), then from the resource
  (`owner.version` <- `service.version`), then from another span of the trace (fallback);
  stamp `costctx.repaired` and `workflow.hop_depth`; remember the result in the cache;
- parent unknown and a required field missing: hold the span (per trace, `wait_duration`)
  until the ancestor arrives; it is released, repaired, together with its held descendants;
- a span that needs no repair is never held: it leaves in the batch it came in.
A value a span carries itself is never overwritten; a different ancestor value is a conflict.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import HOP_DEPTH_KEY, REPAIRED_KEY
from costctx.pdata import TraceBatch
from costctx.pdata.attributes import any_value_to_python, set_any_value
from costctx.pdata.batch import ResourceView, SpanRecord
from costctx.processors.inherit.config import InheritConfig
from costctx.processors.inherit.context_cache import NO_FIELDS, ContextCache, Known, TraceValues
from costctx.processors.inherit.encode import AttributeBytes, attribute_bytes
from costctx.processors.inherit.hold import HeldSpan, Hold, Origin, TraceHold
from costctx.processors.inherit.hold_journal import HoldJournal
from costctx.processors.inherit.metrics import InheritMetrics
from costctx.processors.inherit.registry_link import RegistryLink
from costctx.processors.inherit.regroup import Regrouper

MiB = 1024 * 1024
_INVALID_SPAN_ID = bytes(8)


class _Tally:
    """Per-batch counts, added to Prometheus once per batch rather than once per span."""

    __slots__ = ("repaired", "conflicts", "released", "missing", "held", "resource", "resource_values", "encoded")

    def __init__(self) -> None:
        # (source, fields) -> spans: one update per span, expanded per field at flush.
        self.repaired: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.conflicts: Counter[str] = Counter()
        self.released: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self.held = 0
        # The last resource seen and what it supplies to spans (spans come grouped by
        # resource): per batch, so no protobuf outlives the batch it belongs to.
        self.resource: ResourceView | None = None
        self.resource_values: tuple[tuple[str, str], ...] = ()
        # (id(parent's fields dict), fields written) -> (that dict, those fields as encoded
        # attributes); the dict is held so the id stays its own for the batch.
        self.encoded: dict[tuple[int, tuple[str, ...]], tuple[dict[str, Any], bytes]] = {}


class InheritProcessor(Processor):
    type_name = "inherit"
    config_model = InheritConfig
    config: InheritConfig

    def __init__(self, name: str, config: InheritConfig, host: Host) -> None:
        super().__init__(name, config, host)
        envelope = host.envelope
        self._fields: tuple[str, ...] = envelope.inheritable
        # Only inheritable fields are worth waiting for (retry.attempt never is).
        self._required = tuple(k for k in config.required_fields if k in self._fields)
        self._required_set = frozenset(self._required)
        # Encoded attributes that repair appends over and over (sidecar/inherit/encode.py).
        self._attribute_bytes = AttributeBytes()
        self._repaired_bytes: dict[tuple[str, ...], bytes] = {}
        self._depth_bytes: dict[int, bytes] = {}
        self._resource_fallback = {
            f.key: f.resource_fallback for f in envelope.context_fields if f.resource_fallback and f.inherit
        }
        self._fallback_fields = tuple(config.trace_fallback_fields) if config.trace_fallback else ()
        self.hold = Hold(config.wait_duration)
        self.registry = RegistryLink(host, config.registry, self._registry_known)
        self.use_clock(time.monotonic)
        self._max_spans = config.hold.max_spans
        self._max_bytes = config.hold.max_bytes
        self.metrics = InheritMetrics(self.component_metrics())
        # With a persistent sending queue, held (acknowledged) spans are kept on disk too.
        storage = host.hold_storage
        self.journal = HoldJournal(storage[0], name, storage[1]) if storage else None
        self._restored: list[tuple[bytes, bytes]] = []
        m = self.metrics
        m.hold_spans.set_function(lambda: self.hold.span_count)
        m.hold_bytes.set_function(lambda: self.hold.nbytes)
        m.hold_traces.set_function(lambda: len(self.hold.traces))
        m.cache_entries.set_function(lambda: len(self.cache))
        m.trace_entries.set_function(lambda: len(self.trace_values))

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Set the clock for hold deadlines and cache ages (tests step one by hand).

        Empties the caches: their entries' ages were measured on the previous clock."""
        self.clock = clock
        cache = self.config.cache
        self.cache = ContextCache(cache.max_entries, cache.ttl, clock)
        self.trace_values = TraceValues(cache.max_traces, cache.ttl, clock)

    # -- the batch path --------------------------------------------------------------------
    def process(self, batch: TraceBatch) -> TraceBatch:
        if self.journal is not None:
            self.journal.flush()  # spans released before this batch have been queued by now
        records = batch.records
        if not records:
            return batch
        now = self.clock()
        cache_get = self.cache.get
        hold = self.hold
        tally = _Tally()
        held_here: list[HeldSpan] = []
        out: Regrouper | None = None

        # Hoisted: this loop runs once per span.
        fields_order = self._fields
        required = self._required_set
        resolve = self._resolve
        add_held = hold.add
        registry_known = self.registry.known
        learn = self.registry.learn
        try:
            for rec in records:
                span = rec.span
                trace_id = span.trace_id
                key = trace_id + span.span_id
                # The span's own context fields, in envelope order (inlined: per span).
                attrs = rec.attrs
                own: dict[str, Any] = {}
                for field in fields_order:
                    kv = attrs.get(field)
                    if kv is None:
                        continue
                    value = kv.value
                    text = value.string_value  # "" unless a non-empty string: one access, the common case
                    if text:
                        own[field] = text
                    elif value.WhichOneof("value") not in (None, "string_value"):
                        own[field] = any_value_to_python(value)
                parent_id = span.parent_span_id
                # An all-zero id is invalid (W3C): no parent, rather than one that never comes.
                wait_key = trace_id + parent_id if parent_id and parent_id != _INVALID_SPAN_ID else None
                parent = cache_get(wait_key) if wait_key is not None else None
                if parent is None and wait_key is not None:
                    parent = registry_known(wait_key)  # registered by a check, or by another sidecar
                if parent is None and not own.keys() >= required:
                    if wait_key is None and len(span.links) and span.links[0].span_id:
                        # The root of a trace started from a remote context (a sub-agent that
                        # links to the span that spawned it): treat the link as its parent.
                        link = span.links[0]
                        wait_key = link.trace_id + link.span_id
                        parent = cache_get(wait_key)
                    if parent is None and wait_key is not None:
                        held = HeldSpan(rec, trace_id, key, wait_key, own)
                        if add_held(held, now):
                            held_here.append(held)
                            continue
                if "workflow.id" in own:
                    learn(span, trace_id, own)
                resolve(rec, own, key, trace_id, parent, tally)
                if hold.waiters:
                    if out is None:
                        out = Regrouper(batch.request)
                    self._cascade(key, "ancestor", out, tally)
        except Exception:
            # The pipeline forwards this batch as it stands: spans held from it are still in
            # it, so they must leave the hold; spans released into it go with it.
            for held in held_here:
                if not held.done:
                    hold.remove(held)
            if out is not None and out.records:
                batch.set_records(records + out.records)
            raise

        pending = [h for h in held_here if not h.done]
        self.registry.after_batch(h.wait_key for h in pending)
        kept = self._detach(batch, records, pending, tally) if pending else records
        if hold.is_over(self._max_spans, self._max_bytes):
            if out is None:
                out = Regrouper(batch.request)
            self._release_oldest(out, tally)
        if pending or (out is not None and out.records):
            # Released spans join the batch whose spans released them: they leave together.
            batch.set_records(kept + out.records if out is not None else kept)
        self._flush(tally)
        return batch

    def _detach(self, batch: TraceBatch, records: list[SpanRecord], pending: list[HeldSpan], tally) -> list:
        """Take still-held spans out of the batch; return the records that stay in it."""
        held_ids = set()
        origins: dict[tuple[int, int], Origin] = {}
        by_scope: dict[int, tuple[Any, set[int]]] = {}
        for held in pending:
            rec = held.rec
            assert rec is not None
            held_ids.add(id(rec))
            origin_key = (id(rec.resource), id(rec.scope_spans))
            origin = origins.get(origin_key)
            if origin is None:
                origin = origins[origin_key] = Origin(
                    resource=_copy(rec.resource.resource),
                    resource_schema_url=rec.resource.schema_url,
                    scope=_copy(rec.scope_spans.scope),
                    scope_schema_url=rec.scope_spans.schema_url,
                )
            scope_entry = by_scope.get(id(rec.scope_spans))
            if scope_entry is None:
                scope_entry = by_scope[id(rec.scope_spans)] = (rec.scope_spans, set())
            scope_entry[1].add(id(rec.span))
            held.detach(origin)
            self.hold.account(held)
        if self.journal is not None:
            self.journal.write(pending)  # durable before the batch is acknowledged
        tally.held += len(pending)
        for scope_spans, held_spans in by_scope.values():
            # The held spans themselves, by identity (the records keep their wrappers alive):
            # another span with the same ids (a client bug) may have passed, before or after.
            spans = scope_spans.spans
            found = [i for i, span in enumerate(spans) if id(span) in held_spans]
            for i in reversed(found):
                del spans[i]
        _prune_empty(batch.request)
        return [r for r in records if id(r) not in held_ids]

    # -- releasing -------------------------------------------------------------------------
    def _cascade(self, key: bytes, reason: str, out: Regrouper, tally: _Tally) -> None:
        """`key` just became known: resolve the spans waiting for it, then theirs."""
        hold = self.hold
        stack = [key]
        while stack:
            known_key = stack.pop()
            waiting = hold.take_waiters(known_key)
            if not waiting:
                continue
            parent = self.cache.get(known_key)
            for held in waiting:
                self._finish(held, parent, reason, out, tally)
                stack.append(held.key)

    def _finish(self, held: HeldSpan, parent: Known | None, reason: str, out: Regrouper, tally: _Tally) -> None:
        held.done = True
        if held.rec is not None:
            # Still in the batch it came in (its ancestor came later in the same batch):
            # repaired in place, it never waited.
            self._resolve(held.rec, held.own, held.key, held.trace_id, parent, tally)
            return
        if self.journal is not None:
            self.journal.forget_later(held.key)
        rec = out.add(held)
        known = self._resolve(rec, held.own, held.key, held.trace_id, parent, tally)
        tally.released[reason] += 1
        if not known.fields.keys() >= self._required_set:
            tally.missing[reason] += 1

    def _release_trace(self, trace: TraceHold, reason: str, out: Regrouper, tally: _Tally) -> None:
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
                    self._finish(held, parent, reason, out, tally)
                    self._cascade(held.key, reason, out, tally)

    def _release_oldest(self, out: Regrouper, tally: _Tally) -> None:
        hold = self.hold
        while hold.is_over(self._max_spans, self._max_bytes):
            trace = hold.overflow_victim()  # the oldest of the source holding the most
            if trace is None:
                break
            self._release_trace(trace, "overflow", out, tally)

    async def start(self) -> None:
        if self.journal is not None:
            self._restored = self.journal.restore()

    def _hold_restored(self) -> None:
        """Hold again what a previous run left in the journal (the first tick: the pipeline runs)."""
        rows, self._restored = self._restored, []
        request = ExportTraceServiceRequest()
        for _, payload in rows:
            request.MergeFromString(payload)
        self.log.warning("holding again %d span(s) left in %s by the previous run", len(rows), self.journal.path)
        self.metrics.restored_spans.inc(len(rows))
        out = self.process(TraceBatch(request))
        for key, _ in rows:
            if not self.hold.is_held(key):
                self.journal.forget_later(key)  # handed on below
        if out is not None and not out.is_empty():
            self.emit(out)

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
        out = Regrouper(ExportTraceServiceRequest())
        while trace is not None and trace.deadline <= now:
            self._release_trace(trace, "timeout", out, tally)
            trace = hold.oldest()
        self._emit_released(out)
        self._flush(tally)

    def shutdown(self) -> None:
        tally = _Tally()
        out = Regrouper(ExportTraceServiceRequest())
        while (trace := self.hold.oldest()) is not None:
            self._release_trace(trace, "shutdown", out, tally)
        self._emit_released(out)
        self._flush(tally)

    def _registry_known(self, keys: list[bytes]) -> None:
        """The registry answered: spans waiting for these (trace id + span id) are released."""
        tally = _Tally()
        out = Regrouper(ExportTraceServiceRequest())
        for key in keys:
            if key in self.hold.waiters:
                if self.cache.get(key) is None:
                    self.cache.put(key, self.registry.known(key))
                self._cascade(key, "registry", out, tally)
        self._emit_released(out)
        self._flush(tally)

    async def close(self) -> None:
        await self.registry.close()
        if self.journal is not None:
            self.journal.close()

    def _emit_released(self, out: Regrouper) -> None:
        if not out.records:
            return
        batch = TraceBatch(out.request)
        batch.set_records(out.records)
        self.emit(batch)

    # -- repair ----------------------------------------------------------------------------
    def _resolve(
        self, rec: SpanRecord, own: dict[str, Any], key: bytes, trace_id: bytes, parent: Known | None, tally: _Tally
    ) -> Known:
        """Fill `rec` from its parent, the resource and the trace; remember it; return it."""
        fields = own
        copied = False
        repaired: list[str] = []
        fallback = NO_FIELDS
        attrs = rec.attrs
        if parent is not None:
            parent_fields = parent.fields
            if parent_fields:
                if not own:
                    # Nothing of its own: every parent field is written, and the parent's
                    # dict is shared, not copied.
                    fields = parent_fields
                    repaired = list(parent_fields)
                else:
                    own_get = own.get
                    for field, value in parent_fields.items():
                        mine = own_get(field)
                        if mine is None:
                            repaired.append(field)
                        elif mine != value:
                            rec.note("conflict").add(field)
                            tally.conflicts[field] += 1
                    if repaired:
                        fields = dict(own)
                        copied = True
                        for field in repaired:
                            fields[field] = parent_fields[field]
                if repaired:
                    # Siblings repair the same fields from the same parent dict: its encoding
                    # is reused within the batch.
                    signature = tuple(repaired)
                    memo_key = (id(parent_fields), signature)
                    memo = tally.encoded.get(memo_key)
                    encoded = self._write(rec, repaired, parent_fields, memo[1] if memo is not None else None)
                    if memo is None and encoded is not None:
                        tally.encoded[memo_key] = (parent_fields, encoded)
            if repaired:
                from_trace = parent.fallback.intersection(repaired) if parent.fallback else NO_FIELDS
                if from_trace:
                    fallback = frozenset(from_trace)
                    tally.repaired[("trace", tuple(from_trace))] += 1
                    tally.repaired[("ancestor", tuple(f for f in repaired if f not in from_trace))] += 1
                else:
                    # One count per span, by the tuple of fields; expanded per field at flush.
                    tally.repaired[("ancestor", signature)] += 1
        # New attributes below (fallback fields, the repaired stamp, the depth) are collected
        # as encoded bytes and appended in one call at the end, in the order they were
        # decided; anything written another way flushes what is collected first.
        pieces: list[bytes] = []
        names: list[str] = []
        piece = self._attribute_bytes.get
        resource = rec.resource
        if resource is not tally.resource:
            tally.resource = resource
            tally.resource_values = self._resource_values(resource)
        for field, value in tally.resource_values:
            if field not in fields:
                if not copied:
                    fields = dict(fields)
                    copied = True
                fields[field] = value
                if field in attrs:
                    _set(rec, field, value)  # an empty or non-string value: overwritten in place
                else:
                    pieces.append(piece(field, value))
                    names.append(field)
                repaired.append(field)
                tally.repaired[("resource", (field,))] += 1
        for field in self._fallback_fields:
            mine = own.get(field)
            if mine is not None:
                self.trace_values.record(trace_id, field, mine)  # every carrier votes
            elif field not in fields:
                value = self.trace_values.lookup(trace_id, field)
                if value is not None:
                    if not copied:
                        fields = dict(fields)
                        copied = True
                    fields[field] = value
                    if type(value) is str and field not in attrs:
                        pieces.append(piece(field, value))
                        names.append(field)
                    else:
                        if pieces:
                            _append(rec, pieces, names)
                            pieces, names = [], []
                        _set(rec, field, value)
                    repaired.append(field)
                    fallback = fallback | {field}
                    tally.repaired[("trace", (field,))] += 1
        if repaired:
            notes = rec.notes  # rec.note("repaired").update(repaired), inlined: once per span
            if notes is None:
                rec.notes = {"repaired": set(repaired)}
            elif (noted := notes.get("repaired")) is None:
                notes["repaired"] = set(repaired)
            else:
                noted.update(repaired)
            if REPAIRED_KEY in attrs:  # stamped by a sidecar upstream: merge
                if pieces:
                    _append(rec, pieces, names)
                    pieces, names = [], []
                rec.append_strings(REPAIRED_KEY, repaired)
            else:
                # The same list on most repaired spans: encoded once per list.
                signature = tuple(repaired)
                encoded = self._repaired_bytes.get(signature)
                if encoded is None:
                    if len(self._repaired_bytes) >= 1024:
                        self._repaired_bytes.clear()
                    encoded = self._repaired_bytes[signature] = attribute_bytes(REPAIRED_KEY, repaired)
                pieces.append(encoded)
                names.append(REPAIRED_KEY)
        # Hop depth: service boundaries crossed from the workflow's first span; stamped
        # when known (inlined: once per span).
        kv = attrs.get(HOP_DEPTH_KEY)
        if kv is not None and kv.value.WhichOneof("value") == "int_value":
            depth: int | None = kv.value.int_value  # set by an upstream sidecar: never overwritten
        else:
            if parent is not None:
                if parent.depth is None:
                    depth = None
                else:
                    workflow = own.get("workflow.id")
                    if workflow is not None and workflow != parent.fields.get("workflow.id"):
                        depth = 0  # a new workflow starts here
                    else:
                        depth = parent.depth + (resource.hop != parent.hop)
            elif rec.span.parent_span_id in (b"", _INVALID_SPAN_ID) and not len(rec.span.links):
                depth = 0
            else:
                depth = None  # the ancestors are unknown: the depth is too
            if depth is not None:
                if kv is None:
                    encoded = self._depth_bytes.get(depth)
                    if encoded is None:
                        if len(self._depth_bytes) >= 1024:
                            self._depth_bytes.clear()
                        encoded = self._depth_bytes[depth] = attribute_bytes(HOP_DEPTH_KEY, depth)
                    pieces.append(encoded)
                    names.append(HOP_DEPTH_KEY)
                else:
                    _set(rec, HOP_DEPTH_KEY, depth)  # present without an int: overwritten in place
        if pieces:
            _append(rec, pieces, names)
        known = Known(fields, resource.hop, depth, fallback)
        self.cache.put(key, known)
        return known

    def _write(
        self, rec: SpanRecord, names: Iterable[str], values: dict[str, Any], encoded: bytes | None = None
    ) -> bytes | None:
        """Write `values[name]` for each name on the span (names in order; the index follows).

        Returns the encoded attributes when it appended them that way (`encoded`, if given, is
        that encoding from an earlier span with the same names and values)."""
        attrs = rec.attrs
        if attrs.keys().isdisjoint(names):
            # The common case: all new keys, string values: appended as encoded bytes.
            if encoded is None:
                piece = self._attribute_bytes.get
                parts = []
                for field in names:
                    value = values[field]
                    if type(value) is not str:
                        break
                    parts.append(piece(field, value))
                else:
                    encoded = b"".join(parts)
            if encoded is not None:
                span = rec.span
                attributes = span.attributes
                start = len(attributes)
                span.MergeFromString(encoded)
                attrs.update(zip(names, attributes[start:], strict=True))
                return encoded
        add = rec.span.attributes.add
        for field in names:
            value = values[field]
            kv = attrs.get(field)
            if kv is None:
                kv = add()
                kv.key = field
                attrs[field] = kv
            if type(value) is str:
                kv.value.string_value = value
            else:
                set_any_value(kv.value, value)
        return None

    def _resource_values(self, resource: ResourceView) -> tuple[tuple[str, str], ...]:
        """The (field, value) pairs a resource supplies (`owner.version` <- `service.version`),
        read once per resource per batch rather than once per span."""
        found = []
        for field, resource_key in self._resource_fallback.items():
            kv = resource.attrs.get(resource_key)
            if kv is not None and kv.value.WhichOneof("value") == "string_value" and kv.value.string_value:
                found.append((field, kv.value.string_value))
        return tuple(found)

    def _flush(self, tally: _Tally) -> None:
        m = self.metrics
        per_field: Counter[tuple[str, str]] = Counter()
        for (source, fields), count in tally.repaired.items():
            for field in fields:
                per_field[(field, source)] += count
        for (field, source), count in per_field.items():
            m.repaired_fields.labels(field, source).inc(count)
        for field, count in tally.conflicts.items():
            m.conflicts.labels(field).inc(count)
        for reason, count in tally.released.items():
            m.released_spans.labels(reason).inc(count)
        for reason, count in tally.missing.items():
            m.missing_spans.labels(reason).inc(count)
        if tally.held:
            m.held_spans.inc(tally.held)
        m.count_evictions(self.hold.evicted, self.cache)


def _append(rec: SpanRecord, pieces: list[bytes], names: list[str]) -> None:
    """Append encoded new attributes (sidecar/inherit/encode.py) and index them."""
    span = rec.span
    attributes = span.attributes
    start = len(attributes)
    span.MergeFromString(b"".join(pieces))
    rec.attrs.update(zip(names, attributes[start:], strict=True))


def _set(rec: SpanRecord, key: str, value: Any) -> None:
    """rec.set without the type dispatch for the common cases (strings, the depth)."""
    kv = rec.attrs.get(key)
    if kv is None:
        kv = rec.span.attributes.add()
        kv.key = key
        rec.attrs[key] = kv
    if type(value) is str:
        kv.value.string_value = value
    elif type(value) is int:
        kv.value.int_value = value
    else:
        set_any_value(kv.value, value)


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _prune_empty(request: ExportTraceServiceRequest) -> None:
    """Drop scope and resource groups whose spans were all held."""
    resource_spans = request.resource_spans
    for r in range(len(resource_spans) - 1, -1, -1):
        scopes = resource_spans[r].scope_spans
        for s in range(len(scopes) - 1, -1, -1):
            if not len(scopes[s].spans):
                del scopes[s]
        if not len(scopes):
            del resource_spans[r]
