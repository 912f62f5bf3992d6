"""Compile alias files and schema files into one lookup per place (spans, events, resources).

Precedence when two rules name the same old key: the user's alias files (in config order),
then schema files (in config order), then the built-in table. Among several old keys of
one canonical key, the rule compiled first ranks first (same order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from costctx.normalize.alias_file import PLACES, RESOURCES, SPAN_EVENTS, SPANS, AliasFileError, AliasSet
from costctx.normalize.coerce import TYPE_FIELD
from costctx.normalize.schema_file import SchemaFile, split_schema_url


@dataclass(frozen=True, slots=True)
class Rule:
    canonical: str
    rank: int
    fallback: bool
    # Conditional target: `canonical` when any of `requires` is present, else `otherwise`.
    requires: frozenset[str] | None = None
    otherwise: str | None = None

    def target(self, present) -> str:
        if self.requires is None or not self.requires.isdisjoint(present):
            return self.canonical
        return self.otherwise  # type: ignore[return-value]


@dataclass(frozen=True)
class PlaceTable:
    """The rules of one place and every key that needs a look (aliases, typed, enum-valued)."""

    rules: dict[str, Rule]
    watch: frozenset[str]


@dataclass(frozen=True)
class CompiledTable:
    places: dict[str, PlaceTable]
    types: dict[str, str]  # canonical key -> type to coerce to (empty when coercion is off)
    values: dict[str, dict[str, str]]  # canonical key -> lower-case old value -> new value
    kinds: dict[str, str] = field(default_factory=dict)  # canonical key -> its AnyValue field name
    # Span rules for span names that schema-file renames are limited to (`apply_to_spans`).
    named_spans: dict[str, PlaceTable] = field(default_factory=dict)

    @property
    def spans(self) -> PlaceTable:
        return self.places[SPANS]

    @property
    def events(self) -> PlaceTable:
        return self.places[SPAN_EVENTS]

    @property
    def resources(self) -> PlaceTable:
        return self.places[RESOURCES]

    @cached_property
    def settled_kinds(self) -> dict[str, str]:
        """Typed keys without an enum map: their value needs no work when of this kind."""
        return {k: kind for k, kind in self.kinds.items() if k not in self.values}

    @cached_property
    def settled_strings(self) -> frozenset[str]:
        """The settled keys whose values are strings (a non-empty one needs no work)."""
        return frozenset(k for k, kind in self.settled_kinds.items() if kind == "string_value")

    def alias_keys(self) -> frozenset[str]:
        return frozenset(k for p in self.places.values() for k in p.rules)


# (old, new, places, fallback, requires_any, otherwise)
RawRule = tuple[str, str, frozenset[str], bool, tuple[str, ...], str | None]


def _follow(old: str, target: str, targets: dict[str, str]) -> str:
    """Follow a chain (a -> b, b -> c gives a -> c); a cycle is a config error."""
    path = [old]
    while target in targets:
        if target in path:
            chain = " -> ".join([*path, target])
            raise AliasFileError(f"alias cycle: {chain} (drop one of these aliases)")
        path.append(target)
        target = targets[target]
    return target


def compile_table(
    layers: list[list[RawRule]], types: dict[str, str], values: dict[str, dict[str, str]]
) -> CompiledTable:
    places: dict[str, PlaceTable] = {}
    scalar_types = {k: t for k, t in types.items() if t in TYPE_FIELD}
    for place in PLACES:
        chosen: dict[str, RawRule] = {}
        for layer in layers:
            for raw in layer:
                if place in raw[2] and raw[0] not in chosen:
                    chosen[raw[0]] = raw
        targets = {old: raw[1] for old, raw in chosen.items()}
        rules = {}
        for rank, (old, (_, new, _, fallback, requires, otherwise)) in enumerate(chosen.items()):
            rules[old] = Rule(
                _follow(old, new, targets), rank, fallback,
                frozenset(requires) if requires else None,
                _follow(old, otherwise, targets) if otherwise else None,
            )
        watch = frozenset(rules) | frozenset(scalar_types) | frozenset(values)
        places[place] = PlaceTable(rules, watch)
    kinds = {k: TYPE_FIELD[t] for k, t in scalar_types.items()}
    return CompiledTable(places, scalar_types, values, kinds)


def alias_layer(alias_set: AliasSet) -> list[RawRule]:
    return [(a.old, a.new, a.apply_to, a.fallback, a.requires_any, a.otherwise) for a in alias_set.aliases]


@dataclass
class TableBuilder:
    """Builds the base table once and one table per schema_url seen, cached."""

    user_sets: list[AliasSet]
    builtin: AliasSet | None
    schema_files: list[SchemaFile]
    envelope_types: dict[str, str]
    coerce: bool = True
    _cache: dict[str, CompiledTable] = field(default_factory=dict)
    _base: CompiledTable | None = None
    max_cached: int = 256

    def _types_and_values(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        types: dict[str, str] = {}
        values: dict[str, dict[str, str]] = {}
        # Later sets are lower precedence: fill only what is not already set.
        for alias_set in [*self.user_sets, *([self.builtin] if self.builtin else [])]:
            for key, type_name in alias_set.types.items():
                types.setdefault(key, type_name)
            for key, mapping in alias_set.values.items():
                merged = values.setdefault(key, {})
                for old, new in mapping.items():
                    merged.setdefault(old, new)
        for key, type_name in self.envelope_types.items():
            types.setdefault(key, type_name)
        return (types if self.coerce else {}), values

    def _compile(self, schema_layer: list[RawRule]) -> CompiledTable:
        layers = [alias_layer(s) for s in self.user_sets]
        layers.append(schema_layer)
        if self.builtin is not None:
            layers.append(alias_layer(self.builtin))
        types, values = self._types_and_values()
        return compile_table(layers, types, values)

    def base(self) -> CompiledTable:
        if self._base is None:
            self._base = self._compile([])
        return self._base

    def for_schema_url(self, schema_url: str) -> CompiledTable:
        """The table for data written against `schema_url` ('' or unknown: the base table)."""
        if not schema_url or not self.schema_files:
            return self.base()
        table = self._cache.get(schema_url)
        if table is None:
            layer = self.schema_layer(schema_url)
            names = frozenset().union(*(s.span_names for s in self.schema_files))
            named_layers = {name: self.schema_layer(schema_url, name) for name in sorted(names)}
            if not layer and not any(named_layers.values()):
                # No schema file renames anything for this URL (another family, a version at or
                # past the files'): the base table as it is, not a compiled copy of it (~150 us
                # and a full table per URL; a client may send many distinct URLs).
                table = self.base()
            else:
                table = self._compile(layer)
                if named_layers:
                    named = {name: self._compile(named_layer).spans for name, named_layer in named_layers.items()}
                    table = CompiledTable(table.places, table.types, table.values, table.kinds, named)
            if len(self._cache) >= self.max_cached:
                self._cache.clear()  # schema URLs are few; this only bounds a hostile stream
            self._cache[schema_url] = table
        return table

    def schema_layer(self, schema_url: str, span_name: str | None = None) -> list[RawRule]:
        parsed = split_schema_url(schema_url)
        if parsed is None:
            return []
        family, version = parsed
        layer: list[RawRule] = []
        seen: set[tuple[str, str]] = set()
        for schema in self.schema_files:
            if schema.family != family:
                continue
            for place, renames in schema.renames_from(version, span_name).items():
                for old, new in renames.items():
                    if (place, old) in seen:
                        continue
                    seen.add((place, old))
                    layer.append((old, new, frozenset({place}), False, (), None))
        return layer
