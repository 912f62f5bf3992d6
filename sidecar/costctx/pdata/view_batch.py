"""ViewBatch: one traces batch on its way through the pipeline, in the cheapest form that serves.

- bytes as received, until a processor looks;
- a `BatchView` plus a `BatchEdits` list (the fast path): processors that work on the view
  read the watched keys and add edits; nothing is re-encoded until the batch leaves;
- a `TraceBatch` (the slow path): processors not ported to the view, and cases the fast path
  does not cover, walk protobuf as before.

Switching form costs one encode + parse (view -> TraceBatch) or one serialize + scan
(TraceBatch -> view); per-span notes (renamed, repaired, conflict: what later processors and
the survival recorder need to know) move with the spans.
"""

from __future__ import annotations

from typing import Any

from costctx.pdata.attributes import index_attributes
from costctx.pdata.batch import TraceBatch
from costctx.pdata.codec.api import BatchEdits, BatchView, Codec, SpanEdits, edit_attrs

Notes = dict[str, Any]


def _parse_request(raw: bytes) -> Any:
    """The protobuf message of a serialized request: the slow path only, so protobuf is imported
    when a batch first takes it (a sidecar on the native codec may never)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest.FromString(raw)


class ViewBatch:
    __slots__ = ("codec", "watched", "_raw", "_view", "edits", "notes", "order", "_trace", "rejected",
                 "rejected_reason", "_received_spans", "_origin", "lazy_spans", "_lazy", "_kept")

    def __init__(self, codec: Codec, raw: bytes, watched: frozenset[str], spans: int | None = None) -> None:
        self.codec = codec
        # Spans in the request as received, when the receiver counted them: a batch no
        # processor looks at leaves without being scanned or parsed.
        self._received_spans = spans
        # The TraceBatch a records-based view was made from (PythonCodec.scan_records): going
        # back to it applies the edits to its records in place instead of encode + parse.
        self._origin: TraceBatch | None = None
        self.watched = watched
        self._raw: bytes | None = raw
        self._view: BatchView | None = None
        self.edits = BatchEdits()
        # Notes by span index in the current view, created on demand (see SpanRecord.notes).
        self.notes: dict[int, Notes] = {}
        # The order processors visit spans in, when not the view's (see `indices`).
        self.order: list[int] | None = None
        # `indices` with spans removed, and what it was made from (spans are only ever added to
        # the removed set: its size tells whether it changed).
        self._kept: tuple | None = None
        self._trace: TraceBatch | None = None
        # Spans a processor refused (e.g. over a limit); reported as OTLP partial success.
        self.rejected = 0
        self.rejected_reason = ""
        # Whoever reads the view now reads spans through columns and groups (a `columnar`
        # processor; the pipeline sets it per processor): the codec's lazy span list is kept.
        # False (the default): reading the view makes every span's view, once (make_spans).
        self.lazy_spans = False
        self._lazy = False  # the view's spans are a lazy list not made yet

    @classmethod
    def of_trace(cls, codec: Codec, trace: TraceBatch, watched: frozenset[str]) -> ViewBatch:
        """Wrap a TraceBatch a slow-path processor built or released (notes kept)."""
        batch = cls.__new__(cls)
        batch.codec, batch.watched = codec, watched
        batch._raw, batch._view, batch.edits, batch.notes, batch.order = None, None, BatchEdits(), {}, None
        batch._trace = trace
        batch.rejected, batch.rejected_reason = trace.rejected, trace.rejected_reason
        batch._received_spans = None
        batch._origin = batch._kept = None
        batch.lazy_spans = batch._lazy = False
        return batch

    # -- the fast path ----------------------------------------------------------------------
    @property
    def view(self) -> BatchView:
        view = self._view
        if view is None:
            view = self._make_view()
            self._lazy = type(view.spans) is not list
        if self._lazy and not self.lazy_spans:
            self.make_spans()
        return view

    def _make_view(self) -> BatchView:
        if self._view is None:
            trace = self._trace
            if trace is not None:
                self._trace = None
                scan_records = getattr(self.codec, "scan_records", None)
                if scan_records is not None and trace._records is not None:
                    # The Python codec: the view straight from the records, in their order.
                    records = trace._records
                    self._view = scan_records(trace.request, records, self.watched)
                    self.notes = {i: rec.notes for i, rec in enumerate(records) if rec.notes}
                    self.order = None
                    self._origin = trace
                    return self._view
                self.notes, self.order, indexes = _notes_and_order(trace)
                scan_message = getattr(self.codec, "scan_message", None)
                if scan_message is not None:  # the Python codec: no serialize + parse between
                    self._view = scan_message(trace.request, self.watched, indexes)
                    return self._view
                self._raw = trace.request.SerializeToString()
            self._view = self.codec.scan(self._raw, self.watched)  # type: ignore[arg-type]
        return self._view

    def make_spans(self) -> None:
        """Every span's view made now, in one call, and `view.spans` a plain list from here on:
        for a processor that reads every span (the native codec's spans are made on first
        access, which costs a call per access; a processor reading columns skips this)."""
        view = self._view
        if view is not None:
            to_list = getattr(view.spans, "to_list", None)
            if to_list is not None:
                view.spans = to_list()
        self._lazy = False

    def spans_as_read(self) -> Any:
        """`view.spans` for a columnar reader: the lazy list, unless every view in it is made
        already (a reader before was not columnar): then a plain list, which readers index
        faster than they read columns."""
        spans = self.view.spans
        made = getattr(spans, "made_count", None)
        if made is not None and made() == len(spans):
            self.make_spans()
            spans = self.view.spans
        return spans

    def indices(self) -> list[int] | range:
        """Span indices in visiting order, removed spans left out. A slow-path processor may
        have ordered its records differently from the request (inherit appends released
        spans); order-dependent decisions (running totals) follow that order."""
        count = len(self.view.spans)  # first: switching to the view sets `order`
        removed = self.edits.removed
        order = self.order
        if not removed:
            return order if order is not None else range(count)
        kept = self._kept
        if kept is not None and kept[0] is removed and kept[1] == len(removed) and kept[2] is order \
                and kept[3] == count:
            return kept[4]  # every processor after the one that removed spans asks again
        listed = [i for i in (order if order is not None else range(count)) if i not in removed]
        self._kept = (removed, len(removed), order, count, listed)
        return listed

    def note(self, index: int, name: str) -> set[str]:
        notes = self.notes.get(index)
        if notes is None:
            notes = self.notes[index] = {}
        found = notes.get(name)
        if found is None:
            found = notes[name] = set()
        return found

    # Writes: an edit for the codec, and the view's attrs kept in step so later processors
    # read the current value (the codec writes from the message and the edits, not attrs).
    def set(self, index: int, key: str, value: Any) -> None:
        edits = self.edits.span(index)
        if edits.replace is not None:
            # A span re-encoded on the slow path: the codec ignores other edits beside a
            # replacement, so the value goes into the replacement itself.
            span = self.materialize(index)
            _apply(span.attributes, SpanEdits(sets=[(key, value)]))
            edits.replace = span.SerializeToString()
        else:
            edits.sets.append((key, value))
        spans = self.view.spans
        if type(spans) is list or type(value) is list:
            spans[index].attrs[key] = value
        else:  # the lazy list: kept for the view, none made (a list value stays this very object)
            edit_attrs(spans, (index,), (), (), ((key, value),))

    def set_many(self, indices: list[int], key: str, value: Any) -> None:
        """`set(index, key, value)` for every index, as one group edit (BatchEdits.add_group)
        instead of one edit per span; spans re-encoded on the slow path take it one by one.
        `value` is shared by the spans' attrs: a str, int, float, bool or bytes."""
        own = self.edits.spans
        if own:
            replaced = {i for i in own.keys() & set(indices) if own[i].replace is not None}
            if replaced:
                for index in replaced:
                    self.set(index, key, value)
                indices = [i for i in indices if i not in replaced]
        if not indices:
            return
        self.edits.add_group(SpanEdits(sets=[(key, value)]), indices)
        spans = self.view.spans
        if type(spans) is list:
            for index in indices:
                spans[index].attrs[key] = value
        else:  # the lazy list: kept for the views, none made
            edit_attrs(spans, indices, (), (), ((key, value),))

    def append_strings(self, index: int, key: str, values: list[str]) -> None:
        """Add values to a string-array attribute, keeping its strings and their order (as
        SpanRecord.append_strings: other elements of an array it must rewrite are dropped)."""
        if not values:
            return
        current = self.view.spans[index].attrs.get(key)
        if current is None:
            self.set(index, key, list(values))
            return
        is_array = type(current) is list
        existing = [v for v in current if type(v) is str] if is_array else []
        added = [v for v in values if v not in existing]
        if not added and is_array:
            return
        self.set(index, key, existing + added)

    def materialize(self, index: int) -> Any:
        """The protobuf Span at `index` with this batch's edits so far applied (slow path)."""
        edits = self.edits.effective(index)  # its own edits and its groups'
        if edits is not None and edits.replace is not None:
            from opentelemetry.proto.trace.v1.trace_pb2 import Span

            return Span.FromString(edits.replace)
        span = self.codec.materialize(self.view, index)
        if edits is not None:
            _apply(span.attributes, edits)
        return span

    def replace(self, index: int, span: Any) -> None:
        """Put a span materialised and rewritten on the slow path back as its only edit; the
        view's record of it follows, so later processors read the rewritten span."""
        from costctx.pdata.codec.python import _event_keys, _watched

        data = span.SerializeToString()
        self.edits.spans[index] = SpanEdits(replace=data)
        record = self.view.spans[index]
        record.attrs, record.repeated = _watched(span.attributes, self.watched)
        record.attr_count = len(span.attributes)
        record.signature = frozenset(record.attrs)
        record.kinds = None  # as scanned no more
        record.size = len(data)
        record.event_count = len(span.events)
        record.event_keys = _event_keys(span.events, self.watched)

    def extend(self, raw: bytes, count: int) -> int:
        """Append the `count` spans of `raw` (a serialized request) after this batch's, as
        inherit does with spans an arriving ancestor releases: the batch is encoded once with
        its edits and scanned again with `raw` after it (concatenated requests are one request:
        protobuf merges repeated fields). Notes and the visiting order move with their spans.
        Returns the index of the first appended span."""
        view = self.view
        appended = getattr(self.codec, "appended", None)
        if appended is not None:  # NativeCodec: only `raw` scanned; indices, edits, notes kept
            start = len(view.spans)
            self._view = appended(view, raw, self.watched)
            self._lazy = type(self._view.spans) is not list
            self._raw, self._trace, self._origin = None, None, None
            if self.order is not None:
                self.order = self.order + list(range(start, len(self._view.spans)))
            self._received_spans = None
            return start
        removed = self.edits.removed
        kept = [i for i in range(len(view.spans)) if i not in removed]
        objects = getattr(view, "objects", None)
        order = self.order
        if objects is not None:  # a records-based view (PythonCodec.scan_records): index order
            places = self.codec._positions(view)  # type: ignore[attr-defined]  # may not be the request's
            kept.sort(key=places.__getitem__)
            if order is None:
                order = range(len(view.spans))
        position = {index: p for p, index in enumerate(kept)}
        extended = getattr(self.codec, "extended", None)
        if extended is not None:  # PythonCodec: the kept spans' records reused, only `raw` scanned
            self._view, self._raw = extended(view, self.edits, raw, self.watched), None
        else:
            encode = getattr(self.codec, "encode_last", self.codec.encode)  # the view is not used again
            self._raw, self._view = encode(view, self.edits) + raw, None
        self._trace, self._origin = None, None
        self.edits = BatchEdits()
        self.notes = {position[i]: notes for i, notes in self.notes.items() if i in position}
        start = len(kept)
        if order is not None:
            self.order = [position[i] for i in order if i in position] + list(range(start, start + count))
        self._received_spans = start + count
        return start

    # -- the slow path ----------------------------------------------------------------------
    @property
    def trace(self) -> TraceBatch:
        if self._trace is None:
            view = self._view
            if view is None:
                raw = self._raw
                self._trace = TraceBatch(_parse_request(raw), raw)
            elif self._origin is not None:
                # Back to the TraceBatch the view came from: edits written onto its records.
                trace = self._origin
                write_back(trace, self)
                self._trace = trace
                self._view, self.edits, self.notes, self._raw, self.order, self._origin = (
                    None, BatchEdits(), {}, None, None, None)
            else:
                edits = self.edits
                edited_message = getattr(self.codec, "edited_message", None)
                if edited_message is not None:  # the Python codec: its message, edited in place
                    trace = TraceBatch(edited_message(view, edits), None if _edited(edits) else (view.raw or None))
                else:
                    raw = self.codec.encode(view, edits)
                    trace = TraceBatch(_parse_request(raw), None if _edited(edits) else raw)
                kept = [i for i in range(len(view.spans)) if i not in edits.removed]
                if self.notes:
                    records = trace.records
                    for position, index in enumerate(kept):
                        notes = self.notes.get(index)
                        if notes:
                            records[position].notes = notes
                self._trace = trace
                if self.order is not None:
                    records = trace.records
                    position = {index: p for p, index in enumerate(kept)}
                    trace.set_records([records[position[i]] for i in self.order if i in position])
                self._view, self.edits, self.notes, self._raw, self.order = None, BatchEdits(), {}, None, None
            self._trace.rejected, self._trace.rejected_reason = self.rejected, self.rejected_reason
        return self._trace

    def sync_from_trace(self) -> None:
        """After a slow-path processor ran on `trace`: take over what it refused."""
        if self._trace is not None:
            self.rejected, self.rejected_reason = self._trace.rejected, self._trace.rejected_reason

    # -- leaving ----------------------------------------------------------------------------
    def payload(self) -> bytes:
        if self._trace is not None:
            return self._trace.request.SerializeToString()
        if self._view is not None:
            # The batch leaves: a codec may spend the view to spare a copy (PythonCodec).
            encode = getattr(self.codec, "encode_last", self.codec.encode)
            return encode(self._view, self.edits)
        return self._raw  # type: ignore[return-value]

    def span_count(self) -> int:
        if self._trace is not None:
            return self._trace.span_count()
        if self._view is None:
            if self._received_spans is None:  # not counted by a receiver: count without a scan
                request = _parse_request(self._raw)  # type: ignore[arg-type]
                self._received_spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            return self._received_spans
        return len(self.view.spans) - len(self.edits.removed)

    def is_empty(self) -> bool:
        return self.span_count() == 0


