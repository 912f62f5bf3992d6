"""Normalize's decision per span signature, not per span.

What the view rewrite (view_rewrite.py) decides for a span is fixed by its watched key set
(the scan's shared `signature`), the Python type of each value the place reads, whether one
of those values is "", and, for enum-valued keys, whether the value is one the map leaves as
it is. So the first span of a (signature, types) pair takes the exact path (needs_work, then
simple_renames), and when that ends in "nothing to do" or "plain renames" the pair is kept:
later spans with it cost one itemgetter, one tuple of types and a set lookup. Anything else
(a conflict, a coercion, an old enum value, "" or a value the map would change) is never
kept and goes down the exact path every time.

Where the scan gave the span's value kinds (SpanView.kinds, the native codec), a kept
decision is found by that one string: no getter, no tuple of types per span.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from costctx.normalize.rewrite import Tally
from costctx.normalize.table import CompiledTable, PlaceTable
from costctx.normalize.view_rewrite import RewriteOnView, needs_work, simple_renames

# Bounds against a hostile stream of distinct key sets, type mixes and enum values.
MAX_SIGNATURES = 4096
MAX_TYPE_MIXES = 64
MAX_OK_VALUES = 4096
MAX_KINDS = 4096

NOTHING = None  # a kept decision: the span needs no work
_UNSEEN = object()  # `_kept`: a value the kept decision was not made for


class _Plan:
    """One signature's reads and the type mixes known to decide it."""

    __slots__ = ("getter", "mapped", "mapped_keys", "decided", "moves", "renamed")

    def __init__(self, keys: tuple[str, ...], mapped: tuple[tuple[int, set[str]], ...]) -> None:
        # Two keys at least, so the getter always returns a tuple.
        self.getter = itemgetter(*keys, keys[0]) if keys else None
        # (position in the getter's tuple, the str values its enum map leaves unchanged) per
        # enum-valued read
        self.mapped = mapped
        self.mapped_keys = tuple((keys[position], ok) for position, ok in mapped)  # the same by key
        self.decided: dict[tuple[type, ...], bool] = {}   # type mix -> renames (True) or nothing (False)
        self.moves: list[tuple[str, str]] = []
        self.renamed: list[str] = []


