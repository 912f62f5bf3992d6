"""The normalize rewrite on decoded values (a batch view's attrs), as edits.

Exact by construction: the watched keys a place may act on are put into a small list of
KeyValue messages and handed to the very rewrite the protobuf path runs (rewrite.py); what
it did to each of them (renamed in place, dropped, value rewritten) becomes a rename, a
delete or a set. Keys must not repeat (the caller checks: an edit acts on one copy only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from costctx.normalize.rewrite import Tally, rewrite_attributes
from costctx.normalize.table import CompiledTable, PlaceTable
from costctx.pdata.codec.api import EMPTY, KvList

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

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


# Per place, per key set: (has an old key, the checks of its other watched keys).
Check = tuple[str, type | None, type | None, dict[str, str] | None]
_PLANS: dict[int, tuple[PlaceTable, dict[frozenset[str], tuple[bool, tuple[Check, ...]] | None]]] = {}
_TYPE_OF = {kind: python_type for python_type, kind in {str: "string_value", bool: "bool_value", int: "int_value",
                                                         float: "double_value"}.items()}


def _plan(keys: frozenset[str], place: PlaceTable, table: CompiledTable) -> tuple[bool, tuple[Check, ...]] | None:
    """What needs_work checks for spans with these watched keys (None: nothing to check)."""
    found = _PLANS.get(id(place))
    if found is None or found[0] is not place:
        if len(_PLANS) >= 1024:
            _PLANS.clear()
        found = _PLANS[id(place)] = (place, {})
    plans = found[1]
    if keys in plans:
        return plans[keys]
    hits = place.watch.intersection(keys)
    plan: tuple[bool, tuple[Check, ...]] | None = None
    if hits:
        checks = tuple(
            (key, _TYPE_OF.get(table.settled_kinds.get(key, "")), _TYPE_OF.get(table.kinds.get(key, ""), _UNKNOWN)
             if key in table.kinds else None, table.values.get(key))
            for key in sorted(hits) if key not in place.rules)
        plan = (not place.rules.keys().isdisjoint(hits), checks)
    if len(plans) >= 4096:
        plans.clear()
    plans[keys] = plan
    return plan


class _Unknown:  # a wanted AnyValue kind with no decoded Python type: never matches
    pass


_UNKNOWN = _Unknown


def needs_work(attrs: dict[str, Any], place: PlaceTable, table: CompiledTable,
               keys: frozenset[str] | None = None) -> bool:
    """Whether the rewrite could change anything: an old key, or a typed or enum-valued key
    whose value it would coerce or map (rewrite._check_values and _settle, on decoded values).
    `keys`: attrs' key set when the caller has it as a shared object (the span's signature)."""
    plan = _plan(keys if keys is not None else frozenset(attrs), place, table)
    if plan is None:
        return False
    has_old, checks = plan
    if has_old:
        return True
    for key, settled, wanted, mapping in checks:
        value = attrs[key]
        kind = type(value)
        if kind is settled or value is EMPTY or (kind is str and not value):
            continue
        if wanted is not None and kind is not wanted:
            return True  # to coerce (or count as uncoercible)
        if mapping is not None and kind is str:
            new = mapping.get(value) or mapping.get(value.lower())
            if new is not None and new != value:
                return True  # an old enum value to rewrite
    return False


def simple_renames(attrs: dict[str, Any], place: PlaceTable, table: CompiledTable, where: str,
                   tally: Tally) -> RewriteOnView | None:
    """The common case without the KeyValue list: each old key alone for its canonical key,
    the canonical key absent, the value of the canonical type with nothing to map, and the
    other watched keys settled. None when anything else is there (the full rewrite decides)."""
    rules = place.rules
    kinds = table.kinds
    maps = table.values
    moves: list[tuple[str, str]] = []
    targets: set[str] = set()
    for key in rules.keys() & attrs.keys():
        rule = rules[key]
        canonical = rule.canonical if rule.requires is None else rule.target(attrs)
        if canonical in attrs or canonical in targets:
            return None  # a winner, a duplicate or a conflict
        value = attrs[key]
        kind = type(value)
        if value is EMPTY or (kind is str and not value):
            return None
        wanted = kinds.get(canonical)
        if wanted is not None and _KIND.get(kind) != wanted:
            return None  # to coerce
        mapping = maps.get(canonical)
        if mapping is not None and kind is str:
            new = mapping.get(value) or mapping.get(value.lower())
            if new is not None and new != value:
                return None
        targets.add(canonical)
        moves.append((key, canonical))
    rest = {k: v for k, v in attrs.items() if k not in rules}
    if needs_work(rest, place, table):
        return None
    renamed = sorted(targets)
    for canonical in renamed:
        tally[("renamed", canonical, where)] += 1
    return RewriteOnView(renamed, moves)


def rewrite_values(attrs: dict[str, Any], place: PlaceTable, table: CompiledTable, where: str,
                   tally: Tally) -> RewriteOnView | None:
    """Run rewrite_attributes on the place's keys of `attrs`; None if a value cannot be
    carried as a message (not a decoded AnyValue: the caller takes the protobuf path)."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue  # the rare case: protobuf only then

    from costctx.pdata.codec.python import decode_value, encode_value

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