def _apply(attributes, edits: SpanEdits) -> None:
    from costctx.pdata.codec.python import apply_edits  # the codec's own edit semantics

    apply_edits(attributes, edits)


def _edited(edits: BatchEdits) -> bool:
    return edits.any()


def _notes_and_order(trace: TraceBatch) -> tuple[dict[int, Notes], list[int] | None, list | None]:
    """Of a TraceBatch's records, by span position in its request (the scan order): their
    notes, their order when it differs from the request's, and their attribute indexes."""
    records = trace._records
    if not records:
        return {}, None, None
    position: dict[int, int] = {}
    index = 0
    for rs in trace.request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                position[id(span)] = index
                index += 1
    order = [position[id(rec.span)] for rec in records]
    indexes: list = [None] * index
    for at, rec in zip(order, records, strict=True):
        indexes[at] = rec.attrs
    if len(order) != index:  # records that leave spans out: visit those last, as found
        listed = set(order)
        order += [i for i in range(index) if i not in listed]
    notes = {position[id(rec.span)]: rec.notes for rec in records if rec.notes}
    return notes, (None if order == list(range(len(order))) else order), indexes


def write_back(trace: TraceBatch, batch: ViewBatch) -> None:
    """Apply a ViewBatch's edits and notes to the TraceBatch it was made from, in place (for
    callers of Processor.process that hold the TraceBatch, its records or its request)."""
    from costctx.pdata.codec.python import apply_edits  # the codec's own edit semantics

    records = trace.records
    if batch._origin is trace:  # a records-based view: its index i is records[i]
        in_order: list = list(records)
    else:
        by_span = {id(rec.span): rec for rec in records}
        in_order = [by_span.get(id(span)) for rs in trace.request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]
    edits = batch.edits
    view = batch._view
    watched = view.watched if view is not None else frozenset()  # type: ignore[attr-defined]
    for index, span_edits in edits.expanded().items():  # group edits merged in
        record = in_order[index]
        if record is None:
            continue
        if span_edits.replace is not None:
            record.span.ParseFromString(span_edits.replace)
            record.attrs = index_attributes(record.span.attributes)
        elif span_edits.renames or span_edits.deletes or view is None:
            apply_edits(record.span.attributes, span_edits)
            record.attrs = index_attributes(record.span.attributes)
        else:  # sets only: the index is kept in step (SpanRecord.set's own bookkeeping)
            apply_edits(record.span.attributes, span_edits, watched, view.spans[index].signature)
            attributes = record.span.attributes
            index_of = record.attrs
            for key, _ in span_edits.sets:
                if key not in index_of:
                    index_of[key] = next(kv for kv in reversed(attributes) if kv.key == key)
    for r, resource_edits in edits.resources.items():
        resource_spans = (batch._view.resource_objects[r] if batch._origin is trace  # type: ignore[union-attr]
                          else trace.request.resource_spans[r])
        apply_edits(resource_spans.resource.attributes, resource_edits)
        for resource in {id(rec.resource): rec.resource for rec in records
                         if rec.resource.resource_spans is resource_spans}.values():
            resource.reindex()
    for index, notes in batch.notes.items():
        record = in_order[index]
        if record is not None:
            record.notes = notes
    if edits.removed:
        gone = set()
        for index in sorted(edits.removed, reverse=True):
            record = in_order[index]
            if record is None:
                continue
            gone.add(id(record))
            spans = record.scope_spans.spans
            for i in range(len(spans)):
                if spans[i] is record.span:
                    del spans[i]
                    break
        trace.set_records([rec for rec in records if id(rec) not in gone])
    trace.rejected, trace.rejected_reason = batch.rejected, batch.rejected_reason
