"""PythonCodec: the codec interface on protobuf (upb). The fallback when the native codec is
not installed, and the oracle the native one is tested against.

`scan` parses the request once and keeps the message inside the view; `encode` applies the
edits to that message and serializes it, so its output is protobuf's serialization of the
edited request by construction. With no edits at all, the bytes received are returned as
they are (they parse to the same message; for canonical input they are the same bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from costctx.pdata.codec.api import (
    EMPTY,
    BatchEdits,
    BatchView,
    CodecError,
    KvList,
    ResourceView,
    ScopeView,
    SpanEdits,
    SpanView,
    group_key,
    span_groups,
)

UNKNOWN_SERVICE = "unknown_service"
_NOTHING: frozenset[str] = frozenset()


@dataclass(slots=True)
class PythonBatchView(BatchView):
    """The view plus the parsed request and, per span, where it sits in it."""

    message: ExportTraceServiceRequest | None = None
    places: list[tuple[int, int, int]] | None = None     # (resource, scope, span) positions
    watched: frozenset[str] = frozenset()
    # scan_records: per span its Span message and per resource its ResourceSpans, in the
    # records' order (places are then found by identity, only when needed).
    objects: list | None = None
    resource_objects: list | None = None
    stale_raw: bool = False    # `raw` is not the message's bytes (scan_message): never edit in place
    gone: bool = False         # edited in place with no bytes to give it back (encode_last)
    spent: bool = False        # the message holds an in-place encode's edits; `raw` does not


def decode_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return EMPTY
    if kind == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return KvList((kv.key, decode_value(kv.value)) for kv in value.kvlist_value.values)
    return getattr(value, kind)


def encode_value(target: AnyValue, value: Any) -> None:
    """Write a decoded value back (the inverse of decode_value)."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is bool:
        target.bool_value = value
    elif kind is int:
        target.int_value = value
    elif kind is float:
        target.double_value = value
    elif kind is bytes:
        target.bytes_value = value
    elif value is EMPTY or value is None:
        target.Clear()
    elif isinstance(value, KvList):
        target.Clear()
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        for key, item in value:
            entry = kvlist.values.add()
            entry.key = key
            encode_value(entry.value, item)
    elif isinstance(value, (list, tuple)):
        target.Clear()
        array = target.array_value
        array.SetInParent()
        for item in value:
            encode_value(array.values.add(), item)
    elif isinstance(value, dict):
        encode_value(target, KvList(value.items()))
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = int(value)
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, str):
        target.string_value = str(value)
    else:
        raise TypeError(f"cannot store {type(value).__name__} in an OTLP AnyValue")


_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value", "bytes_value"))


def _watched(attributes, watched: frozenset[str]) -> tuple[dict[str, Any], bool]:
    """The watched keys' values and whether one of them occurs more than once."""
    # Later duplicates win, as in pdata.attributes.index_attributes. Scalars decoded inline:
    # this runs for every attribute of every span (the call to decode_value cost ~15%).
    found: dict[str, Any] = {}
    scalars = _SCALARS
    seen = 0
    for kv in attributes:
        key = kv.key
        if key in watched:
            seen += 1
            value = kv.value
            kind = value.WhichOneof("value")
            found[key] = getattr(value, kind) if kind in scalars else decode_value(value)
    return found, seen != len(found)


def _repeated(attributes, index: dict, watched: frozenset[str]) -> bool:
    """Whether a watched key occurs more than once, given the last-wins index of `attributes`."""
    if len(index) == len(attributes):
        return False  # no key repeats at all
    return sum(1 for kv in attributes if kv.key in watched) != len(watched.intersection(index))


def _event_keys(events, watched: frozenset[str]) -> frozenset[str]:
    """The watched keys present on any of a span's events."""
    if not events or not watched:
        return _NOTHING
    return frozenset(kv.key for event in events for kv in event.attributes if kv.key in watched)


