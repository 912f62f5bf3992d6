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


def span_column(spans, name: str) -> list:
    """One field of every span, in order (resource, scope, size, attr_count, event_count,
    start, end, kind): what a processor deciding per batch or per group reads instead of the views.
    The native codec's lazy span list reads it from the scanned records without making a
    view (a view already made gives its current value); a list of views is read as is."""
    column = getattr(spans, "column", None)
    if column is not None:
        return column(name)
    return [getattr(span, name) for span in spans]


def bytes_column(spans, name: str) -> list[bytes]:
    """One id of every span, in order (trace_id, span_id, parent_span_id), as `span_column`
    reads int fields: from the scanned records where no view is made."""
    column = getattr(spans, "bytes_column", None)
    if column is not None:
        return column(name)
    return [getattr(span, name) for span in spans]


def attr_values(spans, keys: tuple[str, ...]) -> list[tuple]:
    """Per span, in order, the current values of the watched `keys` (None where absent):
    `tuple(map(span.attrs.get, keys))` for every span, which the native lazy span list
    answers without making views (edits made by `edit_attrs` or on made views included)."""
    values = getattr(spans, "attr_values", None)
    if values is not None:
        return values(keys)
    return [tuple(map(span.attrs.get, keys)) for span in spans]


def spans_having(spans, indices, keys) -> list[int]:
    """Of `indices`, in their order, those whose span's attrs hold any of `keys`: how a
    processor that only looks at some spans (model calls) finds them. The native codec's lazy
    span list answers from the scanned records (edit_attrs' changes applied) without making a
    view; a list of views is read as is."""
    having = getattr(spans, "having", None)
    if having is not None:
        return having(indices, keys)
    return [i for i in indices if not spans[i].attrs.keys().isdisjoint(keys)]


def attr_values_at(spans, indices, keys: tuple[str, ...]) -> list[tuple]:
    """`attr_values` for the spans at `indices` only, in their order: the rows of the few spans
    a processor looks at (found by spans_having), read natively without making views."""
    values = getattr(spans, "values_at", None)
    if values is not None:
        return values(indices, keys)
    return [tuple(map(spans[i].attrs.get, keys)) for i in indices]


def edit_attrs(spans, indices, renames, deletes, sets) -> None:
    """The same change to the attrs of every span at `indices` (how a processor keeps the
    views in step with a group edit): renames move a present key's value to its new key,
    deletes drop a present key, sets store the value (a list copied per span); absent keys
    are left alone. The native lazy span list applies it to views not made yet when they are
    made, so the spans need no view now."""
    edit = getattr(spans, "edit_attrs", None)
    if edit is not None:
        edit(indices, renames, deletes, sets)
        return
    for index in indices:
        attrs = spans[index].attrs
        for old, new in renames:
            if old in attrs:
                attrs[new] = attrs.pop(old)
        for old in deletes:
            attrs.pop(old, None)
        for key, value in sets:
            attrs[key] = list(value) if type(value) is list else value


def group_key(span: SpanView, by_value: frozenset[str]) -> tuple:
    """What a decision about a group of alike spans (span_groups) is kept under: the group's
    `value_kinds` and, sorted by key, the string values of its keys in `by_value` (what the
    groups are split by besides keys and kinds). The native codec gives it per group."""
    attrs = span.attrs
    kinds = span.kinds if span.kinds is not None else value_kinds(attrs)
    return (kinds, *(attrs[key] for key in sorted(by_value.intersection(attrs)) if type(attrs[key]) is str))


def span_groups(spans: list[SpanView], by_value: frozenset[str]) -> tuple[list[list[int]], list[int]]:
    """Spans sorted into groups of alike ones, as scanned (the native codec's groups.rs does
    the same in one pass): per watched attribute in the span's order its key, its value's kind
    (as value_kinds spells it) and, for a key in `by_value` whose value is a str, the value.
    Groups hold span indices ascending, in the order of their first span. Spans with a watched
    key sent twice or watched keys on events are left loose (second list). A span edited since
    the scan is grouped by its current attrs here but by its scanned ones natively: callers
    group before editing (or leave edited spans out)."""
    groups: list[list[int]] = []
    loose: list[int] = []
    index: dict[tuple, list[int]] = {}
    letters = _KIND_LETTERS
    for i, span in enumerate(spans):
        if span.repeated or span.event_keys:
            loose.append(i)
            continue
        key = tuple(
            (k, ("s" if v else "z") if type(v) is str else letters[type(v)],
             v if type(v) is str and k in by_value else None)
            for k, v in span.attrs.items())
        found = index.get(key)
        if found is None:
            found = index[key] = [i]
            groups.append(found)
        else:
            found.append(i)
    return groups, loose


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
class GroupEdits:
    """One SpanEdits (renames, deletes, sets; never `replace`) applied to many spans: how a
    decision made once per group of alike spans is written, without an edit object per span.

    Order against a member's own edits (BatchEdits.spans) is the order they were made in:
    `after` holds, for members that already had their own edits when the group was added, the
    lengths of their renames, deletes and sets then (the group's go right after those); a
    member not in `after` had none, so the group's go first. A span whose own edits are a
    `replace` takes no group edit (its replacement carries everything)."""

    edits: SpanEdits
    spans: list[int] | range                                       # span indices, each once
    after: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    _members: set[int] | range | None = field(default=None, compare=False, repr=False)

    def members(self) -> set[int] | range:
        """`spans` as something `in` answers fast (built on first use; spans do not change)."""
        if self._members is None:
            spans = self.spans
            self._members = spans if isinstance(spans, range) else set(spans)
        return self._members


