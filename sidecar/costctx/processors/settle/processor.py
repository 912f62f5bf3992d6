"""The `settle` processor: spend whose context arrives after its span has left.

Runs last (after `envelope`, which recorded the span's spend under `unknown`); it never
changes a span. A priced span leaving without `workflow.id` or `owner.tenant` is
remembered compactly (attribution/pending.py). When its trace's context becomes known -
a span of the trace arrives carrying it (`ancestor`: the root that ends last), a budget
check registered it here (`check`), or another sidecar registered it in the shared
registry (`registry`, asked once per poll for every pending trace) - the span is settled:
- its spend moves from the row it was recorded under to its workflow, tenant and feature
  in the spend view, and its missing fields' outcome becomes `settled`;
- its cost is committed to the budget counters under the settled context;
- one OTLP log record (the attribution record) goes out through the logs pipeline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import NamedTuple

from costctx.attribution.pending import PendingLedger, PendingSpan
from costctx.attribution.record import attribution_request
from costctx.budget.counters import MICRO
from costctx.budget.policy import Context, SpanSpend
from costctx.budget.store import StoreUnavailable
from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import COST_SOURCE, COST_USD
from costctx.pdata.codec.api import SpanView, attr_values_at, bytes_column, span_column, spans_having
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.envelope.processor import _cost_pico_value
from costctx.processors.settle.config import SettleConfig
from costctx.processors.settle.reading import native_read_settle, read_settle
from costctx.telemetry.metrics import ComponentMetrics

WORKFLOW, TENANT, FEATURE, NAME = "workflow.id", "owner.tenant", "owner.feature", "workflow.name"
# A span is settled when it lacked one of these; a span of the trace carrying both settles it.
SETTLE_FIELDS = (WORKFLOW, TENANT)
INPUT_TOKENS, OUTPUT_TOKENS = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
# What read_settle reads from a row (the lazy list's columns), in its order.
_ROW = (WORKFLOW, TENANT, COST_USD)


class _PendingRecord(NamedTuple):
    """What `_remember` reads of a span, from the lazy list's columns (a SpanView's fields)."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    resource: int
    start: int
    end: int
    attrs: dict


def _pending_records(spans, indices: list[int], keys: tuple[str, ...]) -> list[_PendingRecord]:
    """The spans at `indices` as `_remember` reads them, no view made: their attrs of `keys`
    (as the views have them now: attr_values_at) and their ids, resource and times (columns)."""
    rows = attr_values_at(spans, indices, keys)
    trace, span_id, parent = (bytes_column(spans, name) for name in ("trace_id", "span_id", "parent_span_id"))
    resource, start, end = (span_column(spans, name) for name in ("resource", "start", "end"))
    return [_PendingRecord(trace[i], span_id[i], parent[i], resource[i], start[i], end[i],
                           {key: value for key, value in zip(keys, row, strict=True) if value is not None})
            for i, row in zip(indices, rows, strict=True)]


class SettleMetrics:
    """Labelled `processor=<id>` (families shared by every instance)."""

    def __init__(self, m: ComponentMetrics, ledger: PendingLedger) -> None:
        self.settled = m.counter("costctx_settled_spans", "Spans settled after they left, by what settled them "
                                 "(ancestor, check, registry).", ["by"])
        self.expired = m.counter("costctx_settle_expired_spans", "Pending spans dropped unsettled, by reason "
                                 "(window, bound).", ["reason"])
        self.errors = m.counter("costctx_settle_errors", "Settlement steps that failed, by step "
                                "(lookup, commit, record).", ["step"])
        m.gauge("costctx_settle_pending_spans", "Spans waiting for their context.").set_function(
            lambda: len(ledger))
        m.gauge("costctx_settle_pending_bytes", "Bytes the pending spans take (estimated).").set_function(
            lambda: ledger.nbytes)


def _str(value) -> str:
    """A string attribute's value as protobuf's `string_value` reads it: "" when absent or of another type."""
    return value if type(value) is str else ""


def _int(value) -> int:
    """An int attribute's value as protobuf's `int_value` reads it: 0 when absent or of another type."""
    return value if type(value) is int else 0