class SignaturePlans:
    """The kept decisions of one place of one table (the base table's spans, typically)."""

    def __init__(self, place: PlaceTable, table: CompiledTable) -> None:
        self._place = place
        self._table = table
        self._plans: dict[frozenset[str], _Plan] = {}
        # SpanView.kinds -> (its signature's plan, renames or nothing), for kept decisions only
        self._by_kinds: dict[str, tuple[_Plan, bool]] = {}
        # enum map (by id) -> (the map, the str values it leaves unchanged, found so far)
        self._ok_values: dict[int, tuple[dict[str, str], set[str]]] = {}
        self._maps: dict[int, dict[str, str]] = {}  # id of an ok set -> its enum map

    def decide(self, attrs: dict[str, Any], signature: frozenset[str], where: str,
               tally: Tally) -> RewriteOnView | None | bool:
        """The outcome for a span whose attrs are exactly its scanned `signature`: None (no
        work), a RewriteOnView of plain renames (tally counted), or False (the caller takes
        the exact path: a conflict, a coercion, a value to map, a key sent twice...)."""
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._compile(signature)
        getter = plan.getter
        if getter is None:
            return NOTHING
        values = getter(attrs)
        types = tuple(map(type, values))
        renames = plan.decided.get(types)
        if renames is not None and "" not in values:
            kept = _kept(plan, renames, (values[position] for position, _ in plan.mapped), where, tally)
            if kept is not _UNSEEN:
                return kept
        return self._exact(plan, attrs, signature, values, types, where, tally)

    def decide_kinds(self, attrs: dict[str, Any], signature: frozenset[str], kinds: str, where: str,
                     tally: Tally) -> RewriteOnView | None | bool:
        """`decide` for a span whose scan gave its value kinds (SpanView.kinds: keys, value
        types and "" in one string object): one dict lookup, and a set lookup per enum value."""
        entry = self._by_kinds.get(kinds)
        if entry is not None:
            plan, renames = entry
            kept = _kept(plan, renames, (attrs[key] for key, _ in plan.mapped_keys), where, tally)
            if kept is not _UNSEEN:
                return kept
            return self.decide(attrs, signature, where, tally)
        outcome = self.decide(attrs, signature, where, tally)
        plan = self._plans.get(signature)
        if plan is not None:
            renames: bool | None = False
            if plan.getter is not None:
                values = plan.getter(attrs)
                renames = None if "" in values else plan.decided.get(tuple(map(type, values)))
            if renames is not None:  # kept for (signature, types): so for these kinds
                if len(self._by_kinds) >= MAX_KINDS:
                    self._by_kinds.clear()
                self._by_kinds[kinds] = (plan, renames)
        return outcome

    def _exact(self, plan: _Plan, attrs: dict[str, Any], signature: frozenset[str], values: tuple,
               types: tuple, where: str, tally: Tally) -> RewriteOnView | None | bool:
        place, table = self._place, self._table
        if not needs_work(attrs, place, table, signature):
            self._keep(plan, values, types, False, None)
            return NOTHING
        outcome = simple_renames(attrs, place, table, where, tally)
        if outcome is None:
            return False
        self._keep(plan, values, types, True, outcome)
        return outcome

    def _keep(self, plan: _Plan, values: tuple, types: tuple, renames: bool, outcome: RewriteOnView | None) -> None:
        """Keep the decision for this type mix when nothing value-dependent decided it."""
        if "" in values or len(plan.decided) >= MAX_TYPE_MIXES:
            return
        for position, ok in plan.mapped:
            value = values[position]
            if type(value) is str and value not in ok:
                mapping = self._maps[id(ok)]
                new = mapping.get(value) or mapping.get(value.lower())
                if new is not None and new != value:
                    return  # (not reached after a plain decision; kept as the rule's statement)
                if len(ok) >= MAX_OK_VALUES:
                    ok.clear()  # in place: every plan holds this set
                ok.add(value)
        if outcome is not None:
            moves = sorted(outcome.renames)
            if plan.decided and plan.renamed != outcome.renamed:
                return  # a signature's renames are fixed by its keys; never mix two
            plan.moves, plan.renamed = moves, list(outcome.renamed)
        plan.decided[types] = renames

    def _compile(self, signature: frozenset[str]) -> _Plan:
        place, table = self._place, self._table
        reads = sorted(place.watch & signature)
        mapped = []
        for position, key in enumerate(reads):
            rule = place.rules.get(key)
            # An old key is checked against its canonical key's enum map (its value moves there).
            target = key if rule is None else (rule.canonical if rule.requires is None else rule.target(signature))
            mapping = table.values.get(target)
            if mapping is not None:
                found = self._ok_values.get(id(mapping))
                if found is None:
                    found = self._ok_values[id(mapping)] = (mapping, set())
                    self._maps[id(found[1])] = mapping
                mapped.append((position, found[1]))
        plan = _Plan(tuple(reads), tuple(mapped))
        if len(self._plans) >= MAX_SIGNATURES:
            self._plans.clear()
        self._plans[signature] = plan
        return plan


def mapped_keys(place: PlaceTable, table: CompiledTable) -> frozenset[str]:
    """The keys of a place whose string value a decision may read: enum-valued keys, and old
    keys whose value moves to an enum-valued key. Spans equal in keys, value kinds and these
    values get the same decision (span groups split by them: codec.groups)."""
    values = table.values
    keys = {key for key in place.watch if key in values}
    for old, rule in place.rules.items():
        if rule.canonical in values or (rule.otherwise is not None and rule.otherwise in values):
            keys.add(old)
    return frozenset(keys)


def _kept(plan, renames, mapped_values, where: str, tally: Tally) -> object:
    """A kept decision for a span whose mapped values (`plan.mapped`'s order) are all values
    the decision was made for: NOTHING, or the plan's renames (counted); _UNSEEN when one is an
    enum value not seen yet (the exact path decides)."""
    for value, (_, ok) in zip(mapped_values, plan.mapped, strict=True):
        if value not in ok and type(value) is str:
            return _UNSEEN  # an enum value not seen to stay as it is
    if not renames:
        return NOTHING
    for canonical in plan.renamed:
        tally[("renamed", canonical, where)] += 1
    return RewriteOnView(plan.renamed, plan.moves)
