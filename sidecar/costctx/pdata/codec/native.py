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
)

try:
    import costctx_native as _native
except ImportError:  # built without the extension: the Python codec is the fallback
    _native = None

AVAILABLE = _native is not None


@dataclass(slots=True)
class NativeBatchView(BatchView):
    """A BatchView that also carries the scanned layout the encoder needs."""

    layout: Any = None


class NativeCodec:
    name = "native"

    def __init__(self) -> None:
        if _native is None:
            # ImportError: what a caller choosing "native if it is there" catches.
            raise ImportError("costctx_native is not built; install with `pip install .` (needs cargo)")
        self._core = _native.Core(ResourceView, ScopeView, SpanView, KvList, EMPTY, CodecError)

    def scan(self, raw: bytes, watched: frozenset[str]) -> BatchView:
        resources, scopes, spans, layout = self._core.scan(bytes(raw), watched)
        return NativeBatchView(raw, resources, scopes, spans, layout)

    def encode(self, view: BatchView, edits: BatchEdits) -> bytes:
        if not edits.spans and not edits.resources and not edits.removed:
            return view.raw  # nothing to write: the bytes received, not even a copy
        return self._core.encode(self._layout(view), edits.spans, edits.resources, edits.removed)

    def extract(self, view: BatchView, indices: list[int], edits: BatchEdits) -> bytes:
        return self._core.extract(self._layout(view), indices, edits.spans, edits.resources)

    def materialize(self, view: BatchView, index: int) -> Any:
        from opentelemetry.proto.trace.v1.trace_pb2 import Span

        return Span.FromString(self._layout(view).span_bytes(index))

    def encode_value(self, value: Any) -> bytes:
        """The AnyValue body the encoder writes for `value` (what a set stores)."""
        return self._core.encode_value(value)

    def _layout(self, view: BatchView) -> Any:
        layout = getattr(view, "layout", None)
        if layout is None:
            # A view another codec made: scan its bytes (the watched keys do not matter here).
            layout = self._core.scan(view.raw, frozenset())[3]
        return layout
