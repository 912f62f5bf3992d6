"""Read an alias file (the built-in aliases.yaml or a user's) into plain rename rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# Where a rename applies, named as in OpenTelemetry schema files.
SPANS = "spans"
SPAN_EVENTS = "span_events"
RESOURCES = "resources"
PLACES = (SPANS, SPAN_EVENTS, RESOURCES)
VALUE_TYPES = ("string", "int", "double", "bool", "string_array")


class AliasFileError(ValueError):
    """An alias file that cannot be read; the message names the file and the entry."""


@dataclass(frozen=True)
class Alias:
    old: str
    new: str
    apply_to: frozenset[str] = frozenset(PLACES)
    # Rename only when nothing else supplies `new`; otherwise leave the key alone.
    fallback: bool = False
    source: str = ""
    # Conditional target: rename to `new` when the attributes carry any of `requires_any`,
    # otherwise to `otherwise` (e.g. a model name is the response's only if there was one).
    requires_any: tuple[str, ...] = ()
    otherwise: str | None = None


@dataclass
class AliasSet:
    """One file's rules, in file order (order is priority among aliases of one key)."""

    aliases: list[Alias] = field(default_factory=list)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    origin: str = ""


def _parse_alias(entry: Any, where: str) -> Alias:
    if not isinstance(entry, dict):
        raise AliasFileError(f"{where}: an alias is a mapping with `from` and `to`")
    unknown = set(entry) - {"from", "to", "apply_to", "fallback", "source", "requires_any", "otherwise"}
    if unknown:
        raise AliasFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    old, new = entry.get("from"), entry.get("to")
    if not isinstance(old, str) or not old or not isinstance(new, str) or not new:
        raise AliasFileError(f"{where}: `from` and `to` must be non-empty strings")
    if old == new:
        raise AliasFileError(f"{where}: `from` and `to` are the same key {old!r}")
    apply_to = entry.get("apply_to", list(PLACES))
    if isinstance(apply_to, str):
        apply_to = [apply_to]
    if not isinstance(apply_to, list) or not apply_to:
        raise AliasFileError(f"{where}: apply_to is a list among {', '.join(PLACES)}")
    bad = [p for p in apply_to if p not in PLACES]
    if bad:
        raise AliasFileError(f"{where}: apply_to must be among {', '.join(PLACES)}, not {', '.join(map(str, bad))}")
    fallback = entry.get("fallback", False)
    if not isinstance(fallback, bool):
        raise AliasFileError(f"{where}: fallback is true or false")
    requires_any = entry.get("requires_any") or []
    otherwise = entry.get("otherwise")
    if (bool(requires_any) != bool(otherwise) or not isinstance(requires_any, list)
            or not all(isinstance(k, str) for k in requires_any) or not isinstance(otherwise or "", str)):
        raise AliasFileError(f"{where}: `requires_any` (a list of keys) and `otherwise` go together")
    return Alias(old, new, frozenset(apply_to), fallback, str(entry.get("source", "")),
                 tuple(str(k) for k in requires_any), str(otherwise) if otherwise else None)


def parse_alias_document(raw: Any, origin: str) -> AliasSet:
    """`aliases` as a list of {from, to, ...} or a plain {old: new} mapping; `values`; `types`."""
    if raw is None:
        return AliasSet(origin=origin)
    if not isinstance(raw, dict):
        raise AliasFileError(f"{origin}: expected a mapping with an `aliases` key")
    unknown = set(raw) - {"aliases", "values", "types"}
    if unknown:
        raise AliasFileError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}")
    entries = raw.get("aliases") or []
    if isinstance(entries, dict):
        entries = [{"from": old, "to": new} for old, new in entries.items()]
    if not isinstance(entries, list):
        raise AliasFileError(f"{origin}: `aliases` must be a list or a mapping")
    aliases = [_parse_alias(e, f"{origin}: aliases[{i}]") for i, e in enumerate(entries)]
    seen: set[str] = set()
    for alias in aliases:
        if alias.old in seen:
            raise AliasFileError(f"{origin}: {alias.old!r} is listed twice")
        seen.add(alias.old)

    values: dict[str, dict[str, str]] = {}
    raw_values = raw.get("values") or {}
    if not isinstance(raw_values, dict):
        raise AliasFileError(f"{origin}: `values` maps a key to {{old value: new value}}")
    for key, mapping in raw_values.items():
        if not isinstance(mapping, dict) or not all(
                isinstance(v, (str, int, float, bool)) for pair in mapping.items() for v in pair):
            raise AliasFileError(f"{origin}: values.{key} must map old values to new ones")
        values[str(key)] = {str(old).lower(): str(new) for old, new in mapping.items()}

    types: dict[str, str] = {}
    raw_types = raw.get("types") or {}
    if not isinstance(raw_types, dict):
        raise AliasFileError(f"{origin}: `types` maps a key to a type")
    for key, type_name in raw_types.items():
        if type_name not in VALUE_TYPES:
            raise AliasFileError(f"{origin}: types.{key} must be one of {', '.join(VALUE_TYPES)}")
        types[str(key)] = type_name
    return AliasSet(aliases, values, types, origin)


def load_alias_file(path: str | Path) -> AliasSet:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AliasFileError(f"cannot read alias file {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AliasFileError(f"alias file {path} is not valid YAML: {exc}") from None
    return parse_alias_document(raw, str(path))


def builtin_aliases() -> AliasSet:
    text = resources.files("costctx.normalize").joinpath("aliases.yaml").read_text(encoding="utf-8")
    return parse_alias_document(yaml.safe_load(text), "builtin aliases.yaml")