class SettleProcessor(Processor):
    type_name = "settle"
    config_model = SettleConfig
    config: SettleConfig
    on_view = True
    # On the lazy list: the spans with a cost found by spans_having, the traces pending by the
    # trace id column, and only those spans' values read (attr_values_at): no view made.
    columnar = True

    def __init__(self, name: str, config: SettleConfig, host: Host) -> None:
        super().__init__(name, config, host)
        self.ledger = PendingLedger(config.max_entries, config.max_bytes, config.attribution_window)
        self.metrics = SettleMetrics(self.component_metrics(), self.ledger)
        self._fields = tuple(k for k in host.envelope.context_keys if k != "retry.attempt")
        self._keys_read: tuple[str, ...] | None = None  # see _pending_keys
        host.survival.pending_spend = lambda: self.ledger.pending_pico
        self._next_poll = 0.0
        self._polling = False
        self._tasks: set[asyncio.Task] = set()
        self._dropped_seen = 0

    # -- spans ---------------------------------------------------------------------------
    def watched_keys(self) -> frozenset[str]:
        # Read at pipeline build, after `envelope` configured the spend dimensions.
        return frozenset((*self._fields, *self.host.survival.spend_dimensions, WORKFLOW, TENANT, NAME, COST_USD,
                          COST_SOURCE, INPUT_TOKENS, OUTPUT_TOKENS))

    def process_view(self, batch: ViewBatch) -> ViewBatch:
        ledger = self.ledger
        spans = batch.spans_as_read()
        # The per-span reading in one call (reading.py; in Rust with the native codec): each
        # trace's first span carrying its context, and the spans without it that carry a cost.
        read = native_read_settle if native_read_settle is not None and batch.codec.name == "native" else read_settle
        indices = batch.indices()
        # Traces carrying context matter only when something is pending (rare): read again if
        # this batch's own spans made something pending.
        want_context = bool(len(ledger))
        # The lazy list: the native reading reads its records (no view made); the Python one
        # reads the spans with a cost alone, and the pending traces' spans (rows).
        lazy = type(spans) is not list and read is not native_read_settle
        if lazy:  # only spans with a cost can be pending: their rows alone
            costed = spans_having(spans, indices, (COST_USD,))
            rows = dict(zip(costed, attr_values_at(spans, costed, _ROW), strict=True))
            _, pending = read(rows, costed, WORKFLOW, TENANT, COST_USD, False, ())
        else:
            with_context, pending = read(spans, indices, WORKFLOW, TENANT, COST_USD, want_context)
        resources: dict[int, bytes] = {}  # serialized once per resource of the batch
        # On the lazy list what a pending span keeps is read from columns (no view made).
        pending_spans = [spans[index] for index in pending] if type(spans) is list or not pending \
            else _pending_records(spans, pending, self._pending_keys)
        for index, span in zip(pending, pending_spans, strict=True):
            pico = _cost_pico_value(span.attrs[COST_USD])
            if pico is not None:
                self._remember(batch, index, span, pico, resources)
        if len(ledger):
            if lazy:  # the spans of pending traces alone (few): their rows, with the trace ids
                traces = bytes_column(spans, "trace_id")
                with_context = {}
                if not ledger.pending_traces().isdisjoint(traces):  # most batches: none pending
                    has = ledger.has_trace
                    candidates = [i for i in indices if has(traces[i])]
                    rows = dict(zip(candidates, attr_values_at(spans, candidates, _ROW), strict=True))
                    with_context, _ = read(rows, candidates, WORKFLOW, TENANT, COST_USD, True, traces)
            elif not want_context:
                with_context, _ = read(spans, indices, WORKFLOW, TENANT, COST_USD, True)
            fields = self._fields
            for trace_id, index in with_context.items():
                if ledger.has_trace(trace_id):
                    # the lazy list: the context fields read from the record, no view made
                    attrs = spans[index].attrs if type(spans) is list else \
                        dict(zip(fields, attr_values_at(spans, (index,), fields)[0], strict=True))
                    self._settle(trace_id, self._context_of(attrs), "ancestor")
        self._count_dropped()
        return batch

    @property
    def _pending_keys(self) -> tuple[str, ...]:
        """The attributes a pending span's entry reads (_remember), as a column's keys."""
        keys = self._keys_read
        if keys is None:
            keys = self._keys_read = tuple(sorted(self.watched_keys()))
        return keys

    def _context_of(self, attrs: dict) -> dict[str, str]:
        found = {}
        for key in self._fields:
            value = _str(attrs.get(key))
            if value:
                found[key] = value
        return found

    @staticmethod
    def _resource_bytes(batch: ViewBatch, index: int, span: SpanView | _PendingRecord,
                        cache: dict[int, bytes]) -> bytes:
        """The span's Resource as it leaves (resource edits applied), serialized: only for the
        rare span remembered, so the codec extracts it rather than every batch materialising."""
        found = cache.get(span.resource)
        if found is None:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

            request = ExportTraceServiceRequest.FromString(batch.codec.extract(batch.view, [index], batch.edits))
            # The one resource holding the span (resources that arrived empty come along too).
            holder = next(rs for rs in request.resource_spans if any(ss.spans for ss in rs.scope_spans))
            found = cache[span.resource] = holder.resource.SerializeToString()
        return found

    def _remember(self, batch: ViewBatch, index: int, span: SpanView | _PendingRecord, pico: int,
                  resources: dict[int, bytes]) -> None:
        attrs = span.attrs
        get = attrs.get
        fields = self._context_of(attrs)
        missing = tuple(k for k in self._fields if k not in fields)
        dims = tuple(_str(get(d)) for d in self.host.survival.spend_dimensions)
        entry = PendingSpan(
            trace_id=span.trace_id, span_id=span.span_id, parent_id=span.parent_span_id,
            hop=batch.view.resources[span.resource].service,
            resource=self._resource_bytes(batch, index, span, resources), cost_pico=pico,
            input_tokens=_int(get(INPUT_TOKENS)), output_tokens=_int(get(OUTPUT_TOKENS)),
            price_source=_str(get(COST_SOURCE)), spend_key=(_str(get(NAME)) or None, dims), fields=fields,
            missing=missing, start_ns=span.start, end_ns=span.end, added_at=self.ledger.timer(),
        )
        self.ledger.add(entry)
        # Known already (a check registered the trace after the span's hold gave up on it).
        registry = self.host.context_registry
        if registry is not None:
            known = registry.local_trace(span.trace_id)
            if known is not None:
                self._settle(span.trace_id, known, registry.source(span.trace_id))

    # -- settling -------------------------------------------------------------------------
    def _settle(self, trace_id: bytes, context: dict, by: str) -> None:
        entries = self.ledger.take_trace(trace_id)
        if not entries:
            return
        now = time.time()
        now_ns = time.time_ns()
        survival = self.host.survival
        dims = survival.spend_dimensions
        settled, spends = [], []
        for entry in entries:
            fields = {k: v for k, v in context.items() if k in entry.missing}
            settled_name = entry.fields.get(NAME) or fields.get(NAME)
            settled_dims = tuple(entry.fields.get(d) or fields.get(d) or raw
                                 for d, raw in zip(dims, entry.spend_key[1], strict=True))
            survival.settle(entry.hop, fields.keys(), entry.cost_pico, entry.spend_key,
                            (settled_name, settled_dims))
            delay_ms = max(int((now_ns - entry.end_ns) / 1e6), 0) if entry.end_ns else 0
            settled.append((entry, fields, by, delay_ms))
            spends.append(self._spend(entry, fields, now))
        self.metrics.settled.labels(by).inc(len(entries))
        self._commit(spends)
        self._send_records(attribution_request(settled, now_ns))

    def _spend(self, entry: PendingSpan, fields: dict, now: float) -> SpanSpend:
        # Only what was missing is committed now: a field the span carried (a feature, say)
        # was committed when the span left.
        ctx = Context(fields.get(WORKFLOW, ""), entry.fields.get(NAME) or fields.get(NAME, ""),
                      fields.get(TENANT, ""), fields.get(FEATURE, ""),
                      entry.fields.get("policy.id") or fields.get("policy.id", ""), 0)
        micro = round(entry.cost_pico * MICRO / 10**12)
        end = entry.end_ns / 1e9 if entry.end_ns else now
        start_ms = entry.start_ns // 1_000_000 if entry.start_ns else int(now * 1000)
        return SpanSpend(ctx, micro, entry.input_tokens + entry.output_tokens, 1, start_ms, end, None,
                         entry.trace_id + entry.span_id, entry.fields.get(TENANT) or fields.get(TENANT, ""))

    def _commit(self, spends: list[SpanSpend]) -> None:
        engine = self.host.budget_engine
        if engine is None or not spends:
            return
        ops, _ = engine.plan_commits(spends, once_prefix="s|")  # settled once, across sidecars too
        store = engine.store
        if store.sync:
            store.commit_now(ops)
            return
        self._spawn(self._commit_remote(store, ops))

    async def _commit_remote(self, store, ops) -> None:
        try:
            await store.commit(ops)
        except StoreUnavailable as exc:
            self.metrics.errors.labels("commit").inc()
            self.log.warning("budget store unreachable; settled spend not committed: %s", exc)

    def _send_records(self, request) -> None:
        consume = self.host.logs_consumer
        if consume is None:
            self.metrics.errors.labels("record").inc()  # no logs pipeline configured
            return
        count = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        consume(request.SerializeToString(), count)

    # -- polling the shared registry ------------------------------------------------------
    def tick(self, now: float) -> None:
        expired = self.ledger.expire()
        if expired:
            self.metrics.expired.labels("window").inc(expired)
        self._count_dropped()
        if not len(self.ledger) or now < self._next_poll:
            return
        self._next_poll = now + self.config.poll_interval
        registry = self.host.context_registry
        if registry is None:
            return
        traces = self.ledger.traces()[: self.config.max_traces_per_poll]
        local = [t for t in traces if registry.local_trace(t) is not None]
        for trace_id in local:
            self._settle(trace_id, registry.local_trace(trace_id), registry.source(trace_id))
        if registry.shared and not self._polling:
            rest = [t for t in traces if t not in set(local)]
            if rest:
                self._polling = True
                self._spawn(self._poll(registry, rest))

    async def _poll(self, registry, traces: Iterable[bytes]) -> None:
        try:
            known = await registry.lookup_traces(traces)
        except StoreUnavailable as exc:
            self.metrics.errors.labels("lookup").inc()
            self.log.warning("context registry unreachable; pending spend waits: %s", exc)
            return
        finally:
            self._polling = False
        for trace_id in known:
            fields = registry.local_trace(trace_id)
            if fields is not None:
                self._settle(trace_id, fields, "registry")

    def _count_dropped(self) -> None:
        dropped = self.ledger.dropped - self._dropped_seen
        if dropped:
            self.metrics.expired.labels("bound").inc(dropped)
            self._dropped_seen = self.ledger.dropped

    def _spawn(self, coro) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