@dataclass(slots=True)
class BatchEdits:
    spans: dict[int, SpanEdits] = field(default_factory=dict)          # by index into view.spans
    resources: dict[int, SpanEdits] = field(default_factory=dict)      # same edits on a resource's attributes
    removed: set[int] = field(default_factory=set)                     # spans left out (held or refused)
    groups: list[GroupEdits] = field(default_factory=list)             # edits shared by many spans, in order

    def span(self, index: int) -> SpanEdits:
        found = self.spans.get(index)
        if found is None:
            found = self.spans[index] = SpanEdits()
        return found

    def add_group(self, edits: SpanEdits, spans: list[int] | range) -> GroupEdits:
        """Apply `edits` to every span of `spans` after whatever each already has. The caller
        leaves out spans whose own edits are a `replace` (they would ignore it)."""
        own = self.spans
        after = {}
        if own:
            # By the group's spans (often a few), not by every span with edits of its own.
            get = own.get
            for index in spans:
                mine = get(index)
                if mine is not None:
                    after[index] = (len(mine.renames), len(mine.deletes), len(mine.sets))
        group = GroupEdits(edits, spans, after)
        self.groups.append(group)
        return group

    def any(self) -> bool:
        """Whether anything is to be written (span, group or resource edits, or removals)."""
        return bool(self.spans or self.groups or self.resources or self.removed)

    def touched(self) -> set[int] | dict[int, SpanEdits]:
        """Indices of the spans with edits of their own or of a group."""
        if not self.groups:
            return self.spans
        found = set(self.spans)
        for group in self.groups:
            found.update(group.spans)
        return found

    def effective(self, index: int) -> SpanEdits | None:
        """Span `index`'s edits with its groups' merged in, in the order they were made (the
        semantics both codecs write); None when it has none."""
        own = self.spans.get(index)
        if not self.groups or (own is not None and own.replace is not None):
            return own
        mine = [g for g in self.groups if index in g.members()]
        return _merge(own, mine, index) if mine else own

    def expanded(self) -> dict[int, SpanEdits]:
        """Every span's effective edits (`effective` for each touched span, in one pass)."""
        if not self.groups:
            return self.spans
        own = self.spans
        of: dict[int, list[GroupEdits]] = {}
        for group in self.groups:
            for index in group.spans:
                found = of.get(index)
                if found is None:
                    of[index] = [group]
                else:
                    found.append(group)
        out = dict(own)
        for index, mine in of.items():
            edits = own.get(index)
            if edits is None or edits.replace is None:
                out[index] = _merge(edits, mine, index)
        return out


def _merge(own: SpanEdits | None, groups: list[GroupEdits], index: int) -> SpanEdits:
    """A span's own edits with its groups' inserted where each was added (GroupEdits.after)."""
    if own is None:
        own = _NO_EDITS
    merged = SpanEdits()
    at = (0, 0, 0)
    for group in groups:  # in the order added: their cuts never decrease
        cut = group.after.get(index, at)
        merged.renames += own.renames[at[0]:cut[0]]
        merged.deletes += own.deletes[at[1]:cut[1]]
        merged.sets += own.sets[at[2]:cut[2]]
        edits = group.edits
        merged.renames += edits.renames
        merged.deletes += edits.deletes
        merged.sets += edits.sets
        at = (max(at[0], cut[0]), max(at[1], cut[1]), max(at[2], cut[2]))
    merged.renames += own.renames[at[0]:]
    merged.deletes += own.deletes[at[1]:]
    merged.sets += own.sets[at[2]:]
    return merged


_NO_EDITS = SpanEdits()


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

    def groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int]]:
        """`span_groups(view.spans, by_value)`: the spans as scanned, in groups of alike ones."""

    def keyed_groups(self, view: BatchView, by_value: frozenset[str]) -> tuple[list[list[int]], list[int], list[tuple]]:
        """`groups`, and each group's `group_key` (of its first span, as scanned)."""
