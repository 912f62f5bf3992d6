"""Rewrite one attribute list (a span's, an event's or a resource's) to canonical keys.

Works on the protobuf repeated field and its key index in place; never builds dicts of
values. The caller has already checked that some key needs a look.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from costctx.normalize.coerce import Coercion, coerce_in_place, same_fact
from costctx.normalize.table import CompiledTable, PlaceTable
from costctx.pdata.attributes import index_attributes, is_empty

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

log = logging.getLogger("costctx.processor.normalize")

# Per-batch tallies, flushed to Prometheus once per batch: (counter name, key, where) -> n.
Tally = Counter[tuple[str, str, str]]


def _drop_keys(attributes: RepeatedCompositeFieldContainer[KeyValue], keys: set[str]) -> None:
    for i in range(len(attributes) - 1, -1, -1):
        if attributes[i].key in keys:
            del attributes[i]


def rewrite_attributes(
    attributes: RepeatedCompositeFieldContainer[KeyValue],
    index: dict[str, KeyValue],
    place: PlaceTable,
    table: CompiledTable,
    where: str,
    tally: Tally,
) -> tuple[list[str], dict[str, KeyValue]]:
    """Rename, dedupe, coerce and map values. Returns (canonical keys renamed, the index)."""
    rules = place.rules
    watch = place.watch
    hits = list(watch.intersection(index))  # C speed; order restored below where it shows
    groups: dict[str, list[str]] | None = None
    # Most hits are canonical keys (typed or enum-valued), not aliases: one C-speed check
    # skips the per-key rule lookups then.
    if not rules.keys().isdisjoint(hits):
        for key in hits:
            rule = rules.get(key)
            if rule is not None:
                if groups is None:
                    groups = {}
                canonical = rule.canonical if rule.requires is None else rule.target(index)
                groups.setdefault(canonical, []).append(key)
    renamed, drop = _rename(index, groups, rules, table, where, tally) if groups else (_NONE, None)
    if groups and len(attributes) != len(index) + len(drop):
        # The same old key sent twice (the index keeps the last): drop the other copies.
        drop.update(key for olds in groups.values() for key in olds if key not in index)
    if len(renamed) > 1:
        renamed.sort()  # a stable `costctx.renamed` whatever the set order
    _check_values(index, hits, renamed, table, where, tally)
    if drop:
        _drop_keys(attributes, drop)
        index = index_attributes(attributes)
    return renamed, index


_NONE: list[str] = []


def _rename(index, groups, rules, table, where, tally) -> tuple[list[str], set[str]]:
    """Move old keys to their canonical key; drop the ones the canonical key already states.

    A renamed value is settled (coerced, enum-mapped) here, while its kind is at hand.
    """
    renamed: list[str] = []
    drop: set[str] = set()
    types = table.types
    for canonical, olds in groups.items():
        if len(olds) > 1:
            # Primary aliases by rank, fallbacks after all of them.
            olds.sort(key=lambda k: (rules[k].fallback, rules[k].rank))
        winner = index.get(canonical)
        has_winner = winner is not None and not is_empty(winner.value)
        for old in olds:
            kv = index[old]
            if has_winner and rules[old].fallback:
                continue  # a coarser fact that another key already states: leave it be
            value = kv.value
            kind = value.WhichOneof("value")
            if kind is None or (kind == "string_value" and not value.string_value):
                if has_winner:
                    drop.add(old)
                    del index[old]
                continue
            if not has_winner:
                if winner is None:
                    kv.key = canonical  # the rename itself: one field write
                    del index[old]
                    index[canonical] = winner = kv
                else:  # the canonical key is there but empty: it takes the old value
                    winner.value.CopyFrom(value)
                    value = winner.value
                    drop.add(old)
                    del index[old]
                has_winner = True
                renamed.append(canonical)
                tally[("renamed", canonical, where)] += 1
                _settle(canonical, value, kind, table, where, tally)
                continue
            if same_fact(value, winner.value, types.get(canonical)):
                tally[("duplicates", canonical, where)] += 1
            else:
                tally[("conflicts", canonical, where)] += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("conflict on %s (%s): kept %r, dropped %s=%r", canonical, where,
                              winner.value, old, value)
            drop.add(old)
            del index[old]
    return renamed, drop


def _settle(key: str, value, kind: str | None, table: CompiledTable, where: str, tally: Tally) -> None:
    """Coerce a non-empty value to its canonical type and rewrite a renamed enum value."""
    wanted = table.kinds.get(key)
    if wanted is not None and kind != wanted:
        outcome = coerce_in_place(value, table.types[key])
        if outcome is Coercion.COERCED:
            tally[("coerced", key, where)] += 1
            kind = wanted
        elif outcome is Coercion.UNCOERCIBLE:
            tally[("uncoercible", key, where)] += 1
    mapping = table.values.get(key)
    if mapping is not None and kind == "string_value":
        text = value.string_value
        new = mapping.get(text) or mapping.get(text.lower())
        if new is not None and new != text:
            value.string_value = new
            tally[("values", key, where)] += 1


def _check_values(index, hits, renamed, table, where, tally) -> None:
    """Settle the watched keys that arrived canonical; one type check per key."""
    if not table.kinds and not table.values:
        return
    settled_kind = table.settled_kinds
    settled_strings = table.settled_strings
    get = index.get
    for key in hits:
        kv = get(key)
        if kv is None:
            continue  # an old key, renamed away or dropped
        value = kv.value
        if key in settled_strings and value.string_value:
            continue  # most context fields: a non-empty string where one is wanted
        kind = value.WhichOneof("value")
        if kind is None or kind == settled_kind.get(key):
            continue  # the common case: the right type and no enum to map
        if renamed and key in renamed:
            continue  # settled when it was renamed
        if kind == "string_value" and not value.string_value:
            continue  # empty: nothing to coerce or map
        _settle(key, value, kind, table, where, tally)
