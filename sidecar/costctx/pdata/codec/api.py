"""The codec interface: scan an ExportTraceServiceRequest into a batch view, then write the
processors' edits back in one pass.

Processors decide on the view (ids, times, service, the values of the keys some processor
watches) and return edits; they never walk protobuf objects on the fast path. Two
implementations of one interface: `PythonCodec` (protobuf, the fallback and the oracle) and
the native one (Rust, `costctx_native`). Both must give equal views and, for a canonical
input (fields in field-number order, no unknown fields, as every OTLP SDK writes), output
bytes identical to protobuf's serialization of the edited request; for any other input that
protobuf accepts, output that parses to the same message.

Values (AnyValue) decode to Python as: str, bool, int, float, bytes, `list` (array_value,
elements decoded the same way), `KvList` (kvlist_value, ordered pairs), and `EMPTY` for an
AnyValue with no value set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class _Empty:
    """An AnyValue with no value set (distinct from a missing attribute)."""

    __slots__ = ()
    _instance: _Empty | None = None

    def __new__(cls) -> _Empty:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY = _Empty()


class KvList(tuple):
    """kvlist_value: an ordered tuple of (key, value) pairs, values decoded as above."""

    __slots__ = ()


class CodecError(ValueError):
    """The request is not a valid ExportTraceServiceRequest (answer INVALID_ARGUMENT / 400)."""


@dataclass(slots=True)
class ResourceView:
    """One ResourceSpans: its service, schema_url and watched resource attributes."""

    service: str                      # service.name, or "unknown_service" when absent/empty
    schema_url: str
    attrs: dict[str, Any]             # watched keys present on the resource, as stored (pre-alias)
    # The Resource message's encoded length (its occurrences summed): no string it carries is
    # longer, so a resource shorter than a value limit needs no look (limits).
    size: int = 0
    repeated: bool = False            # some watched key occurs more than once (attrs holds the last)


@dataclass(slots=True)
class ScopeView:
    """One ScopeSpans under a resource."""

    resource: int                     # index into BatchView.resources
    schema_url: str
    name: str
    version: str


@dataclass(slots=True)
class SpanView:
    """One span: what processors read. Only watched keys are decoded."""

    trace_id: bytes                   # as on the wire (16 bytes when valid)
    span_id: bytes                    # 8 bytes when valid
    parent_span_id: bytes             # b"" for a root
    start: int                        # start_time_unix_nano
    end: int                          # end_time_unix_nano
    resource: int                     # index into BatchView.resources
    scope: int                        # index into BatchView.scopes
    attrs: dict[str, Any]             # watched keys present on the span, as stored (pre-alias)
    attr_count: int                   # every attribute of the span, watched or not
    links: tuple[tuple[bytes, bytes], ...] = ()   # (trace_id, span_id) of each link
    event_count: int = 0
    # The span's watched keys in a canonical form a processor can use as a cache key for
    # per-signature decisions (a frozenset of attrs' keys; equal sets compare equal).
    signature: frozenset[str] = field(default_factory=frozenset)
    # The span message's encoded length (as received; protobuf's ByteSize for canonical input):
    # no string it carries is longer, so a span shorter than a value limit needs no look.
    size: int = 0
    # Watched keys present on any of its events' attributes (normalize: events needing a look).
    event_keys: frozenset[str] = field(default_factory=frozenset)
    # Some watched key occurs more than once among its attributes (attrs holds the last): an
    # edit acts on the last occurrence only, so a processor that must treat every copy cannot
    # decide on the view alone.
    repeated: bool = False
    kind: int = 0                     # Span.kind (inherit registers CLIENT/PRODUCER spans by id)
    # The watched keys with the kind of each value, as `value_kinds(attrs)` spells it, one
    # string object per distinct form in a batch (a cache key with its hash kept): what a
    # decision that depends on keys and value types only (normalize's) is made once for. As
    # scanned, like `signature`; None where a codec does not give it (the Python codec) or
    # `repeated` is set. Left out of ==: views of the two codecs still compare equal.
    kinds: str | None = field(default=None, compare=False)


# value_kinds' letter per decoded value type ("" and other strings apart, as EMPTY).
_KIND_LETTERS = {bool: "b", int: "i", float: "f", bytes: "y", list: "a", KvList: "k", _Empty: "e"}


def value_kinds(attrs: dict[str, Any]) -> str:
    """`key` + "\x1f" + a letter for its value's kind (s: a non-empty str, z: "", b, i, f,
    y: bytes, a: array, k: kvlist, e: EMPTY), keys sorted, joined by "\x1e": SpanView.kinds."""
    return "\x1e".join(
        key + "\x1f" + (("s" if value else "z") if type(value) is str else _KIND_LETTERS[type(value)])
        for key, value in sorted(attrs.items()))


@dataclass(slots=True)
class BatchView:
    raw: bytes
    resources: list[ResourceView]
    scopes: list[ScopeView]
    spans: list[SpanView]


@dataclass(slots=True)
class SpanEdits:
    """What to change on one span, applied in this order: renames, deletes, sets.

    `sets` replaces the value of a key already present (in place) or appends a new attribute
    after the span's existing ones, in the order given. `replace` (the slow path: conflicts,
    coercion, events, kvlist values, limits) is the whole span re-encoded by a processor that
    materialised it; when set, the other fields are ignored. Each edit acts on the last
    occurrence of its key (the one the view reports); setting EMPTY writes the attribute with
    no AnyValue at all."""

    renames: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    sets: list[tuple[str, Any]] = field(default_factory=list)
    replace: bytes | None = None


@dataclass(slots=True)
class BatchEdits:
    spans: dict[int, SpanEdits] = field(default_factory=dict)          # by index into view.spans
    resources: dict[int, SpanEdits] = field(default_factory=dict)      # same edits on a resource's attributes
    removed: set[int] = field(default_factory=set)                     # spans left out (held or refused)

    def span(self, index: int) -> SpanEdits:
        found = self.spans.get(index)
        if found is None:
            found = self.spans[index] = SpanEdits()
        return found


class Codec(Protocol):
    name: str

    def scan(self, raw: bytes, watched: frozenset[str]) -> BatchView:
        """Validate the whole request as protobuf would and decode the view; CodecError if invalid."""

    def check(self, raw: bytes) -> int:
        """Validate the request as `scan` does, building no view: its span count (what a
        receiver needs when no processor reads the view); CodecError if invalid."""

    def encode(self, view: BatchView, edits: BatchEdits) -> bytes:
        """The request with every edit applied and removed spans left out (scopes and
        resources emptied by the removal dropped; ones that arrived empty kept), in one pass."""

    def extract(self, view: BatchView, indices: list[int], edits: BatchEdits) -> bytes:
        """A request holding only the spans at `indices` (with their resource and scope, edits
        applied): how held spans leave as bytes and are re-emitted in a later batch."""

    def materialize(self, view: BatchView, index: int) -> Any:
        """The protobuf Span at `index` (slow path only)."""
