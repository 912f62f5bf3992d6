"""The normalize rewrite on decoded values (a batch view's attrs), as edits.

Exact by construction: the watched keys a place may act on are put into a small list of
KeyValue messages and handed to the very rewrite the protobuf path runs (rewrite.py); what
it did to each of them (renamed in place, dropped, value rewritten) becomes a rename, a
delete or a set. Keys must not repeat (the caller checks: an edit acts on one copy only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from costctx.normalize.rewrite import Tally, rewrite_attributes
from costctx.normalize.table import CompiledTable, PlaceTable
from costctx.pdata.codec.api import EMPTY, KvList
from costctx.pdata.codec.python import decode_value, encode_value

# The AnyValue field a decoded value came from (api.py's decoding).
_KIND = {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value",
         bytes: "bytes_value", list: "array_value", KvList: "kvlist_value"}


@dataclass(slots=True)
class RewriteOnView:
    renamed: list[str]                                     # canonical keys received under an old name
    renames: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    sets: list[tuple[str, Any]] = field(default_factory=list)


def place_keys(place: PlaceTable) -> frozenset[str]:
    """Every key a place's rewrite reads: the keys it watches, the canonical keys its renames
    target (a rename checks whether the target is there) and the keys conditions depend on."""
    keys = set(place.watch)
    for rule in place.rules.values():
        keys.add(rule.canonical)
        if rule.otherwise is not None:
            keys.add(rule.otherwise)
        if rule.requires is not None:
            keys.update(rule.requires)
    return frozenset(keys)


def table_keys(table: CompiledTable) -> frozenset[str]:
    keys = frozenset().union(*(place_keys(p) for p in table.places.values()))
    return keys.union(*(place_keys(p) for p in table.named_spans.values()))


_PLACE_KEYS: dict[int, tuple[PlaceTable, frozenset[str]]] = {}


def _keys_of(place: PlaceTable) -> frozenset[str]:
    found = _PLACE_KEYS.get(id(place))
    if found is None or found[0] is not place:
        if len(_PLACE_KEYS) >= 4096:
            _PLACE_KEYS.clear()
        found = _PLACE_KEYS[id(place)] = (place, place_keys(place))
    return found[1]


def needs_work(attrs: dict[str, Any], place: PlaceTable, table: CompiledTable) -> bool:
    """Whether the rewrite could change anything: an old key, or a typed or enum-valued key
    whose value it would coerce or map (rewrite._check_values and _settle, on decoded values)."""
    hits = place.watch.intersection(attrs)
    if not hits:
        return False
    if not place.rules.keys().isdisjoint(hits):
        return True
    if not table.kinds and not table.values:
        return False
    settled_kind = table.settled_kinds
    settled_strings = table.settled_strings
    kinds = table.kinds
    maps = table.values
    for key in hits:
        value = attrs[key]
        if value is EMPTY:
            continue
        kind_of = type(value)
        if kind_of is str and (not value or key in settled_strings):
            continue
        kind = _KIND.get(kind_of)
        if kind is None:
            return True  # not a decoded AnyValue: let the rewrite say
        if kind == settled_kind.get(key):
            continue
        wanted = kinds.get(key)
        if wanted is not None and kind != wanted:
            return True  # to coerce (or count as uncoercible)
        mapping = maps.get(key)
        if mapping is not None and kind_of is str:
            new = mapping.get(value) or mapping.get(value.lower())
            if new is not None and new != value:
                return True  # an old enum value to rewrite
    return False


def rewrite_values(attrs: dict[str, Any], place: PlaceTable, table: CompiledTable, where: str,
                   tally: Tally) -> RewriteOnView | None:
    """Run rewrite_attributes on the place's keys of `attrs`; None if a value cannot be
    carried as a message (not a decoded AnyValue: the caller takes the protobuf path)."""
    relevant = _keys_of(place)
    items: list[tuple[str, KeyValue, bytes]] = []
    try:
        for key, value in attrs.items():
            if key in relevant:
                kv = KeyValue()
                kv.key = key
                if value is not EMPTY:
                    encode_value(kv.value, value)
                items.append((key, kv, kv.value.SerializeToString()))
    except (TypeError, ValueError):
        return None
    attributes = [kv for _, kv, _ in items]
    index = {kv.key: kv for kv in attributes}
    local: Tally = Tally()
    renamed, _ = rewrite_attributes(attributes, index, place, table, where, local)  # type: ignore[arg-type]
    tally.update(local)
    outcome = RewriteOnView(renamed)
    alive = {id(kv) for kv in attributes}
    for key, kv, before in items:
        if id(kv) not in alive:
            outcome.deletes.append(key)
            continue
        if kv.key != key:
            outcome.renames.append((key, kv.key))
        if kv.value.SerializeToString() != before:
            outcome.sets.append((kv.key, decode_value(kv.value) if kv.HasField("value") else EMPTY))
    return outcome