def _resource_view(rs, watched: frozenset[str]) -> ResourceView:
    service = UNKNOWN_SERVICE
    r_attrs: dict[str, Any] = {}
    r_seen = 0
    for kv in rs.resource.attributes:
        key = kv.key
        if key == "service.name":
            value = kv.value
            service = (value.string_value or UNKNOWN_SERVICE) if value.WhichOneof("value") == "string_value" \
                else UNKNOWN_SERVICE
        if key in watched:
            r_seen += 1
            r_attrs[key] = decode_value(kv.value)
    return ResourceView(service, rs.schema_url, r_attrs, rs.resource.ByteSize(), r_seen != len(r_attrs))


def _decode_kv(kv: KeyValue) -> Any:
    value = kv.value
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in _SCALARS else decode_value(value)


def apply_edits(attributes, edits: SpanEdits, watched: frozenset[str] = frozenset(),
                seen: frozenset[str] = frozenset()) -> None:
    """Renames, deletes, sets, in that order; each acts on the last occurrence of its key
    (the one the view reports). A key in `watched` and not in `seen` (what the scan found)
    is known absent: appended without a search when only sets are asked."""
    last: dict | None = None
    if edits.renames or edits.deletes:
        at_of = {kv.key: i for i, kv in enumerate(attributes)}
        for old, new in edits.renames:
            at = at_of.pop(old, None)
            if at is not None:
                attributes[at].key = new
                at_of[new] = at
        if edits.deletes:
            drop = sorted((at_of[k] for k in set(edits.deletes) if k in at_of), reverse=True)
            for at in drop:
                del attributes[at]
        watched = frozenset()
    if edits.sets:
        added: dict = {}
        for key, value in edits.sets:
            kv = added.get(key)
            if kv is None and (key not in watched or key in seen):
                if last is None:
                    last = {kv.key: kv for kv in attributes}
                kv = last.get(key)
            if kv is None:
                kv = attributes.add()
                kv.key = key
                added[key] = kv
            if value is EMPTY:
                kv.ClearField("value")  # no AnyValue at all, as an empty attribute arrives
            else:
                encode_value(kv.value, value)


# Span.attributes: field 9, length-delimited -> tag byte 0x4a. Encoded attributes are appended
# to a span with one MergeFromString (repeated fields append): the same message as adding them
# one by one, for a fraction of the upb calls (the sets inherit writes on every repaired span).
_ATTRIBUTES_TAG = bytes([(Span.DESCRIPTOR.fields_by_name["attributes"].number << 3) | 2])
_ENCODED: dict[tuple, bytes] = {}
_ENCODED_MAX = 8192


def _encoded_attribute(key: str, value: Any) -> bytes | None:
    """One Span.attributes element for a string, int or string-list value (cached); else None."""
    kind = type(value)
    if kind is str or kind is int:
        memo = (key, kind, value)
    elif kind is list and all(type(v) is str for v in value):
        memo = (key, list, tuple(value))
    else:
        return None
    piece = _ENCODED.get(memo)
    if piece is None:
        kv = KeyValue(key=key)
        encode_value(kv.value, value)
        body = kv.SerializeToString()
        size = len(body)
        length = bytearray()
        while size > 0x7F:
            length.append((size & 0x7F) | 0x80)
            size >>= 7
        length.append(size)
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        piece = _ENCODED[memo] = _ATTRIBUTES_TAG + bytes(length) + body
    return piece


def _append_encoded(span: Span, sets: list[tuple[str, Any]], watched: frozenset[str],
                    seen: frozenset[str]) -> bool:
    """Apply sets that only add keys the scan found absent, as encoded bytes in one call.
    False (nothing written) when any set needs apply_edits (a key present, repeated or
    unwatched, or a value of another kind)."""
    pieces = []
    keys = set()
    for key, value in sets:
        if key not in watched or key in seen or key in keys:
            return False
        keys.add(key)
        piece = _encoded_attribute(key, value)
        if piece is None:
            return False
        pieces.append(piece)
    if pieces:
        span.MergeFromString(b"".join(pieces))
    return True


