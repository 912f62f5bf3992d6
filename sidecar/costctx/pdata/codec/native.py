"""The native codec: `costctx_native` (Rust, PyO3) behind the codec interface of api.py.

The extension validates the request as protobuf (upb) does and builds the api.py view
objects itself (the classes are handed to it once, below), interning strings per batch and
sharing one signature frozenset per distinct key set. Encoding walks the request once more
and copies everything an edit does not touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costctx.pdata.codec.api import (
    EMPTY,
    BatchEdits,
    BatchView,
    CodecError,
    KvList,
    ResourceView,
    ScopeView,
    SpanView,
    group_key,
    span_groups,
)

try:
    import costctx_native as _native
except ImportError:  # built without the extension: the Python codec is the fallback
    _native = None

AVAILABLE = _native is not None


@dataclass(slots=True)
class NativeBatchView(BatchView):
    """A BatchView that also carries the scanned layout the encoder needs.

    A view `appended` to (inherit's released spans) keeps one segment per scanned request
    instead of one layout: (first span, first resource, first scope, raw, layout). Encoding
    writes each segment and concatenates them (concatenated requests are one request)."""

    layout: Any = None
    segments: list[tuple[int, int, int, bytes, Any]] | None = None


class NativeCodec:
    name = "native"

    def __init__(self) -> None:
        if _native is None:
            # ImportError: what a caller choosing "native if it is there" catches.
            raise ImportError("costctx_native is not built; install with `pip install .` (needs cargo)")
        self._core = _native.Core(ResourceView, ScopeView, SpanView, KvList, EMPTY, CodecError)

    def scan(self, raw: bytes, watched: frozenset[str]) -> BatchView:
        # The spans as a lazy sequence (costctx_native.SpanList): a SpanView is made only for a
        # span some processor asks for; per-group and per-batch readers use its columns.
        resources, scopes, spans, layout = self._core.scan_lazy(bytes(raw), watched)
        return NativeBatchView(raw, resources, scopes, spans, layout)

    def check(self, raw: bytes) -> int:
        return self._core.check(bytes(raw))  # the scan's validation, no view objects, GIL released

    def encode(self, view: BatchView, edits: BatchEdits) -> bytes:
        if not edits.any():
            return view.raw  # nothing to write: the bytes received, not even a copy
        # One call per batch, appended segments included: the edits are converted once and no
        # Python runs per span or per edit on the way out.
        return self._core.encode_segments(self._segments(view), edits.spans, edits.resources, edits.removed,
                                          edits.groups or None)

    def extract(self, view: BatchView, indices: list[int], edits: BatchEdits) -> bytes:
        # Only the chosen spans' edits are converted (the extension reads every edit it is given:
        # a few held spans of a batch of 100 paid for all 100).
        spans = edits.spans
        chosen = {i: found for i in indices if (found := spans.get(i)) is not None}
        return self._core.extract_segments(self._segments(view), indices, chosen, edits.resources,
                                           edits.groups or None)

    def groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int]]:
        layout = getattr(view, "layout", None)
        if layout is None:  # an appended view (segments) or another codec's: from the records
            return span_groups(view.spans, by_value)
        return layout.groups(by_value)

    def keyed_groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int], list[tuple]]:
        layout = getattr(view, "layout", None)
        if layout is None:  # an appended view (segments) or another codec's: from the records
            groups, loose = span_groups(view.spans, by_value)
            spans = view.spans
            return groups, loose, [group_key(spans[group[0]], by_value) for group in groups]
        return layout.keyed_groups(by_value)  # no view made for any span

    def materialize(self, view: BatchView, index: int) -> Any:
        from opentelemetry.proto.trace.v1.trace_pb2 import Span

        segments = getattr(view, "segments", None)
        if segments is not None:
            first, _, _, _, layout = next(s for s in reversed(segments) if s[0] <= index)
            return Span.FromString(layout.span_bytes(index - first))
        return Span.FromString(self._layout(view).span_bytes(index))

    def appended(self, view: BatchView, raw: bytes, watched: frozenset[str]) -> BatchView:
        """`view` with the spans of `raw` (a serialized request) after its own, scanning only
        `raw`: the spans already there keep their index, records and edits (no encode and
        rescan of the batch). Resource and scope indices of the new spans are shifted.
        `view` is spent: a native view's lazy span list is the new view's, extended in place
        (ViewBatch.extend: the batch's view is replaced by the one returned)."""
        added = self.scan(raw, watched)
        if not added.spans:
            return view
        segments = getattr(view, "segments", None)
        if segments is None:
            segments = [(0, 0, 0, view.raw, self._layout(view))]
        first, resources, scopes = len(view.spans), len(view.resources), len(view.scopes)
        for scope in added.scopes:
            scope.resource += resources
        spans = view.spans
        extend_with = getattr(spans, "extend_with", None)
        if extend_with is not None:  # lazy: the new spans' indices shifted as their views are made
            extend_with(added.spans, resources, scopes)  # nothing of the batch's copied
        else:
            if type(spans) is not list:
                spans = list(spans)
            for span in added.spans:  # made views (make_spans): appended to the same list
                span.resource += resources
                span.scope += scopes
                spans.append(span)
        return NativeBatchView(
            view.raw + raw, view.resources + added.resources, view.scopes + added.scopes,
            spans, None,
            [*segments, (first, resources, scopes, raw, added.layout)])  # type: ignore[attr-defined]

    def encode_value(self, value: Any) -> bytes:
        """The AnyValue body the encoder writes for `value` (what a set stores)."""
        return self._core.encode_value(value)

    def _segments(self, view: BatchView) -> list[tuple[int, int, Any]]:
        """(first span, first resource, layout) of each scanned request the view is made of."""
        segments = getattr(view, "segments", None)
        if segments is None:
            return [(0, 0, self._layout(view))]
        return [(first, first_resource, layout) for first, first_resource, _, _, layout in segments]

    def _layout(self, view: BatchView) -> Any:
        layout = getattr(view, "layout", None)
        if layout is None:
            # A view another codec made: scan its bytes (the watched keys do not matter here).
            layout = self._core.scan_lazy(view.raw, frozenset())[3]  # the layout only: no span views made
        return layout