class PythonCodec:
    name = "python"

    def scan(self, raw: bytes, watched: frozenset[str]) -> PythonBatchView:
        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(raw)
        except (DecodeError, ValueError) as exc:
            raise CodecError(f"cannot decode traces protobuf request: {exc}") from None
        return self._view_of(message, raw, watched)

    def check(self, raw: bytes) -> int:
        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(raw)
        except (DecodeError, ValueError) as exc:
            raise CodecError(str(exc)) from None  # the receiver says what it could not decode
        return sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)

    def scan_message(self, message: ExportTraceServiceRequest, watched: frozenset[str],
                     indexes: list[dict[str, KeyValue] | None] | None = None) -> PythonBatchView:
        """The view of a request already parsed (a slow-path processor's TraceBatch): no
        serialize and parse in between. The view takes the message over. `indexes`: per span
        in request order, an up-to-date key -> KeyValue index (later duplicates win) if the
        caller has one (TraceBatch records): only watched keys are looked up in it then."""
        view = self._view_of(message, b"", watched, indexes)
        view.stale_raw = True
        return view

    def scan_records(self, message: ExportTraceServiceRequest, records: list,
                     watched: frozenset[str]) -> PythonBatchView:
        """The view of a slow-path processor's TraceBatch from its records (pdata.batch
        SpanRecord: span, resource, scope_spans, attrs index), in the records' order: only
        watched keys are looked up in each index; no walk over the request. Hops are the
        records' (`ResourceView.hop`), as the slow path reads them. The view takes the
        message over; it is stale_raw (no bytes) like scan_message's."""
        resources: list[ResourceView] = []
        resource_objects: list = []
        scopes: list[ScopeView] = []
        spans: list[SpanView] = []
        objects: list = []
        resource_at: dict[int, int] = {}
        scope_at: dict[int, int] = {}
        scalars = _SCALARS
        for rec in records:
            rv = rec.resource
            r = resource_at.get(id(rv))
            if r is None:
                r = resource_at[id(rv)] = len(resources)
                index = rv.attrs
                resource = rv.resource_spans.resource
                resources.append(ResourceView(rv.hop, rv.schema_url,
                                              {k: _decode_kv(index[k]) for k in watched.intersection(index)},
                                              resource.ByteSize(), _repeated(resource.attributes, index, watched)))
                resource_objects.append(rv.resource_spans)
            scope_spans = rec.scope_spans
            sc = scope_at.get(id(scope_spans))
            if sc is None:
                sc = scope_at[id(scope_spans)] = len(scopes)
                scope = scope_spans.scope
                scopes.append(ScopeView(r, scope_spans.schema_url, scope.name, scope.version))
            span = rec.span
            index = rec.attrs
            attrs = {}
            for key in watched.intersection(index):
                value = index[key].value
                kind = value.WhichOneof("value")
                attrs[key] = getattr(value, kind) if kind in scalars else decode_value(value)
            links = span.links
            events = span.events
            spans.append(SpanView(
                span.trace_id, span.span_id, span.parent_span_id,
                span.start_time_unix_nano, span.end_time_unix_nano, r, sc,
                attrs, len(span.attributes),
                tuple((link.trace_id, link.span_id) for link in links) if links else (),
                len(events), frozenset(attrs), span.ByteSize(), _event_keys(events, watched),
                _repeated(span.attributes, index, watched), span.kind,
            ))
            objects.append(span)
        view = PythonBatchView(b"", resources, scopes, spans, message, None, watched, objects, resource_objects)
        view.stale_raw = True
        return view

    @staticmethod
    def _positions(view: PythonBatchView) -> list[tuple[int, int, int]]:
        """(resource, scope, span) positions of the view's spans in its message."""
        if view.places is None:
            at = {}
            for r, rs in enumerate(view.message.resource_spans):
                for s, ss in enumerate(rs.scope_spans):
                    for i, span in enumerate(ss.spans):
                        at[id(span)] = (r, s, i)
            view.places = [at[id(span)] for span in view.objects]
        return view.places

    def _view_of(self, message: ExportTraceServiceRequest, raw: bytes, watched: frozenset[str],
                 indexes: list[dict[str, KeyValue] | None] | None = None) -> PythonBatchView:
        resources: list[ResourceView] = []
        scopes: list[ScopeView] = []
        spans: list[SpanView] = []
        places: list[tuple[int, int, int]] = []
        for r, rs in enumerate(message.resource_spans):
            resources.append(_resource_view(rs, watched))
            for s, ss in enumerate(rs.scope_spans):
                scope_index = len(scopes)
                scopes.append(ScopeView(r, ss.schema_url, ss.scope.name, ss.scope.version))
                for i, span in enumerate(ss.spans):
                    attributes = span.attributes
                    index = indexes[len(spans)] if indexes is not None else None
                    if index is not None:
                        attrs = {key: _decode_kv(index[key]) for key in watched.intersection(index)}
                        repeated = _repeated(attributes, index, watched)
                    else:
                        attrs, repeated = _watched(attributes, watched)
                    links = span.links
                    events = span.events
                    spans.append(SpanView(
                        span.trace_id, span.span_id, span.parent_span_id,
                        span.start_time_unix_nano, span.end_time_unix_nano, r, scope_index,
                        attrs, len(attributes),
                        tuple((link.trace_id, link.span_id) for link in links) if links else (),
                        len(events), frozenset(attrs), span.ByteSize(), _event_keys(events, watched), repeated,
                        span.kind,
                    ))
                    places.append((r, s, i))
        return PythonBatchView(raw, resources, scopes, spans, message, places, watched)

    # -- writing ----------------------------------------------------------------------------
    def _edited(self, view: PythonBatchView, edits: BatchEdits, keep: set[int] | None,
                in_place: bool = False, spend: bool = False) -> ExportTraceServiceRequest:
        """The request with edits applied, keeping the spans in `keep` (None: every span not
        removed). Scopes and resources emptied here are dropped; ones that arrived empty stay
        (when keep is None). `in_place` edits the view's own message (the last use of the view:
        encode as a batch leaves), sparing a copy."""
        self._fresh(view)
        if spend or (in_place and not view.stale_raw):
            out = view.message
            view.spent = True
            view.gone = view.stale_raw  # no bytes left to give the request back
        else:
            out = ExportTraceServiceRequest()
            out.CopyFrom(view.message)
        direct = out is view.message and view.objects is not None
        if view.objects is not None and (not direct or edits.removed or keep is not None or edits.resources):
            direct = False
            places = self._positions(view)
        else:
            places = view.places
        for r, resource_edits in edits.resources.items():
            if view.resource_objects is not None:  # records' order: find the resource's position
                target = view.resource_objects[r]
                r = next(i for i, rs in enumerate(view.message.resource_spans) if rs is target)
            apply_edits(out.resource_spans[r].resource.attributes, resource_edits)
        watched = view.watched
        objects = view.objects
        for index, span_edits in edits.expanded().items():  # group edits merged in
            if keep is not None and index not in keep:
                continue  # a span left out: its edits are not worth applying
            if direct:
                span = objects[index]
            else:
                r, s, i = places[index]
                span = out.resource_spans[r].scope_spans[s].spans[i]
            if span_edits.replace is not None:
                span.ParseFromString(span_edits.replace)
            elif span_edits.renames or span_edits.deletes or not _append_encoded(
                    span, span_edits.sets, watched, view.spans[index].signature):
                apply_edits(span.attributes, span_edits, watched, view.spans[index].signature)
        dropped = edits.removed if keep is None else set(range(len(places))) - keep
        if dropped:
            emptied: set[tuple[int, int]] = set()
            for index in sorted(dropped, reverse=True):
                r, s, i = places[index]
                del out.resource_spans[r].scope_spans[s].spans[i]
                emptied.add((r, s))
            for r, s in sorted(emptied, reverse=True):
                scope_spans = out.resource_spans[r].scope_spans
                if not scope_spans[s].spans:
                    del scope_spans[s]
            for r in sorted({r for r, _ in emptied}, reverse=True):
                if not out.resource_spans[r].scope_spans:
                    del out.resource_spans[r]
        return out

    @staticmethod
    def _fresh(view: PythonBatchView) -> None:
        """After an in-place encode the message holds the edits: parse the bytes again."""
        if view.gone:
            raise RuntimeError("this view was encoded as its batch left (encode_last); it cannot be used again")
        if view.spent:
            view.message = ExportTraceServiceRequest.FromString(view.raw)
            view.spent = False

    def encode(self, view: BatchView, edits: BatchEdits) -> bytes:
        if not edits.any():
            if view.stale_raw:  # type: ignore[attr-defined]
                return view.message.SerializeToString()  # type: ignore[attr-defined]
            return view.raw
        # In place (no copy) when the bytes scanned can give the request back if asked again.
        return self._edited(view, edits, None, in_place=True).SerializeToString()  # type: ignore[arg-type]

    def encode_last(self, view: BatchView, edits: BatchEdits) -> bytes:
        """encode, for a batch leaving the pipeline: the view is not used again, so its message
        takes the edits in place even when no bytes could give it back."""
        if view.stale_raw and edits.any():  # type: ignore[attr-defined]
            return self._edited(view, edits, None, spend=True).SerializeToString()  # type: ignore[arg-type]
        return self.encode(view, edits)

    def edited_message(self, view: BatchView, edits: BatchEdits) -> ExportTraceServiceRequest:
        """The request with the edits applied, as a message: the view's own, edited in place
        (no serialize and parse), so the view is spent (for a switch to the protobuf path)."""
        if view.stale_raw and not edits.any():  # type: ignore[attr-defined]
            self._fresh(view)  # type: ignore[arg-type]
            view.gone = True  # type: ignore[attr-defined]
            return view.message  # type: ignore[attr-defined]
        return self._edited(view, edits, None, spend=True)  # type: ignore[arg-type]

    def extended(self, view: PythonBatchView, edits: BatchEdits, raw: bytes,
                 watched: frozenset[str]) -> PythonBatchView:
        """The view of the request with `edits` applied, removed spans left out and the spans
        of `raw` after them (ViewBatch.extend), without serializing and scanning the whole
        request again: the kept spans' records are reused (their attrs are current: ViewBatch
        keeps them in step with its sets), only `raw` is scanned. Spends `view`."""
        n = len(view.spans)
        kept = [i for i in range(n) if i not in edits.removed]
        if view.objects is not None:  # records' order: the request's order is by position
            kept.sort(key=self._positions(view).__getitem__)
        message = self._edited(view, edits, None, spend=True)
        old_spans = view.spans
        resources: list[ResourceView] = []
        scopes: list[ScopeView] = []
        spans: list[SpanView] = []
        places: list[tuple[int, int, int]] = []
        at = 0
        for r, rs in enumerate(message.resource_spans):
            resources.append(_resource_view(rs, watched))
            for s, ss in enumerate(rs.scope_spans):
                scope_index = len(scopes)
                scopes.append(ScopeView(r, ss.schema_url, ss.scope.name, ss.scope.version))
                for i, span in enumerate(ss.spans):
                    record = old_spans[kept[at]]
                    at += 1
                    record.resource, record.scope = r, scope_index
                    record.attr_count = len(span.attributes)
                    record.signature = frozenset(record.attrs)  # what the message now holds
                    record.size = span.ByteSize()
                    spans.append(record)
                    places.append((r, s, i))
        tail = self._view_of(ExportTraceServiceRequest.FromString(raw), raw, watched)
        r0, s0 = len(resources), len(scopes)
        resources += tail.resources
        for scope in tail.scopes:
            scope.resource += r0
            scopes.append(scope)
        for record, (r, s, i) in zip(tail.spans, tail.places, strict=True):  # type: ignore[arg-type]
            record.resource += r0
            record.scope += s0
            spans.append(record)
            places.append((r + r0, s, i))
        message.MergeFromString(raw)  # repeated fields append: the tail's resource_spans follow
        out = PythonBatchView(b"", resources, scopes, spans, message, places, watched)
        out.stale_raw = True
        return out

    def extract(self, view: BatchView, indices: list[int], edits: BatchEdits) -> bytes:
        return self._edited(view, edits, set(indices)).SerializeToString()  # type: ignore[arg-type]

    def groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int]]:
        return span_groups(view.spans, by_value)

    def keyed_groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int], list[tuple]]:
        groups, loose = span_groups(view.spans, by_value)
        spans = view.spans
        return groups, loose, [group_key(spans[group[0]], by_value) for group in groups]

    def materialize(self, view: BatchView, index: int) -> Span:
        self._fresh(view)  # type: ignore[arg-type]
        r, s, i = self._positions(view)[index] if view.objects is not None else view.places[index]  # type: ignore
        span = Span()
        span.CopyFrom(view.message.resource_spans[r].scope_spans[s].spans[i])  # type: ignore[attr-defined]
        return span
